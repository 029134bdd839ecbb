//! The commit protocol between the readers and the sink. Rows are written as they arrive; a
//! commit makes them durable together with the state, whose bookmark moves only with the rows
//! it covers. Commits reach the sink in the order their states were taken.

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};

use crate::sinks::SinkHandle;
use crate::state::State;
use crate::streams::StreamDef;
use crate::streams::context::Ctx;
use crate::streams::error::SyncError;

/// Adds the non-empty tags of `batch` to `tags`.
fn note_tags(batch: &RecordBatch, tags: &mut std::collections::BTreeSet<String>) {
    let Some(column) = crate::streams::extract::string_column(batch, "tag") else {
        return;
    };
    for tag in column.iter().flatten().filter(|t| !t.is_empty()) {
        if !tags.contains(tag) {
            tags.insert(tag.to_string());
        }
    }
}

/// Rows staged between commits on reads whose bookmark moves only at the end.
const STAGE_COMMIT_ROWS: u64 = 20_000;

pub struct Committer<'a> {
    pub sink: &'a SinkHandle,
    /// The state as committed so far (a lock, so that commits can happen while pages of the
    /// next windows are in flight).
    state: std::sync::Mutex<State>,
    /// Held from a bookmark's move until its commit is queued, so the sink receives states in
    /// the order they were taken: a later state never reaches it before the rows of an
    /// earlier one.
    order: tokio::sync::Mutex<()>,
}

impl<'a> Committer<'a> {
    pub fn new(sink: &'a SinkHandle, state: State) -> Self {
        Committer {
            sink,
            state: std::sync::Mutex::new(state),
            order: tokio::sync::Mutex::new(()),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed bookmark of a stream partition.
    pub fn bookmark(&self, stream: &str, key: &str) -> Option<DateTime<Utc>> {
        self.state().bookmark(stream, key).map(|b| b.replication_key_value)
    }

    pub async fn write(&self, def: &'static StreamDef, batches: Vec<RecordBatch>) -> Result<(), SyncError> {
        if def.name == crate::streams::TAGGED_STREAM {
            let mut state = self.state();
            for batch in &batches {
                note_tags(batch, &mut state.tags);
            }
        }
        for batch in batches {
            self.sink.write(def.name, batch).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        }
        Ok(())
    }

    /// Sends rows to the sink, and commits them (without moving the bookmark) every
    /// `STAGE_COMMIT_ROWS`, so long reads whose bookmark can only move at the end hold little
    /// memory. Rows committed early are merged on the key if the run has to start over.
    pub async fn stage(&self, ctx: &Ctx<'_>, batch: RecordBatch, pending: &mut u64) -> Result<(), SyncError> {
        *pending += batch.num_rows() as u64;
        self.write(ctx.def, vec![batch]).await?;
        if *pending >= STAGE_COMMIT_ROWS {
            *pending = 0;
            self.commit(ctx, None).await?;
        }
        Ok(())
    }

    /// Moves the bookmark (if any) and commits it with the rows written before.
    pub async fn commit(&self, ctx: &Ctx<'_>, bookmark: Option<DateTime<Utc>>) -> Result<(), SyncError> {
        let bookmark = ctx.def.replication_key().zip(bookmark).map(|(key, value)| (ctx.state_key.as_str(), key, value));
        self.commit_state(ctx.def, bookmark).await
    }

    /// Commits the rows written before with the state, moved first by `(partition, key, value)`.
    async fn commit_state(&self, def: &'static StreamDef, bookmark: Option<(&str, &str, DateTime<Utc>)>) -> Result<(), SyncError> {
        let _order = self.order.lock().await;
        let snapshot = {
            let mut state = self.state();
            if let Some((partition, key, value)) = bookmark {
                state.advance(def.name, partition, key, value);
            }
            state.clone()
        };
        self.sink.commit(def.name, snapshot).await.map_err(|()| SyncError::SinkStopped(def.name))
    }

    /// Replaces the rows of `server` (all rows for account-level streams) with `batches`, in one
    /// commit.
    pub async fn replace(&self, def: &'static StreamDef, server: Option<i64>, batches: Vec<RecordBatch>) -> Result<(), SyncError> {
        self.sink.replace(def.name, server).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        self.write(def, batches).await?;
        self.commit_state(def, None).await
    }
}
