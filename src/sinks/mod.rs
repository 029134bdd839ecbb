//! Destinations. A sink knows Arrow batches and state, nothing about HTTP.
//!
//! Three verbs, as in the writer libraries: `write` stages rows, `commit` makes the staged rows
//! and the state durable together, `finish` closes. A sink runs on its own thread behind a
//! bounded channel ([`SinkHandle`]), so pages keep downloading while rows are written.

pub mod columns;
pub mod discard;
#[cfg(feature = "duckdb")]
pub mod duckdb;
mod handle;
#[cfg(feature = "duckdb")]
mod key_filter;
pub mod lock;
pub mod parquet;
pub mod projection;
pub mod singer;
pub mod whole_lines;

pub use handle::SinkHandle;

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::schema::StreamSchema;
use crate::state::{State, StateError};

/// Which destination, chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DestKind {
    /// Tables in an embedded DuckDB file (the default).
    Duckdb,
    /// Parquet files under a directory, one folder per stream.
    Parquet,
    /// Singer SCHEMA/RECORD/STATE messages on stdout.
    Singer,
    /// Nothing: pages are read and decoded, and dropped (no state either); to time a read,
    /// and the benchmark's ceiling.
    #[value(name = "none")]
    Discard,
    /// Airbyte RECORD/STATE messages on stdout (`postmark-elt airbyte read` only).
    #[value(skip)]
    Airbyte,
}

/// The source of a [`SinkError::Write`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{dest} is locked by another run of postmark-elt (or another program); wait for it to finish, or use another --path")]
    Locked { dest: String },
    #[error(
        "{dest} is held open by process {pid} (a reader such as the DuckDB CLI or a notebook, or another writer); waited {waited_seconds} s for it to let go: close it there, or raise lock_timeout_seconds"
    )]
    HeldOpen { dest: String, pid: i32, waited_seconds: u64 },
    #[error("{dest}: {context}: {source}")]
    Write {
        dest: String,
        context: String,
        /// DuckDB's, Arrow's, Parquet's or serde's error (or a message where there is none).
        #[source]
        source: BoxError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("--path {path} is a URL, and DuckDB writes a local file; use a local path, or --dest parquet to write to object storage")]
    NotLocal { path: String },
    #[error("--path {path}: {reason}")]
    BadUrl { path: String, reason: String },
    #[error("AWS profile `{profile}` {reason}")]
    AwsProfile { profile: String, reason: String },
    #[error(
        "{url} holds Parquet files but no _manifest.json, so they were not written there by postmark-elt (a folder copied up, another tool); write to an empty prefix, or move them away"
    )]
    NotOurs { url: String },
    #[error("{url}: {context}: {source}")]
    Remote {
        url: String,
        context: String,
        #[source]
        source: object_store::Error,
    },
    #[error("this postmark-elt was built without DuckDB support; rebuild with `--features duckdb`, or use --dest parquet or --dest singer")]
    DuckdbDisabled,
}

/// How a stream's rows meet the rows already loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Upsert on the primary key.
    Merge,
    /// Full-table streams: a `replace` before the rows drops the server's old rows.
    Replace,
}

/// What a sink needs to know about a stream.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub name: String,
    pub schema: StreamSchema,
    pub arrow: SchemaRef,
    pub primary_key: Vec<String>,
    /// The column bookmarks follow, if the stream is incremental.
    pub cursor_field: Option<String>,
    /// A key's cursor never changes (see `StreamDef::cursor_fixed`).
    pub cursor_fixed: bool,
    pub mode: LoadMode,
}

/// Where the cursor of some rows lies (microseconds, UTC).
pub(crate) enum CursorSpan {
    NoRows,
    Within(i64, i64),
    /// The cursor column is missing or a row has no cursor.
    Unknown,
}

/// The span of the timestamp column `cursor` over these rows of each batch (all its rows when
/// `None`).
pub(crate) fn cursor_span<'a>(cursor: &str, rows: impl IntoIterator<Item = (&'a RecordBatch, Option<&'a [u32]>)>) -> CursorSpan {
    use arrow::array::{Array, TimestampMicrosecondArray};
    let mut span: Option<(i64, i64)> = None;
    let mut widen = |lo: i64, hi: i64| span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    for (batch, rows) in rows {
        let Some(column) = batch
            .column_by_name(cursor)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        else {
            return CursorSpan::Unknown;
        };
        match rows {
            None if column.null_count() > 0 => return CursorSpan::Unknown,
            None => {
                if let (Some(lo), Some(hi)) = (arrow::compute::min(column), arrow::compute::max(column)) {
                    widen(lo, hi);
                }
            }
            Some(rows) => {
                for &i in rows {
                    if column.is_null(i as usize) {
                        return CursorSpan::Unknown;
                    }
                    widen(column.value(i as usize), column.value(i as usize));
                }
            }
        }
    }
    span.map_or(CursorSpan::NoRows, |(lo, hi)| CursorSpan::Within(lo, hi))
}

/// A stream's primary key in arrow's row format, which hashes and compares as bytes; one
/// encoder per stream, so that every row of it is encoded alike.
pub(crate) struct KeyEncoder {
    converter: arrow::row::RowConverter,
    key: Vec<String>,
}

impl KeyEncoder {
    pub fn new(info: &StreamInfo) -> Result<Self, String> {
        Self::for_key(&info.arrow, &info.primary_key)
    }

    /// The encoder of `key`, columns of `schema`.
    pub fn for_key(schema: &arrow::datatypes::Schema, key: &[impl AsRef<str>]) -> Result<Self, String> {
        let fields = key
            .iter()
            .map(|k| schema.field_with_name(k.as_ref()).map(|f| arrow::row::SortField::new(f.data_type().clone())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let converter = arrow::row::RowConverter::new(fields).map_err(|e| e.to_string())?;
        Ok(KeyEncoder {
            converter,
            key: key.iter().map(|k| k.as_ref().to_string()).collect(),
        })
    }

    /// The key of every row of `batch`.
    pub fn rows(&self, batch: &RecordBatch) -> Result<arrow::row::Rows, String> {
        let columns = self
            .key
            .iter()
            .map(|k| batch.column_by_name(k).cloned().ok_or_else(|| format!("no key column {k}")))
            .collect::<Result<Vec<_>, _>>()?;
        self.converter.convert_columns(&columns).map_err(|e| e.to_string())
    }
}

pub trait Sink: Send {
    /// The state saved by the last commit, if any.
    fn load_state(&mut self) -> Result<Option<State>, SinkError>;
    /// Prepares the stream's table or folder.
    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError>;
    /// At the next commit, before the staged rows go in, drops the stream's rows of this server
    /// (of every server when `None`). Full-table streams use it to replace their rows.
    fn replace(&mut self, stream: &str, server_id: Option<i64>) -> Result<(), SinkError>;
    /// Stages rows; they become visible only at the next commit.
    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError>;
    /// Commits the rows (and replaces) staged for `stream`, or for every stream when `None`,
    /// with `state`: they become durable together, at once or at the latest by the next `flush`
    /// or `finish` (sinks group commits; a crash in between loses rows and state together).
    /// Rows staged for other streams stay staged: streams are read concurrently, and another
    /// stream's half-read window must not be committed with this one.
    fn commit(&mut self, stream: Option<&str>, state: &State) -> Result<(), SinkError>;
    /// Makes every commit so far durable before returning.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Closes the destination. Rows staged since the last commit are dropped.
    fn finish(&mut self) -> Result<(), SinkError>;
    /// When commits that were grouped fall due although no command comes (the time after which
    /// [`tick`](Sink::tick) is to be called), if any are waiting.
    fn due(&self) -> Option<std::time::Instant> {
        None
    }
    /// Makes the grouped commits that have fallen due durable, and nothing else (after it,
    /// `due` is `None` or later than now). Called before every command, and when the channel
    /// stays empty until `due`.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The messages_outbound stream and a decoder for it, for the sinks' unit tests.
#[cfg(test)]
pub(crate) fn messages_for_tests() -> (StreamInfo, crate::streams::extract::PageDecoder) {
    use crate::streams::extract::{PageDecoder, Records};
    let def = crate::streams::find("messages_outbound").expect("declared");
    let schema = def.schema().expect("valid schema");
    let decoder = PageDecoder::new(&schema, Records::Under("Messages"), chrono::Utc::now());
    let info = StreamInfo {
        name: def.name.to_string(),
        arrow: decoder.output_schema(),
        schema,
        primary_key: vec!["message_id".to_string()],
        cursor_field: Some("received_at".to_string()),
        cursor_fixed: def.cursor_fixed,
        mode: LoadMode::Merge,
    };
    (info, decoder)
}

/// How a destination is opened, from the config.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The longest time between durable commits, where the destination groups them (DuckDB).
    pub commit_interval: std::time::Duration,
    /// DuckDB's buffer pool cap, in MB (it spills to a temporary directory beyond it).
    pub duckdb_memory_limit_mb: u32,
    /// How long DuckDB's file may be held by a reader before a commit gives up.
    pub lock_timeout: std::time::Duration,
    /// The DuckDB schema the tables go in (`main` unless the config names one).
    pub duckdb_schema: String,
    /// Columns dropped and hashed in every destination (applied by [`projection::Projected`]).
    pub columns: columns::ColumnPolicy,
}

impl Default for SinkOptions {
    fn default() -> Self {
        use crate::config::keys;
        SinkOptions {
            commit_interval: std::time::Duration::from_secs(keys::COMMIT_INTERVAL_SECONDS.default_int() as u64),
            duckdb_memory_limit_mb: keys::DUCKDB_MEMORY_LIMIT_MB.default_int() as u32,
            lock_timeout: std::time::Duration::from_secs(keys::LOCK_TIMEOUT_SECONDS.default_int() as u64),
            duckdb_schema: keys::SCHEMA.default_text().to_string(),
            columns: columns::ColumnPolicy::default(),
        }
    }
}

/// The URL scheme of `path` (`s3` of `s3://bucket/prefix`), if it is a URL: a path that would
/// otherwise become a local folder named `s3:` and load nothing where it was meant to go.
pub fn url_scheme(path: &std::path::Path) -> Option<String> {
    let text = path.to_string_lossy();
    let scheme = text.split_once("://").map(|(s, _)| s)?;
    let is_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    is_scheme.then(|| scheme.to_ascii_lowercase())
}

/// Refuses, before anything runs, a `--path` the destination cannot write: a URL for DuckDB,
/// a scheme object storage does not know for Parquet.
pub fn check_path(kind: DestKind, path: &std::path::Path) -> Result<(), SinkError> {
    let Some(scheme) = url_scheme(path) else { return Ok(()) };
    let text = path.to_string_lossy().into_owned();
    match kind {
        DestKind::Parquet if parquet::SCHEMES.contains(&scheme.as_str()) => Ok(()),
        DestKind::Parquet => Err(SinkError::BadUrl {
            path: text,
            reason: format!("{scheme}:// is not an object store postmark-elt writes to; use s3://, gs://, az:// or file://"),
        }),
        DestKind::Duckdb => Err(SinkError::NotLocal { path: text }),
        DestKind::Singer | DestKind::Airbyte | DestKind::Discard => Ok(()),
    }
}

/// Opens the destination chosen on the command line.
pub fn open(kind: DestKind, path: &std::path::Path, options: SinkOptions) -> Result<Box<dyn Sink>, SinkError> {
    check_path(kind, path)?;
    match kind {
        #[cfg(feature = "duckdb")]
        DestKind::Duckdb => Ok(Box::new(duckdb::DuckdbSink::open(path, options)?)),
        #[cfg(not(feature = "duckdb"))]
        DestKind::Duckdb => {
            let _ = options;
            Err(SinkError::DuckdbDisabled)
        }
        DestKind::Parquet if url_scheme(path).is_some() => Ok(Box::new(parquet::ParquetSink::open_url(&path.to_string_lossy())?)),
        DestKind::Parquet => Ok(Box::new(parquet::ParquetSink::open(path)?)),
        DestKind::Singer => Ok(Box::new(singer::SingerSink::stdout())),
        DestKind::Airbyte => Ok(Box::new(crate::airbyte::sink::AirbyteSink::default())),
        DestKind::Discard => Ok(Box::new(discard::DiscardSink)),
    }
}
