//! A stream's table: created, or given the columns a newer schema added; and the temporary
//! table its commits' keys go to.

use super::*;

impl Db {
    /// Creates or widens `stream`'s table; whether it holds no rows.
    pub(super) fn prepare_table(&self, stream: &StreamInfo) -> Result<bool, SinkError> {
        let table = self.table(&stream.name);
        let columns = stream.schema.duckdb_columns();
        let ddl: Vec<String> = columns.iter().map(|(name, ty)| format!("{} {ty}", quote_ident(name))).collect();
        let existing = self.existing_columns(&stream.name)?;
        let empty = existing.is_empty()
            || self
                .conn()?
                .query_row(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), [], |r| r.get::<_, bool>(0))
                .map_err(|e| self.fail(&format!("reading table {}", stream.name), e))?;
        if existing.is_empty() {
            self.exec(
                &format!("creating table {}", stream.name),
                &format!("CREATE TABLE IF NOT EXISTS {table} ({})", ddl.join(", ")),
            )?;
        } else {
            // A newer schema adds columns; old rows read them as NULL.
            for (name, ty) in &columns {
                if !existing.contains(name) {
                    self.exec(
                        &format!("adding column {name} to table {}", stream.name),
                        &format!("ALTER TABLE {table} ADD COLUMN {} {ty}", quote_ident(name)),
                    )?;
                }
            }
        }
        Ok(empty)
    }

    /// Creates the temporary table of `stream`'s keys in this connection, in key order (the
    /// key batches appended to it are projected in that order).
    pub(super) fn create_keys_table(&self, stream: &StreamInfo) -> Result<(), SinkError> {
        let columns = stream.schema.duckdb_columns();
        let key_ddl: Vec<String> = stream
            .primary_key
            .iter()
            .filter_map(|k| columns.iter().find(|(name, _)| name == k))
            .map(|(name, ty)| format!("{} {ty}", quote_ident(name)))
            .collect();
        self.exec(
            &format!("creating the key table of {}", stream.name),
            &format!(
                "CREATE TEMP TABLE IF NOT EXISTS {} ({})",
                quote_ident(&keys_table(&stream.name)),
                key_ddl.join(", ")
            ),
        )
    }

    fn existing_columns(&self, table: &str) -> Result<Vec<String>, SinkError> {
        let mut stmt = self
            .conn()?
            .prepare(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            )
            .map_err(|e| self.fail("reading table columns", e))?;
        let rows = stmt
            .query_map([self.options.duckdb_schema.as_str(), table], |r| r.get::<_, String>(0))
            .map_err(|e| self.fail("reading table columns", e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.fail("reading table columns", e))
    }
}
