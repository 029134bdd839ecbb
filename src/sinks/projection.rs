//! Field selection from a catalog and the config's `columns` rules, applied once for every
//! destination: a sink wrapped in [`Projected`] never sees a deselected or dropped column,
//! neither in the stream's schema (the DuckDB table, the Parquet files, the Singer SCHEMA) nor
//! in its rows, and sees hashed values only (`sinks::columns`). Primary-key and cursor columns
//! always stay: without them rows cannot be merged or bookmarked; so does `server_id`, by which
//! a full table replaces one server's rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::sinks::columns::{Action, ColumnPolicy};
use crate::sinks::{Sink, SinkError, StreamInfo};
use crate::state::State;

/// Stream name -> the columns left out of it.
pub type Deselected = BTreeMap<String, BTreeSet<String>>;

pub struct Projected {
    inner: Box<dyn Sink>,
    deselected: Deselected,
    policy: ColumnPolicy,
    /// What each begun stream's rows go through.
    streams: HashMap<String, Rewrite>,
}

/// One stream's changes: the column indices kept (None: all), then the values rewritten in the
/// kept columns (index among them, path below the column, action).
#[derive(Default)]
struct Rewrite {
    kept: Option<Vec<usize>>,
    values: Vec<(usize, Vec<String>, Action)>,
}

impl Projected {
    /// `inner` itself when nothing is deselected, dropped or hashed.
    pub fn wrap(inner: Box<dyn Sink>, mut deselected: Deselected, policy: ColumnPolicy) -> Box<dyn Sink> {
        for stream in policy.streams.keys() {
            deselected.entry(stream.clone()).or_default().extend(policy.dropped_columns(stream));
        }
        if deselected.values().all(BTreeSet::is_empty) && policy.streams.keys().all(|s| policy.rewrites(s).is_empty()) {
            return inner;
        }
        Box::new(Projected {
            inner,
            deselected,
            policy,
            streams: HashMap::new(),
        })
    }

    fn rewrite(&self, stream: &str, batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
        let Some(rewrite) = self.streams.get(stream) else {
            return Ok(batch.clone());
        };
        let mut batch = match &rewrite.kept {
            Some(kept) => batch.project(kept)?,
            None => batch.clone(),
        };
        if !rewrite.values.is_empty() {
            let mut columns = batch.columns().to_vec();
            for (i, path, action) in &rewrite.values {
                columns[*i] = self.policy.rewrite(&columns[*i], path, *action)?;
            }
            batch = RecordBatch::try_new(batch.schema(), columns)?;
        }
        Ok(batch)
    }
}

/// Whether column `name` stays whatever is deselected or dropped: a key or the cursor (rows
/// could no longer be merged or bookmarked), or `server_id` (a full table replaces one server's
/// rows by it).
pub fn always_kept(name: &str, primary_key: &[String], cursor: Option<&str>) -> bool {
    primary_key.iter().any(|k| k == name) || cursor == Some(name) || name == crate::schema::SERVER_ID
}

/// `stream` without its deselected columns, and the indices of the columns it keeps (None when
/// it keeps all).
fn project(stream: &StreamInfo, deselected: &BTreeSet<String>) -> Result<(StreamInfo, Option<Vec<usize>>), SinkError> {
    let drop = |name: &str| deselected.contains(name) && !always_kept(name, &stream.primary_key, stream.cursor_field.as_deref());
    let kept: Vec<usize> = (0..stream.arrow.fields().len()).filter(|&i| !drop(stream.arrow.field(i).name())).collect();
    if kept.len() == stream.arrow.fields().len() {
        return Ok((stream.clone(), None));
    }
    let arrow = stream.arrow.project(&kept).map_err(|e| SinkError::Write {
        dest: "destination".to_string(),
        context: format!("leaving deselected columns out of {}", stream.name),
        source: e.into(),
    })?;
    let mut projected = stream.clone();
    projected.schema.fields.retain(|f| !drop(&f.name));
    projected.arrow = Arc::new(arrow);
    Ok((projected, Some(kept)))
}

impl Sink for Projected {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        self.inner.load_state()
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        let (projected, kept) = match self.deselected.get(&stream.name) {
            Some(deselected) => project(stream, deselected)?,
            None => (stream.clone(), None),
        };
        let mut values = Vec::new();
        for (path, action) in self.policy.rewrites(&stream.name) {
            // A rule on a deselected column has nothing left to rewrite.
            if let Ok(i) = projected.arrow.index_of(&path[0]) {
                values.push((i, path[1..].to_vec(), action));
            }
        }
        self.streams.insert(stream.name.clone(), Rewrite { kept, values });
        self.inner.begin_stream(&projected)
    }

    fn replace(&mut self, stream: &str, server_id: Option<i64>) -> Result<(), SinkError> {
        self.inner.replace(stream, server_id)
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        let batch = self.rewrite(stream, batch).map_err(|e| SinkError::Write {
            dest: "destination".to_string(),
            context: format!("dropping and hashing columns of {stream}"),
            source: e.into(),
        })?;
        self.inner.write(stream, &batch)
    }

    fn commit(&mut self, stream: Option<&str>, state: &State) -> Result<(), SinkError> {
        self.inner.commit(stream, state)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deselected columns leave the schema and the rows; the key and the cursor stay even when
    /// deselected.
    #[test]
    fn deselected_columns_leave_schema_and_rows() {
        let (info, dec) = crate::sinks::messages_for_tests();
        let out = tempfile::NamedTempFile::new().expect("temp file");
        {
            let singer = crate::sinks::singer::SingerSink::new(out.reopen().expect("reopen"));
            let deselected = Deselected::from([(
                "messages_outbound".to_string(),
                ["to", "subject", "message_id", "received_at"].map(String::from).into(),
            )]);
            let mut sink = Projected::wrap(Box::new(singer), deselected, ColumnPolicy::default());
            sink.begin_stream(&info).expect("begin");
            let body =
                r#"{"TotalCount":1,"Messages":[{"MessageID":"m1","ReceivedAt":"2026-01-02T03:04:05-05:00","Subject":"hi","To":[{"Email":"a@b"}],"Tag":"t"}]}"#;
            let batch = dec.decode(body.as_bytes(), &Default::default()).expect("decode").batch;
            sink.write("messages_outbound", &batch).expect("write");
            sink.finish().expect("finish");
        }
        let text = std::fs::read_to_string(out.path()).expect("read");
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        let properties = lines[0]["schema"]["properties"].as_object().expect("properties");
        assert!(!properties.contains_key("to") && !properties.contains_key("subject"), "{properties:?}");
        assert!(properties.contains_key("message_id") && properties.contains_key("received_at") && properties.contains_key("tag"));
        let record = lines[1]["record"].as_object().expect("record");
        assert!(record.get("to").is_none() && record.get("subject").is_none(), "{record:?}");
        assert_eq!((record["message_id"].as_str(), record["tag"].as_str()), (Some("m1"), Some("t")));
    }
}
