//! Every stream postmark-elt knows, as data: one [`StreamDef`] per endpoint, in sync order.
//! Adding an endpoint is one entry here plus a schema file in `schemas/`.

use crate::client::{ErrorRule, TokenKind};
use crate::streams::extract::Records;
use crate::streams::{Kind, ParentRows, Partition, PerRecord, StatsShape, StreamDef};

const OUTBOUND_TYPES: &[&str] = &["Transactional", "Broadcasts"];
const OUTBOUND: Partition = Partition::MessageStreams {
    types: OUTBOUND_TYPES,
    param: Some("messagestream"),
};

macro_rules! schema_file {
    ($name:literal) => {
        include_str!(concat!("../../schemas/", $name, ".json"))
    };
}

/// Outbound messages, as the parent of per-message reads.
const MESSAGES: ParentRows = ParentRows {
    parent: "messages_outbound",
    id_column: "message_id",
    only_if: None,
};

const DAY_KEY: &[&str] = &["server_id", "message_stream", "tag", "date"];
const DAY_NAME_KEY: &[&str] = &["server_id", "message_stream", "tag", "date", "name"];

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
    errors: &[],
    default_selected: true,
    schema_json: "",
    description: "",
};

/// Defaults of a per-record stream (one request per outbound message, off unless selected);
/// entries set name, path, records, key, error rules, schema, description.
const PER_MESSAGE: StreamDef = StreamDef {
    name: "",
    path: "",
    records: Records::Whole,
    primary_key: &[],
    cursor_field: None,
    cursor_fixed: false,
    token: TokenKind::Server,
    kind: Kind::PerRecord(PerRecord {
        of: MESSAGES,
        id_field: "MessageID",
    }),
    partition: OUTBOUND,
    params: &[],
    errors: &[],
    default_selected: false,
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
        errors: &[],
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
            per_message: ParentRows {
                only_if: Some("track_opens"),
                ..MESSAGES
            },
        },
        partition: OUTBOUND,
        params: &[],
        errors: &[],
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
            per_message: ParentRows {
                only_if: Some("track_links"),
                ..MESSAGES
            },
        },
        partition: OUTBOUND,
        params: &[],
        errors: &[],
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
        errors: &[],
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
        errors: &[],
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
        // A message past retention (or gone) answers 422 ErrorCode 701: that message is skipped.
        errors: &[ErrorRule::skip(422, 701)],
        schema_json: schema_file!("message_events"),
        description: "Delivery timeline of each message (Delivered, Bounced, Opened, LinkClicked, ...), from GET /messages/outbound/{id}/details; one request per message, so off unless selected.",
        ..PER_MESSAGE
    },
    StreamDef {
        name: "bounce_dumps",
        path: "/bounces/{id}/dump",
        records: Records::Whole,
        primary_key: &["bounce_id"],
        kind: Kind::PerRecord(PerRecord {
            of: ParentRows {
                parent: "bounces",
                id_column: "id",
                only_if: Some("dump_available"),
            },
            id_field: "BounceID",
        }),
        // The dump expired between the listing and the request (ErrorCode 1001): skipped.
        errors: &[ErrorRule::skip(422, 1001)],
        schema_json: schema_file!("bounce_dumps"),
        description: "Raw source of each bounce whose dump is still available (Postmark keeps them 30 days), from GET /bounces/{id}/dump; one request per bounce, so off unless selected.",
        ..PER_MESSAGE
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
        // Without it Postmark leaves archived streams out, whose messages and stats still load.
        params: &[("MessageStreamType", "All"), ("IncludeArchivedStreams", "true")],
        schema_json: schema_file!("message_streams"),
        description: "Message streams of the server (archived ones included), from GET /message-streams.",
        ..FULL_TABLE
    },
    StreamDef {
        name: "suppressions",
        path: "/message-streams/{stream}/suppressions/dump",
        records: Records::Under("Suppressions"),
        primary_key: &["server_id", "message_stream", "email_address"],
        partition: Partition::MessageStreams {
            types: OUTBOUND_TYPES,
            param: None,
        },
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
        name: "inbound_rules",
        path: "/triggers/inboundrules",
        records: Records::Under("InboundRules"),
        primary_key: &["server_id", "id"],
        kind: Kind::FullTable { paged: true },
        schema_json: schema_file!("inbound_rules"),
        description: "Inbound rule triggers (senders and domains whose inbound mail is blocked), from GET /triggers/inboundrules.",
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
