//! Streams are declared as data: one [`StreamDef`] per Postmark endpoint, run by shared code
//! (window planning in [`window`], page decoding in [`extract`], the loops in [`runner`]).
//! Adding an endpoint is one entry in [`STREAMS`] plus a schema file in `schemas/`.

pub mod extract;
pub mod runner;
pub mod window;

use crate::client::TokenKind;
use crate::schema::{SchemaError, StreamSchema};
use crate::streams::extract::Records;

/// How a stream is read. Each kind has one function in [`runner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `count`/`offset` pages inside US-Eastern `fromdate`/`todate` windows, split until each
    /// fits under the offset limit. The bookmark is the end of the last committed window.
    DateWindows,
    /// A newest-first event list (opens, clicks) whose date filters are undocumented: read from
    /// the top until events are older than the bookmark minus `lookback_days`. When the offset
    /// limit comes first, the rest is read in date windows if the API proves to honour
    /// `fromdate`/`todate`, else per message from `per_message_path`, for the messages whose
    /// `tracked_by` column says they can have such events.
    EventFeed {
        per_message_path: &'static str,
        tracked_by: &'static str,
    },
    /// Daily stats (`fromdate`/`todate` as dates), re-read over `lookback_days` every run.
    DailyStats(StatsShape),
    /// The MessageEvents of each message's details, for messages in the incremental range.
    MessageDetails,
    /// The whole list every run; the rows of the server are replaced.
    FullTable { paged: bool },
}

/// How a stats response becomes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsShape {
    /// One row per day with these keys as columns; days and keys the API omits are 0.
    Daily(&'static [&'static str]),
    /// One row per day and name (`date, name, count`): the API keys days by client or browser name.
    LongByName,
    /// The overview has no `Days`: one request per day, one row per day.
    OverviewPerDay,
}

/// Which calls a stream is split into, within one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// One call.
    None,
    /// One call per value of a query parameter (inbound `status`: the API's default shows only
    /// processed messages).
    Values {
        param: &'static str,
        values: &'static [&'static str],
    },
    /// One call per message stream of these types; the ID goes in `param`, or replaces
    /// `{stream}` in the path when `param` is `None`.
    MessageStreams {
        types: &'static [&'static str],
        param: Option<&'static str>,
    },
}

const OUTBOUND_TYPES: &[&str] = &["Transactional", "Broadcasts"];
const OUTBOUND: Partition = Partition::MessageStreams {
    types: OUTBOUND_TYPES,
    param: Some("messagestream"),
};

/// Postmark's paging: at most 500 rows a page, `count + offset <= 10,000`.
pub const MAX_PAGE_SIZE: u64 = 500;
pub const MAX_REACH: u64 = 10_000;

#[derive(Debug)]
pub struct StreamDef {
    /// Stream and table name.
    pub name: &'static str,
    pub path: &'static str,
    pub records: Records,
    /// Output column names.
    pub primary_key: &'static [&'static str],
    /// The instant column that bookmarks and Parquet partitions follow, if the rows have one.
    pub cursor_field: Option<&'static str>,
    /// The cursor is when the record happened, so the API never changes it for a key: older
    /// copies of a key have the new copy's cursor, and the sinks look for them only in the
    /// cursor range of the rows they merge (DuckDB's rows in that range, Parquet's files whose
    /// range meets it), not through the whole table.
    pub cursor_fixed: bool,
    pub token: TokenKind,
    pub kind: Kind,
    pub partition: Partition,
    /// Extra query parameters sent on every call.
    pub params: &'static [(&'static str, &'static str)],
    /// Synced when no catalog is given (message_events costs a request per message).
    pub default_selected: bool,
    /// The JSON Schema file (schemas/<name>.json).
    pub schema_json: &'static str,
    pub description: &'static str,
}

macro_rules! schema_file {
    ($name:literal) => {
        include_str!(concat!("../../schemas/", $name, ".json"))
    };
}

const DAY_KEY: &[&str] = &["server_id", "message_stream", "date"];
const DAY_NAME_KEY: &[&str] = &["server_id", "message_stream", "date", "name"];

/// Defaults of a daily stats stream; entries set name, path, shape, key, schema, description.
const STATS: StreamDef = StreamDef {
    name: "",
    path: "",
    records: Records::Under("Days"),
    primary_key: DAY_KEY,
    cursor_field: None,
    cursor_fixed: false,
    token: TokenKind::Server,
    kind: Kind::DailyStats(StatsShape::LongByName),
    partition: OUTBOUND,
    params: &[],
    default_selected: true,
    schema_json: "",
    description: "",
};

/// Defaults of a full-table stream of one server.
const FULL_TABLE: StreamDef = StreamDef {
    kind: Kind::FullTable { paged: false },
    partition: Partition::None,
    records: Records::Whole,
    ..STATS
};

/// Defaults of a full-table stream of the account.
const ACCOUNT_TABLE: StreamDef = StreamDef {
    token: TokenKind::Account,
    kind: Kind::FullTable { paged: true },
    primary_key: &["id"],
    ..FULL_TABLE
};

/// Every stream postmark-elt knows, in sync order.
pub static STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "messages_outbound",
        path: "/messages/outbound",
        records: Records::Under("Messages"),
        primary_key: &["message_id"],
        cursor_field: Some("received_at"),
        cursor_fixed: true,
        token: TokenKind::Server,
        kind: Kind::DateWindows,
        partition: OUTBOUND,
        params: &[],
        default_selected: true,
        schema_json: schema_file!("messages_outbound"),
        description: "Outbound messages, one row per message, from GET /messages/outbound.",
    },
    StreamDef {
        name: "messages_opens",
        path: "/messages/outbound/opens",
        records: Records::Under("Opens"),
        primary_key: &["message_id", "recipient", "received_at"],
        cursor_field: Some("received_at"),
        cursor_fixed: true,
        token: TokenKind::Server,
        kind: Kind::EventFeed {
            per_message_path: "/messages/outbound/opens/{id}",
            tracked_by: "track_opens",
        },
        partition: OUTBOUND,
        params: &[],
        default_selected: true,
        schema_json: schema_file!("messages_opens"),
        description: "Open events (one per open and recipient), from GET /messages/outbound/opens.",
    },
    StreamDef {
        name: "messages_clicks",
        path: "/messages/outbound/clicks",
        records: Records::Under("Clicks"),
        primary_key: &["message_id", "recipient", "original_link", "received_at"],
        cursor_field: Some("received_at"),
        cursor_fixed: true,
        token: TokenKind::Server,
        kind: Kind::EventFeed {
            per_message_path: "/messages/outbound/clicks/{id}",
            tracked_by: "track_links",
        },
        partition: OUTBOUND,
        params: &[],
        default_selected: true,
        schema_json: schema_file!("messages_clicks"),
        description: "Link click events, from GET /messages/outbound/clicks.",
    },
    StreamDef {
        name: "bounces",
        path: "/bounces",
        records: Records::Under("Bounces"),
        primary_key: &["id"],
        cursor_field: Some("bounced_at"),
        cursor_fixed: true,
        token: TokenKind::Server,
        kind: Kind::DateWindows,
        partition: OUTBOUND,
        params: &[],
        default_selected: true,
        schema_json: schema_file!("bounces"),
        description: "Bounces and spam complaints, from GET /bounces.",
    },
    StreamDef {
        name: "messages_inbound",
        path: "/messages/inbound",
        records: Records::Under("InboundMessages"),
        primary_key: &["message_id"],
        cursor_field: None,
        cursor_fixed: false,
        token: TokenKind::Server,
        kind: Kind::DateWindows,
        // Every status, not only the default `processed`.
        partition: Partition::Values {
            param: "status",
            values: &["processed", "blocked", "failed", "queued", "scheduled"],
        },
        params: &[],
        default_selected: true,
        schema_json: schema_file!("messages_inbound"),
        description: "Inbound messages, from GET /messages/inbound.",
    },
    StreamDef {
        name: "message_events",
        path: "/messages/outbound/{id}/details",
        records: Records::Under("MessageEvents"),
        primary_key: &["message_id", "recipient", "type", "received_at"],
        cursor_field: Some("received_at"),
        cursor_fixed: true,
        token: TokenKind::Server,
        kind: Kind::MessageDetails,
        partition: OUTBOUND,
        params: &[],
        default_selected: false,
        schema_json: schema_file!("message_events"),
        description: "Delivery timeline of each message (Delivered, Bounced, Opened, LinkClicked, ...), from GET /messages/outbound/{id}/details; one request per message, so off unless selected.",
    },
    StreamDef {
        name: "stats_outbound_overview",
        path: "/stats/outbound",
        kind: Kind::DailyStats(StatsShape::OverviewPerDay),
        schema_json: schema_file!("stats_outbound_overview"),
        description: "Daily overview stats (sent, bounced, opens, clicks, rates), from GET /stats/outbound asked day by day.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_sends",
        path: "/stats/outbound/sends",
        kind: Kind::DailyStats(StatsShape::Daily(&["Sent"])),
        schema_json: schema_file!("stats_outbound_sends"),
        description: "Sent counts per day (one per recipient), from GET /stats/outbound/sends.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_bounces",
        path: "/stats/outbound/bounces",
        kind: Kind::DailyStats(StatsShape::Daily(&["HardBounce", "SoftBounce", "SMTPApiError", "Transient"])),
        schema_json: schema_file!("stats_outbound_bounces"),
        description: "Bounce counts per day and type, from GET /stats/outbound/bounces.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_spam",
        path: "/stats/outbound/spam",
        kind: Kind::DailyStats(StatsShape::Daily(&["SpamComplaint"])),
        schema_json: schema_file!("stats_outbound_spam"),
        description: "Spam complaints per day, from GET /stats/outbound/spam.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_tracked",
        path: "/stats/outbound/tracked",
        kind: Kind::DailyStats(StatsShape::Daily(&["Tracked"])),
        schema_json: schema_file!("stats_outbound_tracked"),
        description: "Tracked emails per day, from GET /stats/outbound/tracked.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_opens",
        path: "/stats/outbound/opens",
        kind: Kind::DailyStats(StatsShape::Daily(&["Opens", "Unique"])),
        schema_json: schema_file!("stats_outbound_opens"),
        description: "Opens and unique opens per day, from GET /stats/outbound/opens.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_platforms",
        path: "/stats/outbound/opens/platforms",
        kind: Kind::DailyStats(StatsShape::Daily(&["Desktop", "Mobile", "WebMail", "Unknown"])),
        schema_json: schema_file!("stats_outbound_platforms"),
        description: "Opens per day by platform, from GET /stats/outbound/opens/platforms.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_clients",
        path: "/stats/outbound/opens/emailclients",
        kind: Kind::DailyStats(StatsShape::LongByName),
        primary_key: DAY_NAME_KEY,
        schema_json: schema_file!("stats_outbound_clients"),
        description: "Opens per day by email client (long form: date, name, count), from GET /stats/outbound/opens/emailclients.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_clicks",
        path: "/stats/outbound/clicks",
        kind: Kind::DailyStats(StatsShape::Daily(&["Clicks", "Unique"])),
        schema_json: schema_file!("stats_outbound_clicks"),
        description: "Clicks and unique clicks per day, from GET /stats/outbound/clicks.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_browser_families",
        path: "/stats/outbound/clicks/browserfamilies",
        kind: Kind::DailyStats(StatsShape::LongByName),
        primary_key: DAY_NAME_KEY,
        schema_json: schema_file!("stats_outbound_browser_families"),
        description: "Clicks per day by browser family (long form), from GET /stats/outbound/clicks/browserfamilies.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_click_platforms",
        path: "/stats/outbound/clicks/platforms",
        kind: Kind::DailyStats(StatsShape::Daily(&["Desktop", "Mobile", "Unknown"])),
        schema_json: schema_file!("stats_outbound_click_platforms"),
        description: "Clicks per day by platform, from GET /stats/outbound/clicks/platforms.",
        ..STATS
    },
    StreamDef {
        name: "stats_outbound_click_locations",
        path: "/stats/outbound/clicks/location",
        kind: Kind::DailyStats(StatsShape::Daily(&["HTML", "Text"])),
        schema_json: schema_file!("stats_outbound_click_locations"),
        description: "Clicks per day by location in the message (HTML or text), from GET /stats/outbound/clicks/location.",
        ..STATS
    },
    StreamDef {
        name: "delivery_stats",
        path: "/deliverystats",
        records: Records::Under("Bounces"),
        primary_key: &["server_id", "name"],
        schema_json: schema_file!("delivery_stats"),
        description: "Current bounce counts by type and the number of inactive addresses, from GET /deliverystats.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "message_streams",
        path: "/message-streams",
        records: Records::Under("MessageStreams"),
        primary_key: &["server_id", "id"],
        schema_json: schema_file!("message_streams"),
        description: "Message streams of the server (archived ones included), from GET /message-streams.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "suppressions",
        path: "/message-streams/{stream}/suppressions/dump",
        records: Records::Under("Suppressions"),
        primary_key: &["server_id", "message_stream", "email_address"],
        partition: Partition::MessageStreams { types: OUTBOUND_TYPES, param: None },
        schema_json: schema_file!("suppressions"),
        description: "Suppressed recipients per message stream, from GET /message-streams/{stream}/suppressions/dump.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "templates",
        path: "/templates",
        records: Records::Under("Templates"),
        primary_key: &["server_id", "template_id"],
        kind: Kind::FullTable { paged: true },
        schema_json: schema_file!("templates"),
        description: "Templates and layouts, from GET /templates.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "server",
        path: "/server",
        records: Records::Whole,
        primary_key: &["id"],
        schema_json: schema_file!("server"),
        description: "The server's settings (without its API tokens), from GET /server.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "webhooks",
        path: "/webhooks",
        records: Records::Under("Webhooks"),
        primary_key: &["server_id", "id"],
        schema_json: schema_file!("webhooks"),
        description: "Webhook configurations (without credentials or header values), from GET /webhooks.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "servers",
        path: "/servers",
        records: Records::Under("Servers"),
        schema_json: schema_file!("servers"),
        description: "Servers of the account (without API tokens), from GET /servers; needs account_token.",
        ..ACCOUNT_TABLE
    },
    StreamDef {
        name: "domains",
        path: "/domains",
        records: Records::Under("Domains"),
        schema_json: schema_file!("domains"),
        description: "Sending domains of the account, from GET /domains; needs account_token.",
        ..ACCOUNT_TABLE
    },
    StreamDef {
        name: "sender_signatures",
        path: "/senders",
        records: Records::Under("SenderSignatures"),
        schema_json: schema_file!("sender_signatures"),
        description: "Sender signatures of the account, from GET /senders; needs account_token.",
        ..ACCOUNT_TABLE
    },
];

impl StreamDef {
    pub fn schema(&self) -> Result<StreamSchema, SchemaError> {
        StreamSchema::from_json_schema(self.name, self.schema_json)
    }

    /// The bookmark's key name: the cursor column, or `date` for stats.
    pub fn replication_key(&self) -> Option<&'static str> {
        match self.kind {
            Kind::DailyStats(_) => Some("date"),
            Kind::FullTable { .. } => None,
            _ => self.cursor_field,
        }
    }

    pub fn is_incremental(&self) -> bool {
        !matches!(self.kind, Kind::FullTable { .. })
    }
}

pub fn find(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared stream has a valid schema holding its keys and cursor; names are unique.
    #[test]
    fn declarations_are_consistent() {
        let mut names = std::collections::HashSet::new();
        for def in STREAMS {
            assert!(names.insert(def.name), "{} declared twice", def.name);
            let schema = def.schema().unwrap_or_else(|e| panic!("{}: {e}", def.name));
            for key in def.primary_key {
                assert!(schema.field(key).is_some(), "{}: no key column {key}", def.name);
            }
            if let Some(cursor) = def.cursor_field {
                assert!(schema.field(cursor).is_some(), "{}: no cursor column {cursor}", def.name);
            }
            assert!(!def.cursor_fixed || def.cursor_field.is_some(), "{}: a fixed cursor needs a cursor", def.name);
            if let Kind::DailyStats(StatsShape::Daily(keys)) = def.kind {
                for k in keys {
                    let col = crate::schema::snake_case(k);
                    assert!(schema.field(&col).is_some(), "{}: no column for stats key {k}", def.name);
                }
            }
        }
    }

    /// Secrets are not part of any schema: API tokens, webhook passwords and header values.
    #[test]
    fn no_schema_holds_secrets() {
        for def in STREAMS {
            let text = def.schema_json;
            for secret in ["ApiTokens", "Password", "\"Value\""] {
                assert!(!text.contains(secret), "{} schema names {secret}", def.name);
            }
        }
    }
}
