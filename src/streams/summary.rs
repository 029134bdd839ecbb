//! What a sync did and would do, per stream partition: the run summary and `--dry-run`.

use chrono::{DateTime, Utc};

use crate::streams::StreamDef;

/// What a sync would read for one stream partition (`--dry-run`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedRead {
    pub stream: &'static str,
    pub server: Option<i64>,
    pub partition: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub first_request: String,
    pub then: &'static str,
}

/// What one stream partition did, for the run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionReport {
    pub stream: &'static str,
    #[serde(rename = "server_id")]
    pub server: Option<i64>,
    pub partition: String,
    pub records: u64,
    pub windows: u64,
    pub splits: u64,
    /// Requests whose error the declaration says to skip (a record gone from the API).
    pub skipped: u64,
    pub bookmark_before: Option<DateTime<Utc>>,
    pub bookmark_after: Option<DateTime<Utc>>,
    /// Anything the operator should know (a fallback used, a stream skipped).
    pub note: Option<String>,
}

impl PartitionReport {
    pub fn empty(def: &'static StreamDef, server: Option<i64>, partition: &str) -> Self {
        PartitionReport {
            stream: def.name,
            server,
            partition: partition.to_string(),
            records: 0,
            windows: 0,
            splits: 0,
            skipped: 0,
            bookmark_before: None,
            bookmark_after: None,
            note: None,
        }
    }
}
