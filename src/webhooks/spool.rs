//! The durable spool: an append-only file of JSON lines, one accepted event per line.
//!
//! Appends are group-committed: the writer thread takes every event waiting, writes them, calls
//! fsync once, then acknowledges each (only then does the HTTP handler answer 200). The current
//! file is rotated into numbered segments; the merger loads whole segments into the destination,
//! commits, and only then deletes them. A crash leaves at worst a half-written last line, which
//! was never acknowledged and is skipped.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crate::sinks::{self, DestKind, LoadMode, SinkError, StreamInfo};
use crate::streams::extract::{PageDecoder, Records, Scope};
use crate::webhooks::table;

const CURRENT: &str = "current.jsonl";
/// Events written with one fsync at most.
const GROUP: usize = 4096;

struct Job {
    line: Vec<u8>,
    ack: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Appends events durably; see the module documentation.
pub struct SpoolWriter {
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Segments waiting to be merged, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Renames the current file into a segment, if it holds anything. Returns whether it did.
fn rotate(dir: &Path, file: &mut Option<File>) -> std::io::Result<bool> {
    let current = dir.join(CURRENT);
    let size = fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Ok(false);
    }
    if let Some(f) = file.take() {
        f.sync_all()?;
    }
    // Nanoseconds keep names unique and ordered.
    let name = format!("segment-{:020}.jsonl", Utc::now().timestamp_nanos_opt().unwrap_or(0));
    fs::rename(&current, dir.join(name))?;
    fsync_dir(dir)?;
    Ok(true)
}

fn open_current(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))
}

impl SpoolWriter {
    /// Starts the writer thread on `dir`. A current file left by a crash becomes a segment.
    /// The merger finds segments by listing the folder on its own timer.
    pub fn start(dir: &Path, rotate_every: Duration) -> std::io::Result<SpoolWriter> {
        fs::create_dir_all(dir)?;
        rotate(dir, &mut None)?;
        let dir = dir.to_path_buf();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("spool".to_string()).spawn(move || {
            let mut file: Option<File> = None;
            let mut last_rotation = Instant::now();
            loop {
                let wait = rotate_every.saturating_sub(last_rotation.elapsed()).max(Duration::from_millis(1));
                let mut jobs = Vec::new();
                let disconnected = match rx.recv_timeout(wait) {
                    Ok(job) => {
                        jobs.push(job);
                        while jobs.len() < GROUP {
                            match rx.try_recv() {
                                Ok(j) => jobs.push(j),
                                Err(_) => break,
                            }
                        }
                        false
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    Err(mpsc::RecvTimeoutError::Disconnected) => true,
                };
                if !jobs.is_empty() {
                    let result = (|| -> std::io::Result<()> {
                        if file.is_none() {
                            file = Some(open_current(&dir)?);
                        }
                        let f = file.as_mut().ok_or_else(|| std::io::Error::other("no spool file"))?;
                        let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.line.len() + 1).sum());
                        for j in &jobs {
                            buf.extend_from_slice(&j.line);
                            buf.push(b'\n');
                        }
                        f.write_all(&buf)?;
                        f.sync_data()
                    })();
                    let outcome = result.map_err(|e| format!("spool write failed: {e}"));
                    if outcome.is_err() {
                        // Start a fresh file: the failed one may hold a partial line.
                        file = None;
                    }
                    for j in jobs {
                        j.ack.send(outcome.clone()).ok();
                    }
                }
                if disconnected || last_rotation.elapsed() >= rotate_every {
                    if let Err(e) = rotate(&dir, &mut file) {
                        tracing::error!(error = %e, "Cannot rotate the webhook spool.");
                    }
                    last_rotation = Instant::now();
                }
                if disconnected {
                    break;
                }
            }
        })?;
        Ok(SpoolWriter {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends one event line; returns once it is on disk.
    pub async fn append(&self, line: Vec<u8>) -> Result<(), String> {
        let (ack, done) = tokio::sync::oneshot::channel();
        {
            let tx = self.tx.lock().map_err(|_| "the spool is broken")?;
            tx.as_ref()
                .ok_or("the spool is closed")?
                .send(Job { line, ack })
                .map_err(|_| "the spool writer stopped".to_string())?;
        }
        done.await.map_err(|_| "the spool writer stopped".to_string())?
    }

    /// Stops the writer after everything queued is written, and rotates the last file.
    /// Appends after this fail (and are answered 503).
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            t.join().ok();
        }
    }
}

/// What one merge did.
#[derive(Debug, Default)]
pub struct Merged {
    pub events: u64,
    pub segments: u64,
}

/// Loads every segment into the destination, one commit per segment, deleting each after its
/// commit. The stored sync state is committed back unchanged.
pub fn merge(dir: &Path, dest: DestKind, path: &Path, options: sinks::SinkOptions) -> Result<Merged, SinkError> {
    let segs = segments(dir);
    let mut merged = Merged::default();
    if segs.is_empty() {
        return Ok(merged);
    }
    let mut sink = sinks::open(dest, path, options)?;
    let state = sink.load_state()?.unwrap_or_default();
    let now = Utc::now();
    let mut begun: HashSet<&'static str> = HashSet::new();
    let mut decoders: BTreeMap<&'static str, PageDecoder> = BTreeMap::new();
    for seg in segs {
        let file = File::open(&seg).map_err(|source| SinkError::Io { path: seg.clone(), source })?;
        let mut by_table: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            // A torn last line was never acknowledged.
            let Ok(Value::Object(mut entry)) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(t) = entry.get("t").and_then(Value::as_str).and_then(table) else {
                continue;
            };
            let at = entry.remove("at").unwrap_or(Value::Null);
            if let Some(Value::Object(mut event)) = entry.remove("e") {
                event.insert("WebhookReceivedAt".to_string(), at);
                by_table.entry(t.name).or_default().push(Value::Object(event));
            }
        }
        for (name, events) in by_table {
            let t = table(name).ok_or_else(|| write_err(path, name, "unknown table".to_string()))?;
            if !decoders.contains_key(name) {
                let schema = t.schema().map_err(|e| write_err(path, name, e.to_string()))?;
                decoders.insert(name, PageDecoder::new(&schema, Records::Under("events"), now));
            }
            let decoder = &decoders[name];
            if begun.insert(name) {
                let schema = t.schema().map_err(|e| write_err(path, name, e.to_string()))?;
                sink.begin_stream(&StreamInfo {
                    name: name.to_string(),
                    arrow: decoder.output_schema(),
                    schema,
                    primary_key: t.primary_key.iter().map(|k| k.to_string()).collect(),
                    cursor_field: Some("webhook_received_at".to_string()),
                    // A retried event arrives again later, under the same key.
                    cursor_fixed: false,
                    mode: LoadMode::Merge,
                })?;
            }
            let batch = decoder
                .decode_values(&events, &Scope::default())
                .map_err(|e| write_err(path, name, format!("{e:?}")))?;
            merged.events += batch.num_rows() as u64;
            sink.write(name, &batch)?;
        }
        sink.commit(None, &state)?;
        // The events must be durable before their spool file goes.
        sink.flush()?;
        fs::remove_file(&seg).map_err(|source| SinkError::Io { path: seg.clone(), source })?;
        merged.segments += 1;
    }
    sink.finish()?;
    Ok(merged)
}

fn write_err(path: &Path, table: &str, message: String) -> SinkError {
    SinkError::Write {
        dest: path.display().to_string(),
        context: format!("merging webhook events into {table}"),
        source: message.into(),
    }
}
