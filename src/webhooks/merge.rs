//! Loading spooled webhook events into the destination: whole segments, one commit each, a
//! segment deleted only after its commit.
//!
//! An event that cannot be loaded (it decodes as JSON but does not fit its table's schema, or a
//! line in the middle of a segment is unreadable) must not block every later merge, nor be
//! dropped quietly: it is written with its error to `<spool>/failed/<segment>` (synced before
//! the segment goes), logged, and the segment's other events are loaded.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use chrono::Utc;
use serde_json::{Value, json};

use crate::sinks::{self, DestKind, LoadMode, Sink, SinkError, StreamInfo};
use crate::streams::extract::{PageDecoder, Records, Scope};
use crate::webhooks::spool::segments;
use crate::webhooks::{WebhookTable, table};

/// Where events that could not be loaded are kept, with their errors.
pub const FAILED_DIR: &str = "failed";

/// What one merge did.
#[derive(Debug, Default)]
pub struct Merged {
    pub events: u64,
    pub segments: u64,
    /// Events set aside in `failed/` (not loadable).
    pub set_aside: u64,
}

/// One segment read: events by table, and the lines that could not be read.
#[derive(Default)]
struct Segment {
    by_table: BTreeMap<&'static str, Vec<Value>>,
    failed: Vec<Value>,
}

fn read_segment(seg: &Path) -> Result<Segment, SinkError> {
    let io = |source| SinkError::Io {
        path: seg.to_path_buf(),
        source,
    };
    let text = BufReader::new(File::open(seg).map_err(io)?);
    let lines: Vec<String> = text.lines().collect::<Result<_, _>>().map_err(io)?;
    let last = lines.len().saturating_sub(1);
    let mut out = Segment::default();
    for (n, line) in lines.into_iter().enumerate() {
        let parsed = serde_json::from_str::<Value>(&line).ok();
        let entry = parsed.as_ref().and_then(Value::as_object);
        let t = entry.and_then(|e| e.get("t")).and_then(Value::as_str).and_then(table);
        let event = entry.and_then(|e| e.get("e")).and_then(Value::as_object);
        match (t, event) {
            (Some(t), Some(event)) => {
                let mut event = event.clone();
                let at = entry.and_then(|e| e.get("at")).cloned().unwrap_or(Value::Null);
                event.insert("WebhookReceivedAt".to_string(), at);
                out.by_table.entry(t.name).or_default().push(Value::Object(event));
            }
            // A torn last line was never acknowledged (a crash, or a write that failed).
            _ if n == last && parsed.is_none() => {}
            _ => out
                .failed
                .push(json!({"error": format!("line {} is not a spooled event", n + 1), "line": line})),
        }
    }
    Ok(out)
}

/// Decodes a table's events; when the batch does not decode, event by event, so that one bad
/// event is set aside and the others load.
fn decode(decoder: &PageDecoder, t: &WebhookTable, events: Vec<Value>, failed: &mut Vec<Value>) -> Option<RecordBatch> {
    if let Ok(batch) = decoder.decode_values(&events, &Scope::default()) {
        return Some(batch);
    }
    let mut good = Vec::new();
    for event in events {
        match decoder.decode_values(std::slice::from_ref(&event), &Scope::default()) {
            Ok(_) => good.push(event),
            Err(e) => failed.push(json!({"error": format!("{e:?}"), "table": t.name, "event": event})),
        }
    }
    decoder.decode_values(&good, &Scope::default()).ok()
}

/// Writes what could not be loaded to `failed/<segment name>`, synced.
fn set_aside(dir: &Path, seg: &Path, failed: &[Value]) -> Result<PathBuf, SinkError> {
    let folder = dir.join(FAILED_DIR);
    let target = folder.join(seg.file_name().unwrap_or_default());
    let io = |source| SinkError::Io { path: target.clone(), source };
    fs::create_dir_all(&folder).map_err(io)?;
    let mut file = File::create(&target).map_err(io)?;
    for f in failed {
        writeln!(file, "{f}").map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    File::open(&folder).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(target)
}

/// Files in `failed/`: events that could not be loaded, kept for a person to look at.
pub fn set_aside_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir.join(FAILED_DIR))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// Loads every segment into the destination, one commit per segment, deleting each after its
/// commit. The stored sync state is committed back unchanged.
pub fn merge(dir: &Path, dest: DestKind, path: &Path, options: sinks::SinkOptions) -> Result<Merged, SinkError> {
    let segs = segments(dir);
    let mut merged = Merged::default();
    if segs.is_empty() {
        return Ok(merged);
    }
    let columns = options.columns.clone();
    let mut sink = sinks::projection::Projected::wrap(sinks::open(dest, path, options)?, Default::default(), columns);
    let state = sink.load_state()?.unwrap_or_default();
    let now = Utc::now();
    let mut begun: HashSet<&'static str> = HashSet::new();
    let mut decoders: BTreeMap<&'static str, PageDecoder> = BTreeMap::new();
    for seg in segs {
        let Segment { by_table, mut failed } = read_segment(&seg)?;
        for (name, events) in by_table {
            let t = table(name).ok_or_else(|| write_err(path, name, "unknown table".to_string()))?;
            if !decoders.contains_key(name) {
                let schema = t.schema().map_err(|e| write_err(path, name, e.to_string()))?;
                decoders.insert(name, PageDecoder::new(&schema, Records::Under("events"), now));
            }
            let decoder = &decoders[name];
            if begun.insert(name) {
                begin(sink.as_mut(), t, decoder)?;
            }
            if let Some(batch) = decode(decoder, t, events, &mut failed) {
                merged.events += batch.num_rows() as u64;
                sink.write(name, &batch)?;
            }
        }
        if !failed.is_empty() {
            let kept = set_aside(dir, &seg, &failed)?;
            tracing::error!(events = failed.len(), file = %kept.display(), "Webhook events that cannot be loaded were set aside with their errors.");
            merged.set_aside += failed.len() as u64;
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

fn begin(sink: &mut dyn Sink, t: &WebhookTable, decoder: &PageDecoder) -> Result<(), SinkError> {
    let schema = t.schema().map_err(|e| write_err(Path::new(""), t.name, e.to_string()))?;
    sink.begin_stream(&StreamInfo {
        name: t.name.to_string(),
        arrow: decoder.output_schema(),
        schema,
        primary_key: t.primary_key.iter().map(|k| k.to_string()).collect(),
        cursor_field: Some("webhook_received_at".to_string()),
        // A retried event arrives again later, under the same key.
        cursor_fixed: false,
        mode: LoadMode::Merge,
    })
}

fn write_err(path: &Path, table: &str, message: String) -> SinkError {
    SinkError::Write {
        dest: path.display().to_string(),
        context: format!("merging webhook events into {table}"),
        source: message.into(),
    }
}
