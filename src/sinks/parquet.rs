//! Parquet destination: `DIR/<stream>/date=YYYY-MM-DD/part-NNNNNN.parquet` (hive style, UTC date
//! of the stream's cursor column), zstd compressed, and `DIR/_state.json`.
//!
//! A partition's files hold each primary key once. New rows go to a new file, unless a file
//! holds older copies of their keys (found by reading key columns only, and for streams with a
//! fixed cursor only in files whose cursor range meets the new rows') or the last file is small:
//! then that file is rewritten with the old and new rows merged, to a temporary name renamed over
//! it once complete and synced. When several files change at once, the partition's folder is
//! exchanged with a staging copy in one rename. So the work of a flush follows its own rows, not
//! the size of the day, and a reader never sees a partial file or a duplicate key. The state file
//! is written (atomically, the same way) only after every file it covers is durable, so a crash
//! at any point is repaired by the next run, which re-reads from the last saved bookmark.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::Row;
use chrono::DateTime;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;

use crate::sinks::{CursorSpan, KeyEncoder, Sink, SinkError, StreamInfo, cursor_span};
use crate::state::State;

pub const STATE_FILE: &str = "_state.json";
const LOCK_FILE: &str = ".postmark-elt.lock";
/// The single file of a partition as written by earlier versions; read as the oldest part.
const LEGACY_FILE: &str = "data.parquet";
/// Where several files of a partition are prepared before they replace it at once.
const STAGING_DIR: &str = ".staging";
/// A partition's last file with fewer rows than this takes a flush's new rows (and is rewritten
/// with them); a larger one is left alone and the rows start a new file. Files therefore grow
/// to about this size (8 row groups), and a flush rewrites at most this many old rows besides
/// those holding older copies of its keys.
const COMPACT_ROWS: i64 = 8 * ROW_GROUP_ROWS as i64;
/// Rows buffered before files are rewritten; commits in between only move the pending state.
const FLUSH_ROWS: usize = 50_000;
/// A row group is held in memory (encoded, with its dictionaries) until it is complete, so its
/// size bounds the writer's memory: 16k rows (a few MB compressed) whatever the partition size.
const ROW_GROUP_ROWS: usize = 16 * 1024;
/// Or fewer rows, when they are wide.
const ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Rows of an existing file read at a time while it is rewritten: the reader holds a batch
/// beside the decoded pages of its row group, and 8k rows of it added about 4 MiB to the peak
/// of a large load (bench, Parquet at 1M records: 87 -> 84 MiB with 2k, the same speed).
const READ_BATCH_ROWS: usize = 2 * 1024;
/// A column's dictionary is built in memory until it reaches this size, then the column falls
/// back to plain encoding: columns of few values (status, tag, stream) stay dictionary-encoded,
/// and unique ones (ids, addresses) stop growing a dictionary that saves nothing. The default,
/// 1 MB a column, kept a 16k-row group of ids dictionary-encoded; with 64 KB the files of 921k
/// generated records were 9% smaller (38.8 -> 35.2 MB) and the writer's peak about 2 MiB lower.
const DICTIONARY_PAGE_BYTES: usize = 64 * 1024;

pub struct ParquetSink {
    dir: PathBuf,
    _lock: File,
    streams: HashMap<String, StreamInfo>,
    /// Rows staged since the last commit.
    staged: BTreeMap<String, Vec<RecordBatch>>,
    /// Rows committed by the runner but not yet written to files.
    buffered: BTreeMap<String, Vec<RecordBatch>>,
    buffered_rows: usize,
    /// Servers whose old rows are dropped from a stream's files at the next flush (`None`: all).
    replaced: BTreeMap<String, Vec<Option<i64>>>,
    staged_replaced: BTreeMap<String, Vec<Option<i64>>>,
    pending_state: Option<State>,
    /// [`COMPACT_ROWS`], smaller in tests.
    compact_rows: i64,
    /// Whether to try exchanging folders; tests turn it off to take the fallback.
    exchange_folders: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(dir: &Path, context: String) -> impl FnOnce(String) -> SinkError + '_ {
    move |message| SinkError::Write {
        dest: format!("Parquet directory {}", dir.display()),
        context,
        message,
    }
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
fn write_atomically(path: &Path, fill: impl FnOnce(&mut File) -> Result<(), SinkError>) -> Result<(), SinkError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    fill(&mut file)?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        // The rename is durable only once the directory is synced.
        File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
    }
    Ok(())
}

impl ParquetSink {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SinkError::Locked {
                dest: format!("Parquet directory {}", dir.display()),
            });
        }
        // Temporary files left by a crashed run are never visible to readers (*.parquet globs),
        // but they take space.
        remove_leftovers(dir);
        Ok(ParquetSink {
            dir: dir.to_path_buf(),
            _lock: lock,
            streams: HashMap::new(),
            staged: BTreeMap::new(),
            buffered: BTreeMap::new(),
            buffered_rows: 0,
            replaced: BTreeMap::new(),
            staged_replaced: BTreeMap::new(),
            pending_state: None,
            compact_rows: COMPACT_ROWS,
            exchange_folders: true,
        })
    }

    fn write_buffered(&mut self) -> Result<(), SinkError> {
        let replaced = std::mem::take(&mut self.replaced);
        let mut streams: Vec<(String, Vec<RecordBatch>)> = std::mem::take(&mut self.buffered).into_iter().collect();
        for stream in replaced.keys() {
            if !streams.iter().any(|(s, _)| s == stream) {
                streams.push((stream.clone(), Vec::new()));
            }
        }
        for (stream, batches) in streams {
            let info = self.streams.get(&stream).cloned().ok_or_else(|| {
                write_err(&self.dir, format!("stream {stream}"))("written before it was begun".to_string())
            })?;
            let drop_servers = replaced.get(&stream).cloned().unwrap_or_default();
            self.write_stream(&info, &batches, &drop_servers)?;
        }
        self.buffered_rows = 0;
        if let Some(state) = self.pending_state.take() {
            let path = self.dir.join(STATE_FILE);
            write_atomically(&path, |f| {
                f.write_all(state.to_json().as_bytes()).map_err(io(&path))
            })?;
        }
        Ok(())
    }

    fn write_stream(&self, info: &StreamInfo, batches: &[RecordBatch], drop_servers: &[Option<i64>]) -> Result<(), SinkError> {
        let context = format!("writing stream {}", info.name);
        let fail = |e: String| write_err(&self.dir, context.clone())(e);
        let encoder = KeyEncoder::new(info).map_err(fail)?;
        // Per partition, the rows of each batch that fall in it: batches are read in place,
        // never gathered into one copy.
        let mut groups: BTreeMap<Option<String>, Vec<(&RecordBatch, Vec<u32>)>> = BTreeMap::new();
        for batch in batches {
            for (partition, rows) in partition_rows(batch, info.cursor_field.as_deref()) {
                groups.entry(partition).or_default().push((batch, rows));
            }
        }
        if !drop_servers.is_empty() {
            // Replacing with nothing still rewrites the file.
            groups.entry(None).or_default();
        }
        for (partition, parts) in groups {
            let keys = parts.iter().map(|(batch, _)| encoder.rows(batch)).collect::<Result<Vec<_>, _>>().map_err(fail)?;
            // The last row of a key (the newest extraction) wins: walk newest first.
            let mut new_keys: HashSet<Row<'_>> = HashSet::new();
            let mut keep: Vec<Vec<u32>> = vec![Vec::new(); parts.len()];
            for (p, (_, rows)) in parts.iter().enumerate().rev() {
                keep[p] = rows.iter().rev().copied().filter(|&i| new_keys.insert(keys[p].row(i as usize))).collect();
                keep[p].reverse();
            }
            let folder = match &partition {
                Some(date) => self.dir.join(&info.name).join(format!("date={date}")),
                None => self.dir.join(&info.name),
            };
            fs::create_dir_all(&folder).map_err(io(&folder))?;
            let files = list_files(&folder, info.cursor_field.as_deref()).map_err(fail)?;
            // A small last file takes the new rows, so that a partition is not left in many
            // small files; a large one stays as it is and the rows go to a new file, so that a
            // flush rewrites at most COMPACT_ROWS old rows unless it replaces old copies.
            let small_last = files.len().checked_sub(1).filter(|&last| files[last].rows < self.compact_rows);
            // Other files are rewritten if they hold an older copy of a new key. A key's cursor
            // never changes in a stream with a fixed cursor, so only files whose cursor range
            // meets the new rows' can; their key columns alone are read to tell.
            let range = match info.cursor_field.as_deref().filter(|_| info.cursor_fixed) {
                Some(cursor) => match cursor_span(cursor, parts.iter().zip(&keep).map(|((batch, _), rows)| (*batch, Some(rows.as_slice())))) {
                    CursorSpan::Within(lo, hi) => Some((lo, hi)),
                    CursorSpan::NoRows | CursorSpan::Unknown => None,
                },
                None => None,
            };
            let mut rewrite: Vec<usize> = Vec::new();
            for (i, file) in files.iter().enumerate() {
                let may_hold = match (range, file.cursor) {
                    (Some((lo, hi)), Some((min, max))) => min <= hi && lo <= max,
                    _ => true,
                };
                if small_last == Some(i)
                    || !drop_servers.is_empty()
                    || (may_hold && !new_keys.is_empty() && holds_any(file, &encoder, &info.primary_key, &new_keys).map_err(fail)?)
                {
                    rewrite.push(i);
                }
            }
            let old: Vec<&PartFile> = rewrite.iter().map(|&i| &files[i]).collect();
            let fill = |file: &mut File| self.write_merged(file, info, &encoder, &old, &new_keys, drop_servers, &parts, &keep);
            match rewrite.as_slice() {
                [] if new_keys.is_empty() => {}
                [] => write_atomically(&folder.join(part_name(files.last().map_or(1, |f| f.seq + 1))), fill)?,
                [one] => write_atomically(&files[*one].path, fill)?,
                _ => self.swap_partition(&folder, &files, &rewrite, fill)?,
            }
        }
        Ok(())
    }

    /// Writes the rows of `old` files, without the keys of `new_keys` (and the rows of dropped
    /// servers), then the `keep` rows of `new_rows`. Old files are streamed through batch by batch and row
    /// groups are flushed by size, so memory does not grow with the partition.
    #[allow(clippy::too_many_arguments)]
    fn write_merged(
        &self,
        file: &mut File,
        info: &StreamInfo,
        encoder: &KeyEncoder,
        old: &[&PartFile],
        new_keys: &HashSet<Row<'_>>,
        drop_servers: &[Option<i64>],
        new_rows: &[(&RecordBatch, Vec<u32>)],
        keep: &[Vec<u32>],
    ) -> Result<(), SinkError> {
        let fail = |e: String| write_err(&self.dir, format!("writing stream {}", info.name))(e);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
            .build();
        let mut writer = ArrowWriter::try_new(file, info.arrow.clone(), Some(props)).map_err(|e| fail(e.to_string()))?;
        let mut write = |batch: &RecordBatch| -> Result<(), SinkError> {
            writer.write(batch).map_err(|e| fail(e.to_string()))?;
            if writer.in_progress_size() >= ROW_GROUP_BYTES {
                writer.flush().map_err(|e| fail(e.to_string()))?;
            }
            Ok(())
        };
        for part in old {
            let reading = |e: &dyn std::fmt::Display| fail(part.reading(e));
            let reader = part.reader().map_err(fail)?.build().map_err(|e| reading(&e))?;
            for batch in reader {
                let batch = batch.map_err(|e| reading(&e))?;
                let batch = with_schema(&batch, &info.arrow).map_err(|e| reading(&e))?;
                let batch = if drop_servers.is_empty() { batch } else { without_servers(&batch, drop_servers).map_err(fail)? };
                let old_keys = encoder.rows(&batch).map_err(fail)?;
                let kept: Vec<u32> = (0..old_keys.num_rows()).filter(|&i| !new_keys.contains(&old_keys.row(i))).map(|i| i as u32).collect();
                write(&take_rows(&batch, kept).map_err(fail)?)?;
            }
        }
        for ((batch, _), kept) in new_rows.iter().zip(keep) {
            write(&take_rows(batch, kept.clone()).map_err(fail)?)?;
        }
        writer.close().map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    /// Replaces several files of a partition at once: a staging folder gets hard links to the
    /// files that stay and the merged file (named as the newest file it replaces), then it is
    /// exchanged with the partition's folder in one rename, so a reader sees the old files or
    /// the new ones, never old and new copies of a key together, nor neither.
    fn swap_partition(&self, folder: &Path, files: &[PartFile], rewrite: &[usize], fill: impl FnOnce(&mut File) -> Result<(), SinkError>) -> Result<(), SinkError> {
        let staging = self.dir.join(STAGING_DIR).join(folder.strip_prefix(&self.dir).unwrap_or(folder).to_string_lossy().replace(['/', '\\'], "~"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let newest = rewrite.iter().map(|&i| &files[i]).max_by_key(|f| f.seq).map(|f| f.name()).unwrap_or_default();
        let merged = staging.join(&newest);
        let mut file = File::create(&merged).map_err(io(&merged))?;
        fill(&mut file)?;
        file.sync_all().map_err(io(&merged))?;
        drop(file);
        let linked = files.iter().enumerate().filter(|(i, _)| !rewrite.contains(i)).try_for_each(|(_, f)| fs::hard_link(&f.path, staging.join(f.name())));
        let swapped = self.exchange_folders && linked.is_ok() && File::open(&staging).and_then(|d| d.sync_all()).is_ok() && exchange(&staging, folder).map_err(io(folder))?;
        if !swapped {
            // No hard links or no atomic exchange here: the merged file replaces the newest old
            // one, then the others go. A crash in between leaves old copies of the new keys,
            // which the next run (reading from the same bookmark) removes.
            fs::rename(&merged, folder.join(&newest)).map_err(io(folder))?;
            for f in rewrite.iter().map(|&i| &files[i]).filter(|f| f.name() != newest) {
                fs::remove_file(&f.path).map_err(io(&f.path))?;
            }
        }
        if let Some(parent) = folder.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
        }
        File::open(folder).and_then(|d| d.sync_all()).map_err(io(folder))?;
        // The staging folder now holds the replaced files.
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
        let _ = fs::remove_dir(self.dir.join(STAGING_DIR));
        Ok(())
    }
}

/// A Parquet file of a partition: `part-NNNNNN.parquet`, or `data.parquet` (sequence 0) as
/// written before partitions had several files.
struct PartFile {
    path: PathBuf,
    seq: u64,
    rows: i64,
    /// The smallest and largest cursor in the file (row-group statistics), when known.
    cursor: Option<(i64, i64)>,
    /// The footer, read once for the listing and the readers.
    meta: ArrowReaderMetadata,
}

impl PartFile {
    fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn reading(&self, e: &dyn std::fmt::Display) -> String {
        reading(&self.path, e)
    }

    /// A reader of the file, in batches of [`READ_BATCH_ROWS`].
    fn reader(&self) -> Result<ParquetRecordBatchReaderBuilder<File>, String> {
        let file = File::open(&self.path).map_err(|e| self.reading(&e))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone()).with_batch_size(READ_BATCH_ROWS))
    }
}

fn reading(path: &Path, e: &dyn std::fmt::Display) -> String {
    format!("reading {}: {e}", path.display())
}

fn part_name(seq: u64) -> String {
    format!("part-{seq:06}.parquet")
}

/// The partition's files, oldest first, with their row counts and cursor ranges.
fn list_files(folder: &Path, cursor: Option<&str>) -> Result<Vec<PartFile>, String> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("listing {}: {e}", folder.display())),
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
        let file = File::open(&path).map_err(|e| reading(&path, &e))?;
        let footer = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| reading(&path, &e))?;
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
fn holds_any(part: &PartFile, encoder: &KeyEncoder, key: &[String], keys: &HashSet<Row<'_>>) -> Result<bool, String> {
    let mask = ProjectionMask::columns(part.meta.parquet_schema(), key.iter().map(String::as_str));
    let reader = part.reader()?.with_projection(mask).build().map_err(|e| part.reading(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| part.reading(&e))?;
        let Ok(rows) = encoder.rows(&batch) else { return Ok(true) };
        if (0..rows.num_rows()).any(|i| keys.contains(&rows.row(i))) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Exchanges two folders in one rename (`renameat2(RENAME_EXCHANGE)`, or `renamex_np` with
/// `RENAME_SWAP` on macOS). `Ok(false)`: the platform or file system cannot.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::NOTSUP || e == Errno::PERM => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// These rows of `batch` (the batch itself when that is all of them).
fn take_rows(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch, String> {
    if rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(i, &r)| i as u32 == r) {
        return Ok(batch.clone());
    }
    take_record_batch(batch, &UInt32Array::from(rows)).map_err(|e| e.to_string())
}

fn remove_leftovers(dir: &Path) {
    // A staging folder left by a crash holds copies of files, or files already replaced.
    let _ = fs::remove_dir_all(dir.join(STAGING_DIR));
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_leftovers(&path);
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.starts_with("tmp-")) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Row indices grouped by the UTC date of the cursor column (`None`: one unpartitioned group).
fn partition_rows(batch: &RecordBatch, cursor: Option<&str>) -> BTreeMap<Option<String>, Vec<u32>> {
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
fn with_schema(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
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
fn without_servers(batch: &RecordBatch, servers: &[Option<i64>]) -> Result<RecordBatch, String> {
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

impl Sink for ParquetSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(State::from_stored(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        let folder = self.dir.join(&stream.name);
        fs::create_dir_all(&folder).map_err(io(&folder))?;
        self.streams.insert(stream.name.clone(), stream.clone());
        Ok(())
    }

    fn replace(&mut self, stream: &str, server_id: Option<i64>) -> Result<(), SinkError> {
        self.staged_replaced.entry(stream.to_string()).or_default().push(server_id);
        Ok(())
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() > 0 {
            self.staged.entry(stream.to_string()).or_default().push(batch.clone());
        }
        Ok(())
    }

    fn commit(&mut self, stream: Option<&str>, state: &State) -> Result<(), SinkError> {
        let ours = |s: &String| stream.is_none_or(|c| c == s);
        let replaced: Vec<String> = self.staged_replaced.keys().filter(|s| ours(s)).cloned().collect();
        for stream in replaced {
            let servers = self.staged_replaced.remove(&stream).unwrap_or_default();
            // Rows buffered earlier for these servers are replaced too.
            if let Some(buffered) = self.buffered.get_mut(&stream) {
                for b in buffered.iter_mut() {
                    *b = without_servers(b, &servers).map_err(|e| write_err(&self.dir, format!("replacing {stream}"))(e))?;
                }
            }
            self.replaced.entry(stream).or_default().extend(servers);
        }
        let staged: Vec<String> = self.staged.keys().filter(|s| ours(s)).cloned().collect();
        for stream in staged {
            let batches = self.staged.remove(&stream).unwrap_or_default();
            self.buffered_rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            self.buffered.entry(stream).or_default().extend(batches);
        }
        self.pending_state = Some(state.clone());
        if self.buffered_rows >= FLUSH_ROWS {
            self.write_buffered()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.staged.clear();
        self.staged_replaced.clear();
        self.write_buffered()
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn page(ids: &[(&str, &str)]) -> String {
        let msgs: Vec<String> = ids
            .iter()
            .map(|(id, at)| format!(r#"{{"MessageID":"{id}","ReceivedAt":"{at}","Tag":""}}"#))
            .collect();
        format!(r#"{{"TotalCount":{},"Messages":[{}]}}"#, ids.len(), msgs.join(","))
    }

    /// (message_id, tag) of every row of every file of a partition folder, sorted.
    fn rows_in(folder: &Path) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        for file in files_in(folder) {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(folder.join(file)).unwrap()).unwrap().build().unwrap();
            for b in reader {
                let b = b.unwrap();
                let ids = crate::streams::extract::string_column(&b, "message_id").unwrap();
                let tags = crate::streams::extract::string_column(&b, "tag").unwrap();
                rows.extend((0..b.num_rows()).map(|i| (ids.value(i).to_string(), tags.value(i).to_string())));
            }
        }
        rows.sort();
        rows
    }

    /// The names of the Parquet files in a folder, sorted.
    fn files_in(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    }

    fn read_all(dir: &Path) -> Vec<String> {
        let mut ids = Vec::new();
        for day in fs::read_dir(dir.join("messages_outbound")).unwrap() {
            ids.extend(rows_in(&day.unwrap().path()).into_iter().map(|(id, _)| id));
        }
        ids.sort();
        ids
    }

    /// Messages `m{from}..m{to}` received at `at`, tagged `tag`.
    fn tagged(dec: &crate::streams::extract::PageDecoder, ids: std::ops::Range<usize>, at: &str, tag: &str) -> RecordBatch {
        let msgs: Vec<String> = ids.map(|i| format!(r#"{{"MessageID":"m{i}","ReceivedAt":"{at}","Tag":"{tag}"}}"#)).collect();
        dec.decode(format!(r#"{{"TotalCount":0,"Messages":[{}]}}"#, msgs.join(",")).as_bytes(), &Default::default()).unwrap().batch
    }

    fn flush(sink: &mut ParquetSink, batch: RecordBatch) {
        sink.write("messages_outbound", &batch).unwrap();
        sink.commit(None, &State::default()).unwrap();
        sink.flush().unwrap();
    }

    /// Rows land in date partitions, re-sent keys replace old rows, state follows the files,
    /// and a second open of the directory is refused while the first holds it.
    #[test]
    fn partitions_merge_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let (info, dec) = crate::sinks::messages_for_tests();
        let mut state = State::default();
        state.advance("messages_outbound", "outbound", "received_at", Utc::now());
        for round in 0..2 {
            let mut sink = ParquetSink::open(dir.path()).unwrap();
            if round == 0 {
                assert!(matches!(ParquetSink::open(dir.path()), Err(SinkError::Locked { .. })));
            }
            sink.begin_stream(&info).unwrap();
            let body = page(&[("a", "2026-11-01T23:30:00-05:00"), ("b", "2026-11-02T10:00:00Z"), ("a", "2026-11-01T23:30:00-05:00")]);
            sink.write("messages_outbound", &dec.decode(body.as_bytes(), &Default::default()).unwrap().batch).unwrap();
            sink.commit(None, &state).unwrap();
            // Staged but never committed: must not appear.
            sink.write("messages_outbound", &dec.decode(page(&[("zz", "2026-11-02T10:00:00Z")]).as_bytes(), &Default::default()).unwrap().batch).unwrap();
            sink.finish().unwrap();
        }
        assert_eq!(read_all(dir.path()), vec!["a", "b"]);
        // 23:30 EST on Nov 1 is 04:30 UTC on Nov 2: both rows in one UTC-date partition.
        assert_eq!(files_in(&dir.path().join("messages_outbound/date=2026-11-02")), vec![part_name(1)]);
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        assert_eq!(sink.load_state().unwrap(), Some(state));
    }

    /// A partition larger than a row group, rewritten with overlapping keys: several row
    /// groups, each key once, and the newest row of a key wins (also between batches).
    #[test]
    fn large_partition_rewrites_in_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let (info, dec) = crate::sinks::messages_for_tests();
        let tagged = |from: usize, to: usize, tag: &str| {
            let msgs: Vec<String> = (from..to)
                .map(|i| format!(r#"{{"MessageID":"m{i}","ReceivedAt":"2026-11-02T10:00:00Z","Tag":"{tag}"}}"#))
                .collect();
            dec.decode(format!(r#"{{"TotalCount":0,"Messages":[{}]}}"#, msgs.join(",")).as_bytes(), &Default::default()).unwrap().batch
        };
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        sink.begin_stream(&info).unwrap();
        sink.write("messages_outbound", &tagged(0, 30_000, "first")).unwrap();
        sink.commit(None, &State::default()).unwrap();
        sink.flush().unwrap();
        sink.write("messages_outbound", &tagged(20_000, 25_000, "old")).unwrap();
        sink.write("messages_outbound", &tagged(20_000, 40_000, "second")).unwrap();
        sink.commit(None, &State::default()).unwrap();
        sink.finish().unwrap();

        let folder = dir.path().join("messages_outbound/date=2026-11-02");
        assert_eq!(files_in(&folder), vec![part_name(1)], "the second flush merged into the small first file");
        let file = File::open(folder.join(part_name(1))).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert!(builder.metadata().num_row_groups() >= 40_000 / ROW_GROUP_ROWS, "{} row groups", builder.metadata().num_row_groups());
        // Unique ids outgrow the dictionary limit and fall back to plain encoding, so no row
        // group holds (or was written holding) a dictionary of every id.
        for group in builder.metadata().row_groups() {
            let ids = group.columns().iter().find(|c| c.column_path().string() == "message_id").unwrap();
            // The encodings of data pages: a plain page is one written after the fallback.
            let pages = ids.page_encoding_stats_mask().expect("page encoding statistics");
            assert!(pages.is_set(parquet::basic::Encoding::PLAIN), "no plain fallback: {:?}", pages.encodings().collect::<Vec<_>>());
        }
        let mut tags: HashMap<String, String> = HashMap::new();
        let mut rows = 0;
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            let ids = crate::streams::extract::string_column(&b, "message_id").unwrap();
            let tag = crate::streams::extract::string_column(&b, "tag").unwrap();
            for i in 0..b.num_rows() {
                rows += 1;
                tags.insert(ids.value(i).to_string(), tag.value(i).to_string());
            }
        }
        assert_eq!((rows, tags.len()), (40_000, 40_000));
        assert_eq!(tags["m0"], "first");
        assert_eq!(tags["m20000"], "second");
        assert_eq!(tags["m39999"], "second");
    }

    /// Streams run concurrently: a commit of one stream leaves another's staged rows staged,
    /// and they vanish if the run ends before that stream commits.
    #[test]
    fn commit_covers_only_its_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (info, dec) = crate::sinks::messages_for_tests();
        let other = StreamInfo { name: "other".to_string(), ..info.clone() };
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        sink.begin_stream(&info).unwrap();
        sink.begin_stream(&other).unwrap();
        let rows = |id| dec.decode(page(&[(id, "2026-11-02T10:00:00Z")]).as_bytes(), &Default::default()).unwrap().batch;
        sink.write("other", &rows("x")).unwrap();
        sink.write("messages_outbound", &rows("a")).unwrap();
        sink.commit(Some("messages_outbound"), &State::default()).unwrap();
        sink.finish().unwrap();
        assert_eq!(read_all(dir.path()), vec!["a"]);
        assert_eq!(fs::read_dir(dir.path().join("other")).unwrap().count(), 0);
    }

    /// A flush whose keys are new adds a file and leaves the large ones untouched; a small last
    /// file takes the rows; keys held by several files replace their old copies in all of them
    /// at once, through the staging folder, and the files not concerned stay (linked).
    /// The same where folders cannot be exchanged (the merged file replaces the newest old one,
    /// then the others are deleted): the same files and rows in the end.
    #[test]
    fn files_are_added_merged_and_replaced_together() {
        for exchange_folders in [true, false] {
            added_merged_and_replaced(exchange_folders);
        }
    }

    fn added_merged_and_replaced(exchange_folders: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (info, dec) = crate::sinks::messages_for_tests();
        let day = "2026-11-02T10:00:00Z";
        let folder = dir.path().join("messages_outbound/date=2026-11-02");
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        sink.compact_rows = 100;
        sink.exchange_folders = exchange_folders;
        sink.begin_stream(&info).unwrap();
        flush(&mut sink, tagged(&dec, 0..300, day, "a"));
        let first = fs::read(folder.join(part_name(1))).unwrap();
        flush(&mut sink, tagged(&dec, 300..600, day, "b"));
        assert_eq!(files_in(&folder), vec![part_name(1), part_name(2)]);
        assert_eq!(fs::read(folder.join(part_name(1))).unwrap(), first, "a large file with none of the keys is not rewritten");
        flush(&mut sink, tagged(&dec, 600..650, day, "c"));
        flush(&mut sink, tagged(&dec, 650..700, day, "d"));
        assert_eq!(files_in(&folder), vec![part_name(1), part_name(2), part_name(3)], "a small last file takes new rows");
        let third = fs::read(folder.join(part_name(3))).unwrap();
        // Keys in files 1 and 2 (and not 3): both are replaced by one file, named as the newest.
        flush(&mut sink, tagged(&dec, 250..350, day, "e"));
        sink.finish().unwrap();
        assert_eq!(files_in(&folder), vec![part_name(2), part_name(3)]);
        assert_eq!(fs::read(folder.join(part_name(3))).unwrap(), third);
        assert!(!dir.path().join(STAGING_DIR).exists());
        let rows = rows_in(&folder);
        assert_eq!(rows.len(), 700, "each key once");
        let tag = |id: &str| rows.iter().find(|(i, _)| i == id).map(|(_, t)| t.as_str());
        assert_eq!((tag("m0"), tag("m250"), tag("m349"), tag("m350"), tag("m620"), tag("m699")), (Some("a"), Some("e"), Some("e"), Some("b"), Some("c"), Some("d")));
    }

    /// With a fixed cursor, only files whose cursor range meets the new rows' are searched for
    /// old copies: a re-read at the same time replaces its old copy, and a copy planted at
    /// another time (which a fixed cursor rules out) is left; without a fixed cursor every file
    /// is searched. A file written before parts (`data.parquet`) is read as the oldest part.
    #[test]
    fn old_copies_are_looked_for_where_the_cursor_allows() {
        for fixed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (mut info, dec) = crate::sinks::messages_for_tests();
            info.cursor_fixed = fixed;
            let folder = dir.path().join("messages_outbound/date=2026-11-02");
            let mut sink = ParquetSink::open(dir.path()).unwrap();
            sink.compact_rows = 10;
            sink.begin_stream(&info).unwrap();
            flush(&mut sink, tagged(&dec, 0..20, "2026-11-02T10:00:00Z", "early"));
            fs::rename(folder.join(part_name(1)), folder.join(LEGACY_FILE)).unwrap();
            flush(&mut sink, tagged(&dec, 20..40, "2026-11-02T12:00:00Z", "late"));
            assert_eq!(files_in(&folder), vec![LEGACY_FILE.to_string(), part_name(1)]);
            // m5 re-read at its own time; m25 "re-read" at 10:00, outside the 12:00 file's range.
            let mut batch = tagged(&dec, 5..6, "2026-11-02T10:00:00Z", "again");
            batch = arrow::compute::concat_batches(&batch.schema(), [&batch, &tagged(&dec, 25..26, "2026-11-02T10:00:00Z", "again")]).unwrap();
            flush(&mut sink, batch);
            sink.finish().unwrap();
            let rows = rows_in(&folder);
            let copies = |id: &str| rows.iter().filter(|(i, _)| i == id).map(|(_, t)| t.clone()).collect::<Vec<_>>();
            assert_eq!(copies("m5"), vec!["again"], "fixed: {fixed}");
            if fixed {
                assert_eq!(copies("m25"), vec!["again", "late"], "the 12:00 file is not searched for a 10:00 key");
            } else {
                assert_eq!(copies("m25"), vec!["again"]);
            }
            assert_eq!(rows.len(), if fixed { 41 } else { 40 });
        }
    }

    /// A staging folder left by a crash is removed when the directory is opened again.
    #[test]
    fn staging_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(STAGING_DIR).join("messages_outbound~date=2026-11-02");
        fs::create_dir_all(&leftover).unwrap();
        fs::write(leftover.join(part_name(1)), b"partial").unwrap();
        drop(ParquetSink::open(dir.path()).unwrap());
        assert!(!dir.path().join(STAGING_DIR).exists());
    }
}
