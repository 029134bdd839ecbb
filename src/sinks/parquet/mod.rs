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
//!
//! The same layout goes to object storage (`s3://`, `gs://`, `az://`, `file://`): the sink then
//! writes in a local mirror of the partitions it touches, and [`remote`] publishes each flush.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::Row;
use chrono::DateTime;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;

use crate::sinks::lock::{DestinationLock, lock_path};
use crate::sinks::{BoxError, CursorSpan, KeyEncoder, Sink, SinkError, StreamInfo, cursor_span};
use crate::state::State;

mod aws_profile;
mod files;
mod folder;
mod remote;
#[cfg(test)]
mod remote_tests;
mod rows;
#[cfg(test)]
mod tests;

use files::*;
use folder::*;
use rows::*;

pub use remote::{MANIFEST_FILE, SCHEMES};

pub const STATE_FILE: &str = "_state.json";
/// The single file of a partition as written by earlier versions; read as the oldest part.
const LEGACY_FILE: &str = "data.parquet";
/// Where several files of a partition are prepared before they replace it at once.
const STAGING_DIR: &str = ".staging";
/// A partition's last file with fewer rows than this takes a flush's new rows (and is rewritten
/// with them); a larger one is left alone and the rows start a new file. Files therefore hold
/// at least this many rows (2 row groups) but the last, and a flush rewrites at most this many
/// old rows besides those holding older copies of its keys. With 8 row groups, a day of 250,000
/// messages was rewritten several times as it grew: `bench --dest parquet --records 5000000
/// --runs 3`, two alternating sets each, 115,987 / 108,322 records/s with 8 row groups against
/// 143,004 / 134,693 with 2, peak RSS 115 against 111 MiB.
const COMPACT_ROWS: i64 = 2 * ROW_GROUP_ROWS as i64;
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
    _lock: DestinationLock,
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
    /// The object store the mirror `dir` is published to, if any.
    remote: Option<remote::Remote>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(dir: &Path, context: String) -> impl FnOnce(BoxError) -> SinkError + '_ {
    move |message| SinkError::Write {
        dest: format!("Parquet directory {}", dir.display()),
        context,
        source: message,
    }
}

impl ParquetSink {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = DestinationLock::exclusive(&lock_path(dir, true), &format!("Parquet directory {}", dir.display()))?;
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
            remote: None,
        })
    }

    /// The destination at an object-store URL (`s3://bucket/prefix`, ...); reads only until
    /// the first flush.
    pub fn open_url(url: &str) -> Result<Self, SinkError> {
        let remote = remote::Remote::open(url)?;
        let mut sink = Self::open(remote.mirror())?;
        sink.remote = Some(remote);
        Ok(sink)
    }

    /// Whether a rewritten file gets a new name (and its old one is removed) rather than being
    /// replaced under its name: object stores have no rename, and only new names let the
    /// manifest say which files are current (see [`remote`]).
    fn fresh_names(&self) -> bool {
        self.remote.is_some()
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
            let info = self
                .streams
                .get(&stream)
                .cloned()
                .ok_or_else(|| write_err(&self.dir, format!("stream {stream}"))("written before it was begun".into()))?;
            let drop_servers = replaced.get(&stream).cloned().unwrap_or_default();
            self.write_stream(&info, &batches, &drop_servers)?;
        }
        self.buffered_rows = 0;
        if let Some(remote) = &mut self.remote {
            let state = self.pending_state.take().map(|s| s.to_json());
            return remote.publish(state.as_deref());
        }
        if let Some(state) = self.pending_state.take() {
            let path = self.dir.join(STATE_FILE);
            write_atomically(&path, |f| f.write_all(state.to_json().as_bytes()).map_err(io(&path)))?;
        }
        Ok(())
    }

    fn write_stream(&mut self, info: &StreamInfo, batches: &[RecordBatch], drop_servers: &[Option<i64>]) -> Result<(), SinkError> {
        let context = format!("writing stream {}", info.name);
        let fail = |e: BoxError| write_err(&self.dir, context.clone())(e);
        let encoder = KeyEncoder::new(info).map_err(|e| fail(e.into()))?;
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
            let keys = parts
                .iter()
                .map(|(batch, _)| encoder.rows(batch))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.into()))?;
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
            if let Some(remote) = &mut self.remote {
                let relative = folder.strip_prefix(&self.dir).unwrap_or(&folder).to_string_lossy().replace('\\', "/");
                remote.fetch(&relative)?;
            }
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
            let next_name = folder.join(part_name(files.last().map_or(1, |f| f.seq + 1)));
            match rewrite.as_slice() {
                [] if new_keys.is_empty() => {}
                [] => write_atomically(&next_name, fill)?,
                replaced if self.fresh_names() => {
                    write_atomically(&next_name, fill)?;
                    for f in replaced.iter().map(|&i| &files[i]) {
                        fs::remove_file(&f.path).map_err(io(&f.path))?;
                    }
                }
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
        let fail = |e: BoxError| write_err(&self.dir, format!("writing stream {}", info.name))(e);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
            .build();
        let mut writer = ArrowWriter::try_new(file, info.arrow.clone(), Some(props)).map_err(|e| fail(e.into()))?;
        let mut write = |batch: &RecordBatch| -> Result<(), SinkError> {
            writer.write(batch).map_err(|e| fail(e.into()))?;
            if writer.in_progress_size() >= ROW_GROUP_BYTES {
                writer.flush().map_err(|e| fail(e.into()))?;
            }
            Ok(())
        };
        for part in old {
            let reading = |e: BoxError| fail(part.reading(e));
            let reader = part.reader().map_err(fail)?.build().map_err(|e| reading(e.into()))?;
            for batch in reader {
                let batch = batch.map_err(|e| reading(e.into()))?;
                let batch = with_schema(&batch, &info.arrow).map_err(|e| reading(e.into()))?;
                let batch = if drop_servers.is_empty() {
                    batch
                } else {
                    without_servers(&batch, drop_servers).map_err(fail)?
                };
                let old_keys = encoder.rows(&batch).map_err(|e| fail(e.into()))?;
                let kept: Vec<u32> = (0..old_keys.num_rows())
                    .filter(|&i| !new_keys.contains(&old_keys.row(i)))
                    .map(|i| i as u32)
                    .collect();
                write(&take_rows(&batch, kept).map_err(fail)?)?;
            }
        }
        for ((batch, _), kept) in new_rows.iter().zip(keep) {
            write(&take_rows(batch, kept.clone()).map_err(fail)?)?;
        }
        writer.close().map_err(|e| fail(e.into()))?;
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        if let Some(remote) = &self.remote {
            return remote.state().map(State::from_stored).transpose().map_err(SinkError::from);
        }
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
