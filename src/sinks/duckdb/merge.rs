//! A commit's merge: the rows that share a key with the new ones are deleted where older copies
//! can be (the cursor range of a fixed cursor, or anywhere), then the new rows are appended.

use super::*;

/// Where older copies of a commit's keys can be in the target table.
pub(super) enum OlderCopies {
    /// None can be there: the delete is skipped.
    Nowhere,
    /// Only in rows whose cursor lies in this range (microseconds, UTC): a fixed cursor.
    Between(i64, i64),
    Anywhere,
}

impl OlderCopies {
    /// The cursor range of `batches`, or `Anywhere` if a cursor is missing.
    pub(super) fn within_cursors(batches: &[RecordBatch], cursor: &str) -> OlderCopies {
        match cursor_span(cursor, batches.iter().map(|b| (b, None))) {
            CursorSpan::NoRows => OlderCopies::Nowhere,
            CursorSpan::Within(lo, hi) => OlderCopies::Between(lo, hi),
            CursorSpan::Unknown => OlderCopies::Anywhere,
        }
    }
}

/// A TIMESTAMP literal (UTC wall clock, as the tables store it) of `micros`.
pub(super) fn timestamp_literal(micros: i64) -> Option<String> {
    DateTime::from_timestamp_micros(micros).map(|t| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")))
}

/// The temporary table a commit's keys go to before the delete.
pub(super) fn keys_table(stream: &str) -> String {
    format!("_keys_{stream}")
}

impl Db {
    /// Replaces the target rows that share a key with the queued `rows`, looking for them where
    /// `older` says, inside the open transaction. The rows are read from their spill file twice
    /// (keys, then rows), a batch at a time.
    pub(super) fn merge(&self, info: &StreamInfo, rows: &spill::Spilled, older: OlderCopies) -> Result<usize, SinkError> {
        let context = format!("merging rows into table {}", info.name);
        let table = self.table(&info.name);
        let keys = quote_ident(&keys_table(&info.name));
        let on = info
            .primary_key
            .iter()
            // A key column may be null (the `tag` of a stats total): null keys match.
            .map(|k| format!("t.{k} IS NOT DISTINCT FROM s.{k}", k = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let key_columns: Vec<usize> = info
            .primary_key
            .iter()
            .map(|k| info.arrow.index_of(k).map_err(|e| self.fail(&context, e)))
            .collect::<Result<_, _>>()?;
        let columns: Vec<&str> = info.arrow.fields().iter().map(|f| f.name().as_str()).collect();
        // A constant range on the cursor lets DuckDB skip the row groups outside it (zone maps),
        // so the delete reads the recent part of the table rather than every key in it.
        let within = match older {
            OlderCopies::Nowhere => None,
            OlderCopies::Anywhere => Some(String::new()),
            OlderCopies::Between(lo, hi) => match (&info.cursor_field, timestamp_literal(lo), timestamp_literal(hi)) {
                (Some(cursor), Some(lo), Some(hi)) => Some(format!(" AND t.{} BETWEEN {lo} AND {hi}", quote_ident(cursor))),
                _ => Some(String::new()),
            },
        };
        let mut appended = 0;
        if let Some(within) = within {
            self.create_keys_table(info)?;
            let mut appender = self
                .conn()?
                .appender_to_catalog_and_db(&keys_table(&info.name), "temp", "main")
                .map_err(|e| self.fail(&context, e))?;
            for batch in rows.read().map_err(|e| self.fail(&context, e))? {
                let batch = batch.map_err(|e| self.fail(&context, e))?;
                let keys = batch.project(&key_columns).map_err(|e| self.fail(&context, e))?;
                appender.append_record_batch(keys).map_err(|e| self.fail(&context, e))?;
            }
            appender.flush().map_err(|e| self.fail(&context, e))?;
            drop(appender);
            self.exec(
                &context,
                &format!("DELETE FROM {table} AS t USING temp.{keys} AS s WHERE {on}{within}; DELETE FROM temp.{keys};"),
            )?;
        }
        // Straight into the target, by column name: an older table may order its columns
        // differently (columns added by newer schemas come last).
        let mut appender = self
            .conn()?
            .appender_with_columns_to_db(&info.name, &self.options.duckdb_schema, &columns)
            .map_err(|e| self.fail(&context, e))?;
        for batch in rows.read().map_err(|e| self.fail(&context, e))? {
            let batch = batch.map_err(|e| self.fail(&context, e))?;
            appended += batch.num_rows();
            appender.append_record_batch(batch).map_err(|e| self.fail(&context, e))?;
        }
        appender.flush().map_err(|e| self.fail(&context, e))?;
        Ok(appended)
    }
}
