//! Streams are declared as data: one [`StreamDef`] per Postmark endpoint, run by shared code
//! (window planning in [`window`], page decoding in [`extract`], the loop in [`runner`]).

pub mod extract;
pub mod runner;
pub mod window;

use crate::client::TokenKind;
use crate::schema::{SchemaError, StreamSchema};

/// How a stream is read incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// Windows of `fromdate`/`todate` (US-Eastern) over an instant column; the bookmark is the end
    /// of the last committed window.
    DateWindows {
        /// Output column that the windows filter on, e.g. `received_at`.
        cursor_field: &'static str,
        from_param: &'static str,
        to_param: &'static str,
    },
}

/// Which calls a stream is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// One run per message stream of these types (`messagestream=` query parameter).
    MessageStreams {
        types: &'static [&'static str],
        param: &'static str,
    },
}

/// `count`/`offset` paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPaging {
    pub max_page_size: u32,
    /// Postmark refuses `count + offset` above this (HTTP 422).
    pub max_reach: u64,
}

#[derive(Debug)]
pub struct StreamDef {
    /// Stream and table name.
    pub name: &'static str,
    pub path: &'static str,
    /// Key of the record list in the response.
    pub records_key: &'static str,
    /// Output column names.
    pub primary_key: &'static [&'static str],
    pub token: TokenKind,
    pub replication: Replication,
    pub partition: Partition,
    pub paging: OffsetPaging,
    /// The JSON Schema file (schemas/<name>.json).
    pub schema_json: &'static str,
    pub description: &'static str,
}

const POSTMARK_PAGING: OffsetPaging = OffsetPaging {
    max_page_size: 500,
    max_reach: 10_000,
};

/// Every stream postmark-elt knows.
pub static STREAMS: &[StreamDef] = &[StreamDef {
    name: "messages_outbound",
    path: "/messages/outbound",
    records_key: "Messages",
    primary_key: &["message_id"],
    token: TokenKind::Server,
    replication: Replication::DateWindows {
        cursor_field: "received_at",
        from_param: "fromdate",
        to_param: "todate",
    },
    partition: Partition::MessageStreams {
        types: &["Transactional", "Broadcasts"],
        param: "messagestream",
    },
    paging: POSTMARK_PAGING,
    schema_json: include_str!("../../schemas/messages_outbound.json"),
    description: "Outbound messages, one row per message, from GET /messages/outbound.",
}];

impl StreamDef {
    pub fn schema(&self) -> Result<StreamSchema, SchemaError> {
        StreamSchema::from_json_schema(self.name, self.schema_json)
    }

    pub fn cursor_field(&self) -> &'static str {
        match self.replication {
            Replication::DateWindows { cursor_field, .. } => cursor_field,
        }
    }
}

pub fn find(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declared stream has a valid schema holding its keys and cursor.
    #[test]
    fn declarations_are_consistent() {
        for def in STREAMS {
            let schema = def.schema().unwrap();
            for key in def.primary_key {
                let f = schema.field(key).unwrap_or_else(|| panic!("{}: no key column {key}", def.name));
                assert!(!f.nullable, "{}: key {key} must not be nullable", def.name);
            }
            assert!(schema.field(def.cursor_field()).is_some(), "{}", def.name);
            assert!(def.paging.max_page_size <= 500);
        }
    }
}
