//! The sync loop shared by every windowed stream:
//! windows -> pages -> typed batches -> sink, with the bookmark committed together with the data.
//!
//! Postmark lists newest first and refuses `count + offset > 10,000`. A window is read only when
//! its `TotalCount` fits under that reach; otherwise it is split (recursively, down to one second)
//! before any of its rows are used. A window is committed only when every row its `TotalCount`
//! promised has arrived, so a shifted page can never leave a silent gap.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::row::{RowConverter, SortField};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;

use crate::client::{BodyError, ClientError, PostmarkClient, TokenKind};
use crate::config::Config;
use crate::schema::SchemaError;
use crate::sinks::{SinkHandle, StreamInfo};
use crate::state::State;
use crate::streams::extract::{Page, PageDecoder};
use crate::streams::window::{CannotSplit, Window};
use crate::streams::{Partition, Replication, StreamDef};

/// Attempts at reading a window whose pages disagree with its TotalCount.
const WINDOW_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("stream `{stream}`, message stream `{partition}`, window {window}: {source}")]
    Request {
        stream: &'static str,
        partition: String,
        window: String,
        #[source]
        source: ClientError,
    },
    #[error("listing message streams: {0}")]
    MessageStreams(#[source] ClientError),
    #[error(
        "stream `{stream}`, message stream `{partition}`: {total} records in {source}, more than Postmark's API can page (10,000 per query); \
         rows before this window were loaded and the bookmark stops here; contact Postmark support or narrow the data with filters"
    )]
    TooDense {
        stream: &'static str,
        partition: String,
        total: u64,
        #[source]
        source: CannotSplit,
    },
    #[error(
        "stream `{stream}`, message stream `{partition}`, window {window}: the API reported {total} records but {seen} distinct ones arrived, \
         {WINDOW_ATTEMPTS} times; nothing from this window was committed, run the sync again"
    )]
    Unstable {
        stream: &'static str,
        partition: String,
        window: String,
        total: u64,
        seen: u64,
    },
    #[error("message stream `{wanted}` from config `message_streams` is not on this server (it has: {available}); fix the list or remove it")]
    UnknownMessageStream { wanted: String, available: String },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the destination stopped while stream `{0}` was being written")]
    SinkStopped(&'static str),
}

impl SyncError {
    pub fn is_auth(&self) -> bool {
        match self {
            SyncError::Request { source, .. } | SyncError::MessageStreams(source) => source.is_auth(),
            _ => false,
        }
    }
}

/// What one stream partition did, for the run summary.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub stream: &'static str,
    pub partition: String,
    pub records: u64,
    pub windows: u64,
    pub splits: u64,
    pub bookmark_before: Option<DateTime<Utc>>,
    pub bookmark_after: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct MessageStreamList {
    #[serde(rename = "MessageStreams")]
    message_streams: Vec<MessageStreamItem>,
}

#[derive(Deserialize)]
struct MessageStreamItem {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MessageStreamType")]
    kind: String,
}

enum WindowRead {
    Split(u64),
    Complete { batches: Vec<RecordBatch>, rows: u64 },
}

pub struct Extractor<'a> {
    pub client: &'a PostmarkClient,
    pub config: &'a Config,
    pub sink: &'a SinkHandle,
    pub state: State,
    /// Start of this run: windows never reach past it, and rows carry it as `_synced_at`.
    pub now: DateTime<Utc>,
    message_streams: Option<Vec<MessageStreamItem>>,
}

impl<'a> Extractor<'a> {
    pub fn new(client: &'a PostmarkClient, config: &'a Config, sink: &'a SinkHandle, state: State, now: DateTime<Utc>) -> Self {
        Extractor {
            client,
            config,
            sink,
            state,
            now,
            message_streams: None,
        }
    }

    /// Syncs one stream, every partition, and returns what it did.
    pub async fn sync_stream(&mut self, def: &'static StreamDef) -> Result<Vec<PartitionReport>, SyncError> {
        let schema = def.schema()?;
        let decoder = PageDecoder::new(&schema, def.records_key, self.now);
        let info = StreamInfo {
            name: def.name.to_string(),
            arrow: decoder.output_schema(),
            schema,
            primary_key: def.primary_key.iter().map(|k| k.to_string()).collect(),
            cursor_field: Some(def.cursor_field().to_string()),
        };
        self.sink.begin_stream(info).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        let mut reports = Vec::new();
        for partition in self.partitions(def).await? {
            reports.push(self.sync_partition(def, &decoder, &partition).await?);
        }
        Ok(reports)
    }

    async fn partitions(&mut self, def: &StreamDef) -> Result<Vec<String>, SyncError> {
        let Partition::MessageStreams { types, .. } = def.partition;
        if self.message_streams.is_none() {
            let list = self
                .client
                .get(
                    TokenKind::Server,
                    "/message-streams",
                    &[("MessageStreamType", "All".to_string()), ("IncludeArchivedStreams", "true".to_string())],
                    |body| {
                        serde_json::from_slice::<MessageStreamList>(body)
                            .map_err(|e| BodyError::Malformed(e.to_string()))
                    },
                )
                .await
                .map_err(SyncError::MessageStreams)?;
            self.message_streams = Some(list.message_streams);
        }
        let all = self.message_streams.as_deref().unwrap_or_default();
        if let Some(wanted) = &self.config.message_streams {
            for w in wanted {
                if !all.iter().any(|s| s.id.eq_ignore_ascii_case(w)) {
                    return Err(SyncError::UnknownMessageStream {
                        wanted: w.clone(),
                        available: all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
        Ok(all
            .iter()
            .filter(|s| types.contains(&s.kind.as_str()))
            .filter(|s| {
                self.config
                    .message_streams
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|x| x.eq_ignore_ascii_case(&s.id)))
            })
            .map(|s| s.id.clone())
            .collect())
    }

    async fn sync_partition(&mut self, def: &'static StreamDef, decoder: &PageDecoder, partition: &str) -> Result<PartitionReport, SyncError> {
        let cursor = def.cursor_field();
        let before = self.state.bookmark(def.name, partition).map(|b| b.replication_key_value);
        let start = before.map_or(self.config.start, |b| (b - self.config.overlap).max(self.config.start));
        let end = self.config.end_or(self.now);
        let mut report = PartitionReport {
            stream: def.name,
            partition: partition.to_string(),
            records: 0,
            windows: 0,
            splits: 0,
            bookmark_before: before,
            bookmark_after: before,
        };
        if start >= end {
            return Ok(report);
        }
        tracing::info!(stream = def.name, partition, from = %start, to = %end, "Syncing.");
        // Oldest first, so each commit can move the bookmark forward.
        let mut pending = vec![Window::covering(start, end)];
        while let Some(window) = pending.pop() {
            match self.read_window(def, decoder, partition, window).await? {
                WindowRead::Split(total) => {
                    let target = def.paging.max_reach * 3 / 4;
                    let parts = total.div_ceil(target).clamp(2, 1_000) as u32;
                    let subs = window.split(parts).map_err(|source| SyncError::TooDense {
                        stream: def.name,
                        partition: partition.to_string(),
                        total,
                        source,
                    })?;
                    tracing::debug!(stream = def.name, partition, total, parts = subs.len(), "Window above the offset limit; split.");
                    report.splits += 1;
                    pending.extend(subs.into_iter().rev());
                }
                WindowRead::Complete { batches, rows } => {
                    for batch in batches {
                        self.sink
                            .write(def.name, batch)
                            .await
                            .map_err(|()| SyncError::SinkStopped(def.name))?;
                    }
                    let bookmark = window.to.min(end);
                    self.state.advance(def.name, partition, cursor, bookmark);
                    self.sink
                        .commit(self.state.clone())
                        .await
                        .map_err(|()| SyncError::SinkStopped(def.name))?;
                    report.records += rows;
                    report.windows += 1;
                    report.bookmark_after = Some(bookmark);
                }
            }
        }
        Ok(report)
    }

    async fn read_window(&self, def: &'static StreamDef, decoder: &PageDecoder, partition: &str, window: Window) -> Result<WindowRead, SyncError> {
        let page_size = u64::from(self.config.page_size.min(def.paging.max_page_size));
        let reach = def.paging.max_reach;
        let mut seen = 0;
        let mut total = 0;
        for attempt in 1..=WINDOW_ATTEMPTS {
            let first = self.fetch(def, decoder, partition, window, 0, page_size.min(reach)).await?;
            total = first.total.unwrap_or(first.batch.num_rows() as u64);
            if total > reach {
                return Ok(WindowRead::Split(total));
            }
            let offsets: Vec<u64> = (page_size..total).step_by(page_size as usize).collect();
            let rest: Vec<Page> = stream::iter(offsets)
                .map(|offset| self.fetch(def, decoder, partition, window, offset, page_size.min(reach - offset)))
                .buffered(self.config.max_concurrency)
                .try_collect()
                .await?;
            let pages: Vec<Page> = std::iter::once(first).chain(rest).collect();
            let stable = pages.iter().all(|p| p.total.is_none_or(|t| t == total));
            let batches: Vec<RecordBatch> = pages.into_iter().map(|p| p.batch).collect();
            seen = distinct_keys(&batches, def.primary_key);
            if stable && seen >= total {
                return Ok(WindowRead::Complete { rows: seen, batches });
            }
            tracing::warn!(
                stream = def.name,
                partition,
                window = %window_label(window),
                total,
                seen,
                attempt,
                "Pages disagree with TotalCount (data changed while paging); reading the window again."
            );
        }
        Err(SyncError::Unstable {
            stream: def.name,
            partition: partition.to_string(),
            window: window_label(window),
            total,
            seen,
        })
    }

    async fn fetch(&self, def: &'static StreamDef, decoder: &PageDecoder, partition: &str, window: Window, offset: u64, count: u64) -> Result<Page, SyncError> {
        let Replication::DateWindows { from_param, to_param, .. } = def.replication;
        let Partition::MessageStreams { param, .. } = def.partition;
        let (from, to) = window.query_bounds();
        let query = [
            ("count", count.to_string()),
            ("offset", offset.to_string()),
            (from_param, from),
            (to_param, to),
            (param, partition.to_string()),
        ];
        self.client
            .get(def.token, def.path, &query, |body| decoder.decode(body))
            .await
            .map_err(|source| SyncError::Request {
                stream: def.name,
                partition: partition.to_string(),
                window: window_label(window),
                source,
            })
    }
}

fn window_label(w: Window) -> String {
    let (from, to) = w.query_bounds();
    format!("{from}..{to} US-Eastern")
}

/// Number of distinct primary keys across batches.
fn distinct_keys(batches: &[RecordBatch], key: &[&str]) -> u64 {
    let Some(first) = batches.first() else { return 0 };
    let schema = first.schema();
    let fields: Vec<SortField> = key
        .iter()
        .filter_map(|k| schema.field_with_name(k).ok())
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let Ok(converter) = RowConverter::new(fields) else {
        return 0;
    };
    let mut keys = HashSet::new();
    for batch in batches {
        let columns: Vec<_> = key.iter().filter_map(|k| batch.column_by_name(k).map(Arc::clone)).collect();
        if let Ok(rows) = converter.convert_columns(&columns) {
            for row in rows.iter() {
                keys.insert(row.owned());
            }
        }
    }
    keys.len() as u64
}
