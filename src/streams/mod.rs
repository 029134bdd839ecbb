//! Streams are declared as data: one [`StreamDef`] per Postmark endpoint in [`declarations`],
//! run by shared code: [`discovery`] finds the servers and partitions, [`runner`] hands each
//! partition to the reader of its [`Kind`] in [`read`], pages are decoded in [`extract`] and
//! committed through [`commit`]. Adding an endpoint is one entry in [`STREAMS`] plus a schema
//! file in `schemas/`.

pub mod commit;
pub mod context;
pub mod declarations;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod planner;
pub mod read;
pub mod runner;
pub mod summary;
pub mod window;

pub use declarations::STREAMS;

use crate::client::{ErrorRule, TokenKind};
use crate::schema::{SchemaError, StreamSchema};
use crate::streams::extract::Records;

/// How a stream is read. Each kind has its reader in [`read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `count`/`offset` pages inside US-Eastern `fromdate`/`todate` windows, split until each
    /// fits under the offset limit. The bookmark is the end of the last committed window.
    DateWindows,
    /// A newest-first event list (opens, clicks) whose date filters are undocumented: read from
    /// the top until events are older than the bookmark minus `lookback_days`. When the offset
    /// limit comes first, the rest is read in date windows if the API proves to honour
    /// `fromdate`/`todate`, else from `per_message_path` for each row of `per_message`.
    EventFeed { per_message_path: &'static str, per_message: ParentRows },
    /// Daily stats (`fromdate`/`todate` as dates), re-read over `lookback_days` every run.
    DailyStats(StatsShape),
    /// One request per row of a parent stream in the incremental range.
    PerRecord(PerRecord),
    /// The whole list every run; the rows of the server are replaced.
    FullTable { paged: bool },
}

/// Rows of a date-window stream that name per-record requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentRows {
    /// The parent stream's name; it is read in date windows over the child's range.
    pub parent: &'static str,
    /// The parent's output column (text or integer) whose value fills `{id}` in the path.
    pub id_column: &'static str,
    /// A parent column (boolean, or text where "None" means no) that must allow a row; a
    /// missing value allows it.
    pub only_if: Option<&'static str>,
}

/// A stream read one request per parent row: the declaration's `path` with `{id}`, its records
/// at `records` of each response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerRecord {
    pub of: ParentRows,
    /// The source field each fetched record gets the parent's id in.
    pub id_field: &'static str,
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
    Values { param: &'static str, values: &'static [&'static str] },
    /// One call per message stream of these types; the ID goes in `param`, or replaces
    /// `{stream}` in the path when `param` is `None`.
    MessageStreams {
        types: &'static [&'static str],
        param: Option<&'static str>,
    },
}

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
    /// This endpoint's own error rules, looked up before the client's default table (e.g.
    /// skip a record the API no longer has).
    pub errors: &'static [ErrorRule],
    /// Synced when no catalog is given (message_events costs a request per message).
    pub default_selected: bool,
    /// The JSON Schema file (schemas/<name>.json).
    pub schema_json: &'static str,
    pub description: &'static str,
}

impl StreamDef {
    pub fn schema(&self) -> Result<StreamSchema, SchemaError> {
        StreamSchema::from_json_schema(self.name, self.schema_json)
    }

    /// The bookmark's key name: the cursor column, `date` for stats, or a per-record stream
    /// without a cursor of its own the parent's.
    pub fn replication_key(&self) -> Option<&'static str> {
        match self.kind {
            Kind::DailyStats(_) => Some("date"),
            // A window's end is the bookmark whether or not records carry a time of their own.
            Kind::DateWindows => Some(self.cursor_field.unwrap_or(WINDOW_END)),
            Kind::FullTable { .. } => None,
            Kind::PerRecord(p) => self.cursor_field.or_else(|| find(p.of.parent).and_then(|d| d.cursor_field)),
            _ => self.cursor_field,
        }
    }

    pub fn is_incremental(&self) -> bool {
        !matches!(self.kind, Kind::FullTable { .. })
    }
}

/// The state's name for the bookmark of a date-window stream whose records have no time of
/// their own (inbound: `Date` is the sender's header): the end of the last complete window.
pub const WINDOW_END: &str = "window_end";
/// The stream whose rows' tags are kept in the state, for `stats_tags: "all"`.
pub const TAGGED_STREAM: &str = "messages_outbound";

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
            let parent = match def.kind {
                Kind::PerRecord(p) => Some((p.of, Some(p.id_field))),
                Kind::EventFeed { per_message, .. } => Some((per_message, None)),
                _ => None,
            };
            if let Some((rows, id_field)) = parent {
                let p = find(rows.parent).unwrap_or_else(|| panic!("{}: no parent {}", def.name, rows.parent));
                assert_eq!(p.kind, Kind::DateWindows, "{}: the parent is read in date windows", def.name);
                assert_eq!(p.partition, def.partition, "{}: partitioned as its parent", def.name);
                let ps = p.schema().unwrap_or_else(|e| panic!("{}: {e}", p.name));
                let id = ps
                    .field(rows.id_column)
                    .unwrap_or_else(|| panic!("{}: parent has no {}", def.name, rows.id_column));
                assert!(
                    matches!(id.ty, crate::schema::FieldType::String | crate::schema::FieldType::Integer),
                    "{}: id column type",
                    def.name
                );
                if let Some(c) = rows.only_if {
                    assert!(ps.field(c).is_some(), "{}: parent has no filter column {c}", def.name);
                }
                if let Some(f) = id_field {
                    assert!(
                        schema.fields.iter().any(|x| x.source.as_deref() == Some(f)),
                        "{}: no field {f} for the parent id",
                        def.name
                    );
                    assert!(def.path.contains("{id}"), "{}: path without {{id}}", def.name);
                    assert!(def.replication_key().is_some(), "{}: no bookmark key", def.name);
                }
            }
            let skips = def.errors.iter().any(|r| r.action == crate::client::Action::Skip);
            assert!(
                !skips || matches!(def.kind, Kind::PerRecord(_)),
                "{}: only per-record reads may skip a record",
                def.name
            );
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
