//! A partition's Parquet files: listing them with their row counts and cursor ranges, and looking for keys in their key columns.

use super::*;

/// A Parquet file of a partition: `part-NNNNNN.parquet`, or `data.parquet` (sequence 0) as
/// written before partitions had several files.
pub(super) struct PartFile {
    pub(super) path: PathBuf,
    pub(super) seq: u64,
    pub(super) rows: i64,
    /// The smallest and largest cursor in the file (row-group statistics), when known.
    pub(super) cursor: Option<(i64, i64)>,
    /// The footer, read once for the listing and the readers.
    pub(super) meta: ArrowReaderMetadata,
}

impl PartFile {
    pub(super) fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub(super) fn reading(&self, e: impl Into<BoxError>) -> BoxError {
        reading(&self.path, e)
    }

    /// A reader of the file, in batches of [`READ_BATCH_ROWS`].
    pub(super) fn reader(&self) -> Result<ParquetRecordBatchReaderBuilder<File>, BoxError> {
        let file = File::open(&self.path).map_err(|e| self.reading(e))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone()).with_batch_size(READ_BATCH_ROWS))
    }
}

/// A Parquet file that could not be read, and why (the I/O, Parquet or Arrow error).
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub(super) struct ReadError {
    path: PathBuf,
    #[source]
    source: BoxError,
}

pub(super) fn reading(path: &Path, e: impl Into<BoxError>) -> BoxError {
    Box::new(ReadError {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

pub(super) fn part_name(seq: u64) -> String {
    format!("part-{seq:06}.parquet")
}

/// The partition's files, oldest first, with their row counts and cursor ranges.
pub(super) fn list_files(folder: &Path, cursor: Option<&str>) -> Result<Vec<PartFile>, BoxError> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", folder.display()).into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("listing {}: {e}", folder.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let seq = if name == LEGACY_FILE {
            0
        } else if let Some(seq) = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).and_then(|n| n.parse().ok()) {
            seq
        } else {
            continue;
        };
        let file = File::open(&path).map_err(|e| reading(&path, e))?;
        let footer = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| reading(&path, e))?;
        let meta = footer.metadata();
        let column = cursor.and_then(|c| meta.file_metadata().schema_descr().columns().iter().position(|col| col.path().string() == c));
        let mut range: Option<(i64, i64)> = None;
        let mut known = column.is_some();
        for group in meta.row_groups() {
            match column.and_then(|c| group.column(c).statistics()) {
                Some(Statistics::Int64(s)) => {
                    if let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt()) {
                        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                    } else if group.num_rows() > 0 {
                        // Null cursors only, or no statistics: the range says nothing.
                        known = false;
                    }
                }
                _ => known &= group.num_rows() == 0,
            }
        }
        files.push(PartFile {
            seq,
            rows: meta.file_metadata().num_rows(),
            cursor: if known { range } else { None },
            path,
            meta: footer,
        });
    }
    files.sort_by_key(|f| f.seq);
    Ok(files)
}

/// Whether the file holds any of `keys`, read from its key columns only. A file whose key
/// columns cannot be compared (another type, a missing column) counts as holding them.
pub(super) fn holds_any(part: &PartFile, encoder: &KeyEncoder, key: &[String], keys: &HashSet<Row<'_>>) -> Result<bool, BoxError> {
    let mask = ProjectionMask::columns(part.meta.parquet_schema(), key.iter().map(String::as_str));
    let reader = part.reader()?.with_projection(mask).build().map_err(|e| part.reading(e))?;
    for batch in reader {
        let batch = batch.map_err(|e| part.reading(e))?;
        let Ok(rows) = encoder.rows(&batch) else { return Ok(true) };
        if (0..rows.num_rows()).any(|i| keys.contains(&rows.row(i))) {
            return Ok(true);
        }
    }
    Ok(false)
}
