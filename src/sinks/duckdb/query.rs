//! Readers (`postmark-elt query`, `report`): the file opened read-only, waiting while a sync
//! commits; one statement rendered as a table; and the UTC wall clock DuckDB stores timestamps in.

use super::*;

/// Opens a synced database read-only, with `schema` as the default schema, waiting up to
/// `timeout` while a sync commits (or another program writes it).
pub fn read_only(path: &Path, schema: &str, timeout: std::time::Duration) -> Result<Connection, SinkError> {
    let dest = format!("DuckDB database {}", path.display());
    let fail = |context: &str, e: BoxError| SinkError::Write {
        dest: dest.clone(),
        context: context.to_string(),
        source: e,
    };
    if !path.exists() {
        return Err(fail("opening", "no such file; run `postmark-elt sync` first".into()));
    }
    let conn = open_waiting(path, Access::ReadOnly, timeout, &dest)?;
    conn.execute_batch(&format!("SET schema = '{}'", schema.replace('\'', "''")))
        .map_err(|e| fail(&format!("using schema {schema}; check the config's `schema`"), e.into()))?;
    Ok(conn)
}

/// Runs one SQL statement on a synced database (read-only) and renders the result as a table,
/// for a quick look without the DuckDB CLI.
pub fn query(path: &Path, schema: &str, timeout: std::time::Duration, sql: &str) -> Result<String, SinkError> {
    let conn = read_only(path, schema, timeout)?;
    let fail = |context: &str, e: duckdb::Error| SinkError::Write {
        dest: format!("DuckDB database {}", path.display()),
        context: context.to_string(),
        source: Box::new(e),
    };
    let mut stmt = conn.prepare(sql).map_err(|e| fail("preparing the query", e))?;
    let result = stmt.query_arrow([]).map_err(|e| fail("running the query", e))?;
    let schema = result.get_schema();
    let mut batches: Vec<RecordBatch> = result.collect();
    // No rows still shows the columns.
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| SinkError::Write {
            dest: format!("DuckDB database {}", path.display()),
            context: "formatting the result".to_string(),
            source: Box::new(e),
        })
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
