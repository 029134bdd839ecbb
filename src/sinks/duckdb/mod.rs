//! DuckDB destination: one table per stream, rows merged on the primary key, the state in a
//! table of the same database, updated in the same transaction as the rows it covers.
//!
//! `write` keeps a stream's rows in memory (a window, at most a few tens of thousands of rows),
//! once per key. Its `commit`: the keys go to a small temporary table; target rows with those
//! keys are deleted (only among rows in the commit's cursor range, for a fixed cursor; not at
//! all when the run knows none can be there); the rows are appended straight into the target
//! with the Arrow appender;
//! the state row is replaced. Commits are grouped: the transaction is committed every
//! `GROUP_COMMIT_ROWS` rows or `commit_interval_seconds` (config), and on `flush` and `finish`.
//! A crash loses rows and state since the last COMMIT together, and the next run reads them
//! again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

mod merge;
mod query;
#[cfg(test)]
mod tests;

use merge::*;
pub use query::query;
use query::*;

pub const STATE_TABLE: &str = "_postmark_elt_state";
/// DuckDB's row group: a transaction that appends whole row groups to a table writes them
/// straight to the database file, compressed, instead of to the WAL (to be compressed again at
/// a checkpoint).
const ROW_GROUP_ROWS: usize = 122_880;
/// Rows after which a logical commit is also a DuckDB COMMIT (an fsync): a few row groups, so
/// most rows of a large load skip the WAL (measured with two DuckDB threads: 130k -> 147k
/// records/s at 1M records; one or two row groups gained nothing).
const GROUP_COMMIT_ROWS: usize = 4 * ROW_GROUP_ROWS;

pub struct DuckdbSink {
    conn: Connection,
    dest: String,
    streams: HashMap<String, StreamInfo>,
    /// Rows written since each stream's last commit.
    pending: HashMap<String, Pending>,
    /// Streams whose rows of a server (or all rows) go before the next commit's rows.
    replaced: Vec<(String, Option<i64>)>,
    in_transaction: bool,
    /// Rows merged by commits since the last COMMIT.
    uncommitted_rows: usize,
    last_commit: Instant,
    /// The longest time between COMMITs: a crash loses at most this much work, rows and
    /// bookmarks together, which the next run reads again.
    commit_interval: Duration,
    /// Declared last, so it is released after the connection closes.
    _lock: DestinationLock,
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
        let conn = Connection::open(path).map_err(|e| SinkError::Write {
            dest: dest.clone(),
            context: "opening the database".to_string(),
            source: Box::new(e),
        })?;
        let sink = DuckdbSink {
            conn,
            dest,
            streams: HashMap::new(),
            pending: HashMap::new(),
            replaced: Vec::new(),
            in_transaction: false,
            uncommitted_rows: 0,
            last_commit: Instant::now(),
            commit_interval: options.commit_interval,
            _lock: lock,
        };
        sink.exec(
            "configuring the connection",
            // Never reach for the network to fetch an extension. A loader needs little of
            // DuckDB's buffer pool; a cap keeps the process small. Checkpoints rewrite the
            // table's last row group each time, so they wait for 256 MB of WAL (and `finish`).
            // One thread: appends of a few thousand rows gain nothing from DuckDB's workers,
            // whose task queue cost the sink thread about 10% in lock traffic, and the other
            // core is busy downloading and decoding (measured: 157k -> 191k records/s).
            &format!(
                "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false; SET memory_limit = '{}MB'; SET checkpoint_threshold = '256MB'; SET threads = 1;",
                options.duckdb_memory_limit_mb
            ),
        )?;
        sink.exec(
            "creating the state table",
            &format!("CREATE TABLE IF NOT EXISTS {STATE_TABLE} (id INTEGER PRIMARY KEY, state VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)"),
        )?;
        Ok(sink)
    }

    fn fail(&self, context: &str, e: impl Into<BoxError>) -> SinkError {
        SinkError::Write {
            dest: self.dest.clone(),
            context: context.to_string(),
            source: e.into(),
        }
    }

    fn exec(&self, context: &str, sql: &str) -> Result<(), SinkError> {
        self.conn.execute_batch(sql).map_err(|e| self.fail(context, e))
    }

    fn begin(&mut self) -> Result<(), SinkError> {
        if !self.in_transaction {
            self.exec("starting a transaction", "BEGIN TRANSACTION")?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn commit_transaction(&mut self) -> Result<(), SinkError> {
        if self.in_transaction {
            self.exec("committing", "COMMIT")?;
            self.in_transaction = false;
        }
        self.uncommitted_rows = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn existing_columns(&self, table: &str) -> Result<Vec<String>, SinkError> {
        let mut stmt = self
            .conn
            .prepare("SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position")
            .map_err(|e| self.fail("reading table columns", e))?;
        let rows = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(|e| self.fail("reading table columns", e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.fail("reading table columns", e))
    }
}

impl Sink for DuckdbSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        let text: Option<String> = self
            .conn
            .query_row(&format!("SELECT state FROM {STATE_TABLE} WHERE id = 1"), [], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                other => Err(self.fail("reading the saved state", other)),
            })?;
        text.map(|t| State::from_stored(&t).map_err(SinkError::from)).transpose()
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        let table = quote_ident(&stream.name);
        let columns = stream.schema.duckdb_columns();
        let ddl: Vec<String> = columns.iter().map(|(name, ty)| format!("{} {ty}", quote_ident(name))).collect();
        let existing = self.existing_columns(&stream.name)?;
        let empty = existing.is_empty()
            || self
                .conn
                .query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM main.{table})"), [], |r| r.get::<_, bool>(0))
                .map_err(|e| self.fail(&format!("reading table {}", stream.name), e))?;
        if existing.is_empty() {
            self.exec(
                &format!("creating table {}", stream.name),
                &format!("CREATE TABLE IF NOT EXISTS main.{table} ({})", ddl.join(", ")),
            )?;
        } else {
            // A newer schema adds columns; old rows read them as NULL.
            for (name, ty) in &columns {
                if !existing.contains(name) {
                    self.exec(
                        &format!("adding column {name} to table {}", stream.name),
                        &format!("ALTER TABLE main.{table} ADD COLUMN {} {ty}", quote_ident(name)),
                    )?;
                }
            }
        }
        // In key order: the key batches appended to it are projected in that order.
        let key_ddl: Vec<String> = stream
            .primary_key
            .iter()
            .filter_map(|k| columns.iter().find(|(name, _)| name == k))
            .map(|(name, ty)| format!("{} {ty}", quote_ident(name)))
            .collect();
        self.exec(
            &format!("creating the key table of {}", stream.name),
            &format!(
                "CREATE OR REPLACE TEMP TABLE {} ({})",
                quote_ident(&keys_table(&stream.name)),
                key_ddl.join(", ")
            ),
        )?;
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
        self.begin()?;
        let ours = |s: &str| stream.is_none_or(|c| c == s);
        let (replaced, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.replaced).into_iter().partition(|(s, _)| ours(s));
        self.replaced = kept;
        for (stream, server_id) in replaced {
            let table = quote_ident(&stream);
            let context = format!("replacing the rows of {stream}");
            match server_id {
                Some(id) => self.conn.execute(&format!("DELETE FROM main.{table} WHERE server_id = ?"), [id]).map(|_| ()),
                None => self.conn.execute_batch(&format!("DELETE FROM main.{table}")),
            }
            .map_err(|e| self.fail(&context, e))?;
        }
        let names: Vec<String> = self.pending.keys().filter(|s| ours(s)).cloned().collect();
        for name in names {
            let Some(info) = self.streams.get(&name) else {
                return Err(self.fail("merging", format!("stream {name} was written before it was begun")));
            };
            let Some(pending) = self.pending.get_mut(&name) else { continue };
            if pending.batches.is_empty() {
                continue;
            }
            let batches = std::mem::take(&mut pending.batches);
            let fixed_cursor = info.cursor_field.as_deref().filter(|_| info.cursor_fixed);
            let older = match (&mut pending.loaded, fixed_cursor) {
                (Loaded::Keys(loaded), _) => {
                    let new = pending.keys.iter().all(|k| !loaded.may_contain(k.row().as_ref()));
                    for k in &pending.keys {
                        loaded.insert(k.row().as_ref());
                    }
                    if new { OlderCopies::Nowhere } else { OlderCopies::Anywhere }
                }
                (loaded, Some(cursor)) => match (OlderCopies::within_cursors(&batches, cursor), loaded) {
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
            };
            pending.keys.clear();
            self.uncommitted_rows += self.merge(info, &batches, older)?;
        }
        self.conn
            .execute(
                &format!("INSERT OR REPLACE INTO {STATE_TABLE} (id, state, updated_at) VALUES (1, ?, now())"),
                [state.to_json()],
            )
            .map_err(|e| self.fail("saving the state", e))?;
        if self.uncommitted_rows >= GROUP_COMMIT_ROWS || self.last_commit.elapsed() >= self.commit_interval {
            self.commit_transaction()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.commit_transaction()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        // The open transaction holds only committed streams' rows (uncommitted ones wait in
        // memory and are dropped here), so it is committed.
        self.commit_transaction()?;
        self.exec("checkpointing", "CHECKPOINT")
    }
}
