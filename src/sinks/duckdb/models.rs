//! The analyst models (`crate::models`) created as views at the end of every sync, so they
//! follow the tables' columns: a model whose raw tables are not all there yet is left out, and
//! one that does not fit them (a column dropped by the config's `columns`) is logged and left
//! out; the rows are loaded either way.

use super::*;

impl Db {
    /// Creates the Eastern-day macro and every model whose sources exist, in this schema.
    pub(super) fn create_models(&self) -> Result<Vec<&'static str>, SinkError> {
        let context = "creating the analyst models";
        self.exec(context, &crate::models::eastern_date_macro(&self.schema))?;
        let mut stmt = self
            .conn()?
            .prepare(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() AND table_schema = ? AND table_type = 'BASE TABLE'",
            )
            .map_err(|e| self.fail(context, e))?;
        let tables: HashSet<String> = stmt
            .query_map([self.options.duckdb_schema.as_str()], |r| r.get::<_, String>(0))
            .map_err(|e| self.fail(context, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(context, e))?;
        let mut created = Vec::new();
        for model in crate::models::MODELS {
            if !crate::models::sources(model.sql).iter().all(|t| tables.contains(*t)) {
                continue;
            }
            let sql = crate::models::render(model.sql, &self.schema).map_err(|e| self.fail(context, e))?;
            match self.exec(
                &format!("creating the view {}", model.name),
                &format!("CREATE OR REPLACE VIEW {} AS {sql}", self.table(model.name)),
            ) {
                Ok(()) => created.push(model.name),
                Err(e) => tracing::warn!(model = model.name, "Analyst model not created: {e}"),
            }
        }
        Ok(created)
    }
}
