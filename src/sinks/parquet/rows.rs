//! Row selection for the Parquet sink: rows by partition date, rows without some servers, rows of an older schema.

use super::*;

/// These rows of `batch` (the batch itself when that is all of them).
pub(super) fn take_rows(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch, BoxError> {
    if rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(i, &r)| i as u32 == r) {
        return Ok(batch.clone());
    }
    take_record_batch(batch, &UInt32Array::from(rows)).map_err(BoxError::from)
}
/// Row indices grouped by the UTC date of the cursor column (`None`: one unpartitioned group).
pub(super) fn partition_rows(batch: &RecordBatch, cursor: Option<&str>) -> BTreeMap<Option<String>, Vec<u32>> {
    let mut groups: BTreeMap<Option<String>, Vec<u32>> = BTreeMap::new();
    let column = cursor
        .and_then(|c| batch.column_by_name(c))
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
    for i in 0..batch.num_rows() {
        let key = column.and_then(|c| {
            c.is_valid(i)
                .then(|| DateTime::from_timestamp_micros(c.value(i)))
                .flatten()
                .map(|t| t.format("%Y-%m-%d").to_string())
        });
        let key = if cursor.is_some() {
            Some(key.unwrap_or_else(|| "unknown".to_string()))
        } else {
            None
        };
        groups.entry(key).or_default().push(i as u32);
    }
    groups
}

/// Columns matched by name, so files written by an older schema read on; new columns are null.
pub(super) fn with_schema(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Arc::clone(c),
            _ => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

/// Drops the rows of these servers (`None` in the list: every row).
pub(super) fn without_servers(batch: &RecordBatch, servers: &[Option<i64>]) -> Result<RecordBatch, BoxError> {
    if servers.contains(&None) {
        return Ok(batch.slice(0, 0));
    }
    let ids = batch
        .column_by_name(crate::schema::SERVER_ID)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
        .ok_or("no server_id column")?;
    let keep: Vec<u32> = (0..batch.num_rows())
        .filter(|&i| !(ids.is_valid(i) && servers.contains(&Some(ids.value(i)))))
        .map(|i| i as u32)
        .collect();
    take_rows(batch, keep)
}
