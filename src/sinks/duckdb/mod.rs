//! DuckDB destination: one table per stream, rows merged on the primary key, the state in a
//! table of the same database, updated in the same transaction as the rows it covers.
//!
//! `write` keeps a stream's rows in memory, once per key. `commit` decides where older copies
//! of the keys can be and queues the work; a durable commit (every `GROUP_COMMIT_ROWS` rows or
//! `commit_interval_seconds`, and at `flush` and `finish`) opens the file, applies the queue in
//! one transaction (keys to a small temporary table, target rows with those keys deleted where
//! older copies can be, rows appended with the Arrow appender, the state row replaced), commits
//! and closes the file again. It runs on a thread of its own while the sink takes the next rows
//! (see [`DbSlot`]). So the file is open only while a durable commit runs: between
//! them analysts can open it read-only (DuckDB allows one writing process or many readers), and
//! a reader that keeps it open makes the commit wait, up to `lock_timeout_seconds`. Queued
//! commits fall due `commit_interval_seconds` after the last durable one, also when no
//! further commit comes (the sink's thread calls `tick`).
//! A crash loses rows and state since the last COMMIT together, and the next run reads them
//! again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Schema};
use arrow::row::OwnedRow;
use chrono::DateTime;
use duckdb::Connection;

use crate::schema::quote_ident;
use crate::sinks::key_filter::KeyFilter;
use crate::sinks::lock::{DestinationLock, lock_path};
use crate::sinks::{BoxError, CursorSpan, KeyEncoder, Sink, SinkError, SinkOptions, StreamInfo, cursor_span};
use crate::state::State;

mod db;
mod merge;
mod models;
pub mod open;
mod query;
mod spill;
mod tables;
#[cfg(test)]
mod tests;

use db::{Db, write_error};
use merge::*;
use open::{Access, open_waiting};
use query::*;
pub use query::{query, read_only};
use spill::Spilled;

pub const STATE_TABLE: &str = "_postmark_elt_state";
/// DuckDB's row group: a transaction that appends whole row groups to a table writes them
/// straight to the database file, compressed, instead of to the WAL.
const ROW_GROUP_ROWS: usize = 122_880;
/// Rows after which a commit is also a durable one: a few row groups, so most rows of a large
/// load skip the WAL. Each durable commit opens and closes the file, and the close checkpoints
/// (rewriting the tables' last row groups), so fewer rows a commit cost more than they saved:
/// with each group applied on its own thread, 1M records (`bench --runs 5`, 2026-12-04) went
/// at 128k records/s with 4 row groups, 121k with 2 and 100k with 1, at the same peak RSS.
const GROUP_COMMIT_ROWS: usize = 4 * ROW_GROUP_ROWS;

pub struct DuckdbSink {
    db: DbSlot,
    options: SinkOptions,
    dest: String,
    path: PathBuf,
    streams: HashMap<String, StreamInfo>,
    /// Rows written since each stream's last commit.
    pending: HashMap<String, Pending>,
    /// Streams whose rows of a server (or all rows) go before the next commit's rows.
    replaced: Vec<(String, Option<i64>)>,
    /// Commits made and not yet applied, in order, and the state of the last one.
    queued: Vec<Queued>,
    queued_state: Option<String>,
    queued_rows: usize,
    /// Spill files written so far (each queued merge's rows wait in one; see [`spill`]).
    spills: u64,
    last_commit: Instant,
    /// Declared last, so it is released after the connection closes.
    _lock: DestinationLock,
}

/// The database: with the sink, or with the thread applying a group of queued commits. A
/// group's transaction (DuckDB compressing four row groups, a second or two) once held up the
/// sink, so the channel before it filled and downloads stopped until it was done; on its own
/// thread it runs while the sink takes and spills the next group's rows. One group at a time:
/// the next waits for it, as does anything else that uses the file.
enum DbSlot {
    Idle(Box<Db>),
    Applying(std::thread::JoinHandle<(Box<Db>, Result<(), SinkError>)>),
    /// The thread applying a group panicked, or could not be started.
    Lost,
}

/// A commit's work, applied at the next durable commit.
enum Queued {
    Replace(String, Option<i64>),
    Merge { info: StreamInfo, rows: Spilled, older: OlderCopies },
}

/// A stream's uncommitted rows, each key once (the first read wins: rows read twice in a run
/// come from neighbouring windows sharing a boundary second, and are the same).
struct Pending {
    batches: Vec<RecordBatch>,
    keys: HashSet<OwnedRow>,
    encoder: KeyEncoder,
    loaded: Loaded,
}

/// What a run knows of the rows it loaded into a table that was empty when it began, so that
/// the commits of new keys (the usual case of a first, large load) skip looking for older
/// copies.
enum Loaded {
    /// The table had rows: nothing.
    Unknown,
    /// Every key loaded, in a Bloom filter (4 bytes a key).
    Keys(KeyFilter),
    /// The latest cursor loaded, for a fixed cursor: a row after it has no older copy.
    Until(Option<i64>),
}

impl DuckdbSink {
    pub fn open(path: &Path, options: SinkOptions) -> Result<Self, SinkError> {
        let dest = format!("DuckDB database {}", path.display());
        // Held for the sink's life: another run (a sync, a webhook merge) finds it and waits.
        let lock = DestinationLock::exclusive(&lock_path(path, false), &dest)?;
        let db = Db {
            path: path.to_path_buf(),
            conn: None,
            schema: quote_ident(&options.duckdb_schema),
            options: options.clone(),
            dest: dest.clone(),
            #[cfg(test)]
            gate: None,
        };
        let mut sink = DuckdbSink {
            db: DbSlot::Idle(Box::new(db)),
            options,
            dest,
            path: path.to_path_buf(),
            streams: HashMap::new(),
            pending: HashMap::new(),
            replaced: Vec::new(),
            queued: Vec::new(),
            queued_state: None,
            queued_rows: 0,
            spills: 0,
            last_commit: Instant::now(),
            _lock: lock,
        };
        spill::remove_leftovers(path);
        let db = sink.db()?;
        db.connect()?;
        db.exec(
            "creating the state table",
            &format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE IF NOT EXISTS {schema}.{STATE_TABLE} (id INTEGER PRIMARY KEY, state VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
                schema = db.schema
            ),
        )?;
        db.release();
        Ok(sink)
    }

    fn fail(&self, context: &str, e: impl Into<BoxError>) -> SinkError {
        write_error(&self.dest, context, e)
    }

    /// The database once no group of commits is being applied; the error of the last group,
    /// if it failed.
    fn db(&mut self) -> Result<&mut Db, SinkError> {
        if matches!(self.db, DbSlot::Applying(_))
            && let DbSlot::Applying(thread) = std::mem::replace(&mut self.db, DbSlot::Lost)
        {
            let (db, applied) = thread
                .join()
                .map_err(|_| self.fail("applying queued commits", "the thread applying them panicked"))?;
            self.db = DbSlot::Idle(db);
            applied?;
        }
        match &mut self.db {
            DbSlot::Idle(db) => Ok(db),
            _ => Err(write_error(&self.dest, "using the database", "the thread applying commits did not return it")),
        }
    }

    /// The error of a group that finished applying since the last look, without waiting.
    fn applied_so_far(&mut self) -> Result<(), SinkError> {
        match &self.db {
            DbSlot::Applying(thread) if thread.is_finished() => self.db().map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Whether queued commits have waited `commit_interval_seconds` since the last durable one.
    fn fallen_due(&self) -> bool {
        self.due().is_some_and(|at| at <= Instant::now())
    }

    /// Applies the queued commits in one transaction, on a thread of their own once the group
    /// before them is done; with `wait`, returns once they are durable.
    fn apply(&mut self, wait: bool) -> Result<(), SinkError> {
        self.last_commit = Instant::now();
        if let Some(state) = self.queued_state.take() {
            let queue = std::mem::take(&mut self.queued);
            self.queued_rows = 0;
            self.db()?;
            let DbSlot::Idle(mut db) = std::mem::replace(&mut self.db, DbSlot::Lost) else {
                return Err(self.fail("applying queued commits", "the database was not free"));
            };
            let thread = std::thread::Builder::new().name("duckdb-commit".to_string()).spawn(move || {
                let applied = db.apply(queue, state);
                (db, applied)
            });
            self.db = DbSlot::Applying(thread.map_err(|e| self.fail("starting the thread that applies commits", e))?);
        }
        if wait {
            self.db()?;
        }
        Ok(())
    }

    /// Where older copies of `stream`'s pending keys can be, from what this run loaded.
    fn older_copies(pending: &mut Pending, info: &StreamInfo, batches: &[RecordBatch]) -> OlderCopies {
        let fixed_cursor = info.cursor_field.as_deref().filter(|_| info.cursor_fixed);
        match (&mut pending.loaded, fixed_cursor) {
            (Loaded::Keys(loaded), _) => {
                let new = pending.keys.iter().all(|k| !loaded.may_contain(k.row().as_ref()));
                for k in &pending.keys {
                    loaded.insert(k.row().as_ref());
                }
                if new { OlderCopies::Nowhere } else { OlderCopies::Anywhere }
            }
            (loaded, Some(cursor)) => match (OlderCopies::within_cursors(batches, cursor), loaded) {
                (OlderCopies::Between(lo, hi), Loaded::Until(latest)) => {
                    let after = latest.is_none_or(|l| lo > l);
                    *latest = Some(latest.map_or(hi, |l| l.max(hi)));
                    if after { OlderCopies::Nowhere } else { OlderCopies::Between(lo, hi) }
                }
                (OlderCopies::Anywhere, loaded) => {
                    // A row without a cursor: the latest cursor no longer says enough.
                    *loaded = Loaded::Unknown;
                    OlderCopies::Anywhere
                }
                (older, _) => older,
            },
            (_, None) => OlderCopies::Anywhere,
        }
    }
}

impl Sink for DuckdbSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        let db = self.db()?;
        db.connect()?;
        let text: Option<String> = db
            .conn()?
            .query_row(&format!("SELECT state FROM {}.{STATE_TABLE} WHERE id = 1", db.schema), [], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                other => Err(db.fail("reading the saved state", other)),
            })?;
        db.release();
        text.map(|t| State::from_stored(&t).map_err(SinkError::from)).transpose()
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        let db = self.db()?;
        db.connect()?;
        let prepared = db.prepare_table(stream);
        db.release();
        let empty = prepared?;
        let encoder = KeyEncoder::new(stream).map_err(|e| self.fail(&format!("the key of {}", stream.name), e))?;
        // Begun again (another server): what was loaded is still known. A fixed cursor needs
        // no filter of keys, so memory does not grow with the keys loaded.
        let loaded = match (empty, stream.cursor_fixed) {
            (false, _) => Loaded::Unknown,
            (true, true) => Loaded::Until(None),
            (true, false) => Loaded::Keys(KeyFilter::default()),
        };
        self.pending.entry(stream.name.clone()).or_insert(Pending {
            batches: Vec::new(),
            keys: HashSet::new(),
            encoder,
            loaded,
        });
        self.streams.insert(stream.name.clone(), stream.clone());
        Ok(())
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let context = format!("staging rows of {stream}");
        let Some(pending) = self.pending.get_mut(stream) else {
            return Err(self.fail(&context, "the stream was written before it was begun"));
        };
        let rows = match pending.encoder.rows(batch) {
            Ok(r) => r,
            Err(e) => return Err(self.fail(&context, e)),
        };
        let keep: Vec<u32> = (0..rows.num_rows())
            .filter(|&i| pending.keys.insert(rows.row(i).owned()))
            .map(|i| i as u32)
            .collect();
        let batch = if keep.len() == batch.num_rows() {
            Ok(batch.clone())
        } else {
            take_record_batch(batch, &UInt32Array::from(keep))
        };
        // Converted once here (keys were encoded above, in the stream's own types), so that
        // the commit appends these batches as they are.
        match batch.and_then(|b| utc_wall_clock(&b)) {
            Ok(b) => pending.batches.push(b),
            Err(e) => return Err(self.fail(&context, e)),
        }
        Ok(())
    }

    fn replace(&mut self, stream: &str, server_id: Option<i64>) -> Result<(), SinkError> {
        self.replaced.push((stream.to_string(), server_id));
        Ok(())
    }

    fn commit(&mut self, stream: Option<&str>, state: &State) -> Result<(), SinkError> {
        let ours = |s: &str| stream.is_none_or(|c| c == s);
        let (replaced, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.replaced).into_iter().partition(|(s, _)| ours(s));
        self.replaced = kept;
        self.queued.extend(replaced.into_iter().map(|(s, server)| Queued::Replace(s, server)));
        let names: Vec<String> = self.pending.keys().filter(|s| ours(s)).cloned().collect();
        for name in names {
            let (Some(info), Some(pending)) = (self.streams.get(&name), self.pending.get_mut(&name)) else {
                continue;
            };
            if pending.batches.is_empty() {
                continue;
            }
            let batches = std::mem::take(&mut pending.batches);
            let older = Self::older_copies(pending, info, &batches);
            pending.keys.clear();
            let schema = batches[0].schema();
            self.spills += 1;
            let rows = spill::Spilled::write(&self.path, self.spills, &schema, &batches)
                .map_err(|e| self.fail(&format!("queueing the rows of {name} (beside the database)"), e))?;
            self.queued_rows += rows.rows;
            let info = info.clone();
            self.queued.push(Queued::Merge { info, rows, older });
        }
        self.queued_state = Some(state.to_json());
        if self.queued_rows >= GROUP_COMMIT_ROWS || self.fallen_due() {
            self.apply(false)?;
        }
        self.applied_so_far()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.apply(true)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        // The queue holds only committed streams' rows (uncommitted ones wait in `pending` and
        // are dropped here).
        self.apply(true)?;
        if self.streams.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        db.connect()?;
        let created = db.create_models();
        db.release();
        tracing::debug!(models = ?created?, "Analyst models created.");
        Ok(())
    }

    fn due(&self) -> Option<Instant> {
        self.queued_state.as_ref().map(|_| self.last_commit + self.options.commit_interval)
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        if self.fallen_due() { self.apply(false) } else { self.applied_so_far() }
    }
}

impl Drop for DuckdbSink {
    /// A sink dropped without `finish` (a run that failed) still lets the group being applied
    /// land or roll back before the lock is released.
    fn drop(&mut self) {
        if let DbSlot::Applying(thread) = std::mem::replace(&mut self.db, DbSlot::Lost)
            && let Ok((_, Err(e))) = thread.join()
        {
            tracing::warn!("Queued commits not applied: {e}");
        }
    }
}
