//! Singer destination: SCHEMA, RECORD and STATE messages, one JSON object per line, on stdout.
//! STATE follows the records it covers and stdout is flushed there, so a target can checkpoint.

use std::io::Write;

use arrow::array::RecordBatch;
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
}

impl SingerSink<std::io::BufWriter<std::io::Stdout>> {
    pub fn stdout() -> Self {
        SingerSink::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()))
    }
}

impl<W: Write + Send> SingerSink<W> {
    pub fn new(out: W) -> Self {
        SingerSink { out }
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
        self.line(&json!({
            "type": "SCHEMA",
            "stream": stream.name,
            "schema": stream.schema.singer_schema(),
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
        let out = &mut self.out;
        for_each_json_row("singer", stream, batch, |row| {
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
}
