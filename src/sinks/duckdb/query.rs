//! `postmark-elt query`: one read-only statement rendered as a table, and the UTC wall clock DuckDB stores timestamps in.

use super::*;

/// Runs one SQL statement on a synced database (read-only) and renders the result as a table,
/// for a quick look without the DuckDB CLI.
pub fn query(path: &Path, sql: &str) -> Result<String, SinkError> {
    let dest = format!("DuckDB database {}", path.display());
    let fail = |context: &str, e: BoxError| SinkError::Write {
        dest: dest.clone(),
        context: context.to_string(),
        source: e,
    };
    if !path.exists() {
        return Err(fail("opening", "no such file; run `postmark-elt sync` first".into()));
    }
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .and_then(|c| c.enable_autoload_extension(false))
        .map_err(|e| fail("configuring", e.into()))?;
    let _reading = DestinationLock::shared(&lock_path(path, false), &dest)?;
    let conn = Connection::open_with_flags(path, config).map_err(|e| fail("opening", e.into()))?;
    let mut stmt = conn.prepare(sql).map_err(|e| fail("preparing the query", e.into()))?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(|e| fail("running the query", e.into()))?.collect();
    arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| fail("formatting the result", e.into()))
}

/// Timestamp columns become zone-less (still UTC) to match the TIMESTAMP columns of the tables.
pub(super) fn utc_wall_clock(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let naive = DataType::Timestamp(*unit, None);
                columns.push(arrow::compute::cast(column, &naive)?);
                fields.push(field.as_ref().clone().with_data_type(naive));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
