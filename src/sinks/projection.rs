//! Field selection from a catalog, applied once for every destination: a sink wrapped in
//! [`Projected`] never sees a deselected column, neither in the stream's schema (the DuckDB
//! table, the Parquet files, the Singer SCHEMA) nor in its rows. Primary-key and cursor
//! columns always stay: without them rows cannot be merged or bookmarked; so does `server_id`,
//! by which a full table replaces one server's rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::sinks::{Sink, SinkError, StreamInfo};
use crate::state::State;

/// Stream name -> the columns left out of it.
pub type Deselected = BTreeMap<String, BTreeSet<String>>;

pub struct Projected {
    inner: Box<dyn Sink>,
    deselected: Deselected,
    /// The kept column indices of each begun stream that leaves columns out.
    kept: HashMap<String, Vec<usize>>,
}

impl Projected {
    /// `inner` itself when nothing is deselected.
    pub fn wrap(inner: Box<dyn Sink>, deselected: Deselected) -> Box<dyn Sink> {
        if deselected.values().all(BTreeSet::is_empty) {
            return inner;
        }
        Box::new(Projected {
            inner,
            deselected,
            kept: HashMap::new(),
        })
    }
}

/// `stream` without its deselected columns, and the indices of the columns it keeps (None when
/// it keeps all).
fn project(stream: &StreamInfo, deselected: &BTreeSet<String>) -> Result<(StreamInfo, Option<Vec<usize>>), SinkError> {
    let drop = |name: &str| {
        deselected.contains(name)
            && !stream.primary_key.iter().any(|k| k == name)
            && stream.cursor_field.as_deref() != Some(name)
            && name != crate::schema::SERVER_ID
    };
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
        let Some(deselected) = self.deselected.get(&stream.name) else {
            return self.inner.begin_stream(stream);
        };
        let (projected, kept) = project(stream, deselected)?;
        match kept {
            Some(kept) => self.kept.insert(stream.name.clone(), kept),
            None => self.kept.remove(&stream.name),
        };
        self.inner.begin_stream(&projected)
    }

    fn replace(&mut self, stream: &str, server_id: Option<i64>) -> Result<(), SinkError> {
        self.inner.replace(stream, server_id)
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        match self.kept.get(stream) {
            None => self.inner.write(stream, batch),
            Some(kept) => {
                let projected = batch.project(kept).map_err(|e| SinkError::Write {
                    dest: "destination".to_string(),
                    context: format!("leaving deselected columns out of {stream}"),
                    source: e.into(),
                })?;
                self.inner.write(stream, &projected)
            }
        }
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
            let mut sink = Projected::wrap(Box::new(singer), deselected);
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
