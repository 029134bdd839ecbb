//! Singer destination: SCHEMA, RECORD and STATE messages, one JSON object per line, on stdout.
//! STATE follows the records it covers and stdout is flushed there, so a target can checkpoint.

use std::io::Write;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use arrow::json::WriterBuilder;
use arrow::json::writer::JsonArray;
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::sinks::{Sink, SinkError, StreamInfo};
use crate::state::State;

/// A failed write to stdout.
pub(crate) fn stdout_error(e: std::io::Error) -> SinkError {
    SinkError::Io {
        path: "<stdout>".into(),
        source: e,
    }
}

/// Calls `f` with each row of `batch` as a JSON object (arrow-json, nulls written out), for the
/// sinks that wrap rows in messages on stdout; returns the number of rows.
pub(crate) fn for_each_json_row(dest: &str, stream: &str, batch: &RecordBatch, mut f: impl FnMut(&str) -> Result<(), SinkError>) -> Result<usize, SinkError> {
    let encoding = |e: crate::sinks::BoxError| SinkError::Write {
        dest: dest.to_string(),
        context: format!("encoding rows of {stream}"),
        source: e,
    };
    // arrow-json writes the rows as one JSON array; each element is handed on by itself.
    let mut buf = Vec::with_capacity(batch.num_rows() * 512);
    {
        let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(&mut buf);
        writer.write(batch).map_err(|e| encoding(e.into()))?;
        writer.finish().map_err(|e| encoding(e.into()))?;
    }
    let rows: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&buf).map_err(|e| encoding(e.into()))?;
    for row in &rows {
        f(row.get())?;
    }
    Ok(rows.len())
}

pub struct SingerSink<W: Write + Send> {
    out: W,
    /// Per stream, the key columns that are strings: their nulls are sent as "" (see
    /// [`non_null_keys`]).
    string_keys: HashMap<String, Vec<String>>,
}

/// A key column may be null in Postmark's data (the `tag` of stats rows that cover every tag),
/// and the loaders make key columns NOT NULL (target-postgres: "null value in column tag ...
/// violates not-null constraint"), so a null string key is sent as "", which no tag can be.
fn non_null_keys(batch: &RecordBatch, keys: &[String]) -> Result<RecordBatch, SinkError> {
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut changed = false;
    for key in keys {
        let Ok(i) = schema.index_of(key) else { continue };
        let Some(strings) = columns[i].as_any().downcast_ref::<StringArray>() else {
            continue;
        };
        if strings.null_count() > 0 {
            columns[i] = Arc::new(strings.iter().map(|v| Some(v.unwrap_or(""))).collect::<StringArray>());
            changed = true;
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(schema, columns).map_err(|e| SinkError::Write {
        dest: "singer".to_string(),
        context: "sending null keys as \"\"".to_string(),
        source: e.into(),
    })
}

impl SingerSink<Box<dyn Write + Send>> {
    /// On stdout. Into a pipe (or socket), in writes of whole lines that it takes atomically, so
    /// that a tap killed while it writes leaves the target no half line; into a file (or
    /// /dev/null), through a 1 MiB buffer, since the 4 KiB writes cost time (a median 5% of a
    /// 450,000-record sync into `cat`) that only a pipe's reader gains from.
    pub fn stdout() -> Self {
        let out = std::io::stdout();
        let piped = rustix::fs::fstat(&out).is_ok_and(|st| {
            matches!(
                rustix::fs::FileType::from_raw_mode(st.st_mode),
                rustix::fs::FileType::Fifo | rustix::fs::FileType::Socket
            )
        });
        if piped {
            SingerSink::new(Box::new(crate::sinks::whole_lines::WholeLines::new(out)))
        } else {
            SingerSink::new(Box::new(std::io::BufWriter::with_capacity(1 << 20, out)))
        }
    }
}

impl<W: Write + Send> SingerSink<W> {
    pub fn new(out: W) -> Self {
        SingerSink {
            out,
            string_keys: HashMap::new(),
        }
    }

    fn line(&mut self, value: &serde_json::Value) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(stdout_error)
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Sink for SingerSink<W> {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        // A Singer runner keeps the state and hands it back with --state.
        Ok(None)
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        let bookmark_properties: Vec<&str> = match stream.mode {
            crate::sinks::LoadMode::Merge => stream.cursor_field.as_deref().into_iter().collect(),
            crate::sinks::LoadMode::Replace => Vec::new(),
        };
        let string_keys: Vec<String> = stream
            .primary_key
            .iter()
            .filter(|k| stream.arrow.field_with_name(k).is_ok_and(|f| f.data_type() == &DataType::Utf8))
            .cloned()
            .collect();
        let mut schema = stream.schema.singer_schema();
        for key in &string_keys {
            if let Some(types) = schema.pointer_mut(&format!("/properties/{key}/type")) {
                *types = json!("string");
            }
        }
        self.string_keys.insert(stream.name.clone(), string_keys);
        self.line(&json!({
            "type": "SCHEMA",
            "stream": stream.name,
            "schema": schema,
            "key_properties": stream.primary_key,
            "bookmark_properties": bookmark_properties,
        }))
    }

    fn replace(&mut self, _stream: &str, _server_id: Option<i64>) -> Result<(), SinkError> {
        // Full-table streams are sent whole every run; Singer targets upsert on the keys.
        Ok(())
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let prefix = format!("{{\"type\":\"RECORD\",\"stream\":{},\"record\":", json!(stream));
        let suffix = format!(",\"time_extracted\":\"{}\"}}\n", Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
        let batch = match self.string_keys.get(stream) {
            Some(keys) => non_null_keys(batch, keys)?,
            None => batch.clone(),
        };
        let out = &mut self.out;
        for_each_json_row("singer", stream, &batch, |row| {
            out.write_all(prefix.as_bytes())
                .and_then(|()| out.write_all(row.as_bytes()))
                .and_then(|()| out.write_all(suffix.as_bytes()))
                .map_err(stdout_error)
        })?;
        Ok(())
    }

    fn commit(&mut self, _stream: Option<&str>, state: &State) -> Result<(), SinkError> {
        self.line(&json!({"type": "STATE", "value": state}))?;
        self.out.flush().map_err(stdout_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(stdout_error)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(stdout_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SCHEMA, then RECORDs, then STATE; each line one JSON object with the Singer fields.
    #[test]
    fn writes_singer_messages_in_order() {
        let (info, dec) = crate::sinks::messages_for_tests();
        let mut sink = SingerSink::new(Vec::new());
        sink.begin_stream(&info).unwrap();
        let body = r#"{"TotalCount":1,"Messages":[{"MessageID":"m1","ReceivedAt":"2026-01-02T03:04:05.1234567-05:00","Tag":"","TrackOpens":false,"Metadata":{"a":"1"}}]}"#;
        sink.write("messages_outbound", &dec.decode(body.as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        sink.commit(None, &State::default()).unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "SCHEMA");
        assert_eq!(lines[0]["key_properties"], json!(["message_id"]));
        assert_eq!(lines[0]["bookmark_properties"], json!(["received_at"]));
        assert_eq!(lines[1]["type"], "RECORD");
        let rec = &lines[1]["record"];
        assert_eq!(rec["message_id"], "m1");
        assert_eq!(rec["tag"], "");
        assert_eq!(rec["track_opens"], false);
        assert!(rec["subject"].is_null() && rec.get("subject").is_some());
        assert!(rec["received_at"].as_str().unwrap().starts_with("2026-01-02T08:04:05.123456"));
        assert!(lines[1]["time_extracted"].is_string());
        assert_eq!(lines[2]["type"], "STATE");
    }

    /// A null key part (the `tag` of stats rows covering every tag) is sent as "" and declared
    /// a plain string: loaders make key columns NOT NULL.
    #[test]
    fn null_string_keys_are_sent_as_empty_strings() {
        let (mut info, dec) = crate::sinks::messages_for_tests();
        info.primary_key = vec!["message_id".to_string(), "tag".to_string()];
        let mut sink = SingerSink::new(Vec::new());
        sink.begin_stream(&info).unwrap();
        let body = r#"{"TotalCount":2,"Messages":[{"MessageID":"m1","ReceivedAt":"2026-01-02T03:04:05-05:00","Tag":null,"Subject":null},{"MessageID":"m2","ReceivedAt":"2026-01-02T03:04:05-05:00","Tag":"welcome"}]}"#;
        sink.write("messages_outbound", &dec.decode(body.as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        let out = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["schema"]["properties"]["tag"]["type"], "string");
        assert_ne!(lines[0]["schema"]["properties"]["subject"]["type"], "string", "only key columns change");
        assert_eq!(lines[1]["record"]["tag"], "");
        assert!(lines[1]["record"]["subject"].is_null(), "other nulls stay null");
        assert_eq!(lines[2]["record"]["tag"], "welcome");
    }
}
