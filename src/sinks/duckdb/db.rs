//! The database side of the DuckDB sink: its file, the connection while one is open, and the
//! transaction that applies a group of queued commits. The sink hands it to a thread of its own
//! for each group ([`super::DbSlot`]) and takes it back before anything else touches the file.

use super::*;

pub(super) struct Db {
    pub(super) path: PathBuf,
    /// Open only while queued commits are applied (and while a stream's table is prepared).
    pub(super) conn: Option<Connection>,
    pub(super) options: SinkOptions,
    /// The tables' schema, quoted.
    pub(super) schema: String,
    pub(super) dest: String,
    /// Holds the next group's thread until a test lets it go.
    #[cfg(test)]
    pub(super) gate: Option<std::sync::mpsc::Receiver<()>>,
}

/// A failed write to the DuckDB database `dest`, while doing `context`.
pub(super) fn write_error(dest: &str, context: &str, e: impl Into<BoxError>) -> SinkError {
    SinkError::Write {
        dest: dest.to_string(),
        context: context.to_string(),
        source: e.into(),
    }
}

impl Db {
    /// Opens the file for writing, waiting for readers to let go.
    pub(super) fn connect(&mut self) -> Result<(), SinkError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let conn = open_waiting(&self.path, Access::ReadWrite, self.options.lock_timeout, &self.dest)?;
        // Never reach for the network to fetch an extension. A loader needs little of DuckDB's
        // buffer pool; a cap keeps the process small. One thread: appends of a few thousand
        // rows gain nothing from DuckDB's workers, whose task queue cost the sink thread about
        // 10% in lock traffic, and the other core is busy downloading and decoding (measured:
        // 157k -> 191k records/s; two threads did not shorten the durable commits either).
        // Checkpoints wait for 256 MB of WAL, or the close after each durable commit.
        // DuckDB chose DICT_FSST for every string segment of the benchmark's tables, never the
        // legacy `fsst` or `dictionary`: skipping their analysis leaves the files the same and
        // cost ~5% less CPU (1M records, alternating syncs: median 8.88 -> 8.43 s user+sys).
        conn.execute_batch(&format!(
            "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false; SET memory_limit = '{}MB'; SET threads = 1; SET checkpoint_threshold = '256MB'; SET disabled_compression_methods = 'fsst,dictionary';",
            self.options.duckdb_memory_limit_mb
        ))
        .map_err(|e| self.fail("configuring the connection", e))?;
        self.conn = Some(conn);
        Ok(())
    }

    /// Closes the file (DuckDB checkpoints its WAL into it as it closes), so readers can open it.
    pub(super) fn release(&mut self) {
        self.conn = None;
    }

    pub(super) fn conn(&self) -> Result<&Connection, SinkError> {
        self.conn.as_ref().ok_or_else(|| self.fail("using the database", "no open connection"))
    }

    pub(super) fn fail(&self, context: &str, e: impl Into<BoxError>) -> SinkError {
        write_error(&self.dest, context, e)
    }

    pub(super) fn exec(&self, context: &str, sql: &str) -> Result<(), SinkError> {
        self.conn()?.execute_batch(sql).map_err(|e| self.fail(context, e))
    }

    /// A table of this sink's schema, quoted.
    pub(super) fn table(&self, name: &str) -> String {
        format!("{}.{}", self.schema, quote_ident(name))
    }

    /// Applies `queue` and saves `state` in one transaction of one short-lived connection.
    pub(super) fn apply(&mut self, queue: Vec<Queued>, state: String) -> Result<(), SinkError> {
        #[cfg(test)]
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        self.connect()?;
        self.exec("starting a transaction", "BEGIN TRANSACTION")?;
        for op in queue {
            match op {
                Queued::Replace(stream, server_id) => {
                    let table = self.table(&stream);
                    let context = format!("replacing the rows of {stream}");
                    let conn = self.conn()?;
                    match server_id {
                        Some(id) => conn.execute(&format!("DELETE FROM {table} WHERE server_id = ?"), [id]).map(|_| ()),
                        None => conn.execute_batch(&format!("DELETE FROM {table}")),
                    }
                    .map_err(|e| self.fail(&context, e))?;
                }
                Queued::Merge { info, rows, older } => {
                    self.merge(&info, &rows, older)?;
                }
            }
        }
        self.conn()?
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO {}.{STATE_TABLE} (id, state, updated_at) VALUES (1, ?, now())",
                    self.schema
                ),
                [state],
            )
            .map_err(|e| self.fail("saving the state", e))?;
        self.exec("committing", "COMMIT")?;
        self.release();
        Ok(())
    }
}
