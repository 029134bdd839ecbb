//! The Airbyte destination of `read`: RECORD messages, a STREAM_STATUS trace when a stream
//! starts, and after every commit the committed stream's STATE, after the records it covers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use arrow::array::RecordBatch;
use serde_json::json;

use crate::sinks::singer::stdout_error;
use crate::sinks::{Sink, SinkError, StreamInfo};
use crate::state::State;

#[derive(Default)]
pub struct AirbyteSink {
    started: BTreeSet<String>,
    /// Records sent since each stream's last STATE (the state's `sourceStats`).
    since_state: BTreeMap<String, u64>,
}

impl Sink for AirbyteSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        // Airbyte keeps the state and hands it back with --state.
        Ok(None)
    }

    fn begin_stream(&mut self, stream: &StreamInfo) -> Result<(), SinkError> {
        // Begun once per server; started once.
        if self.started.insert(stream.name.clone()) {
            super::emit(&[super::protocol::stream_status(&stream.name, "STARTED")]).map_err(stdout_error)?;
        }
        Ok(())
    }

    fn replace(&mut self, _stream: &str, _server_id: Option<i64>) -> Result<(), SinkError> {
        // Full-table streams are sent whole every run; Airbyte's destinations replace them.
        Ok(())
    }

    fn write(&mut self, stream: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let prefix = format!(
            "{{\"type\":\"RECORD\",\"record\":{{\"stream\":{},\"emitted_at\":{},\"data\":",
            json!(stream),
            super::now_ms()
        );
        // The whole batch under one lock: log lines go between batches, never inside a line.
        let mut out = super::out();
        let rows = crate::sinks::singer::for_each_json_row("airbyte", stream, batch, |row| {
            out.write_all(prefix.as_bytes())
                .and_then(|()| out.write_all(row.as_bytes()))
                .and_then(|()| out.write_all(b"}}\n"))
                .map_err(stdout_error)
        })?;
        *self.since_state.entry(stream.to_string()).or_default() += rows as u64;
        Ok(())
    }

    fn commit(&mut self, stream: Option<&str>, state: &State) -> Result<(), SinkError> {
        let streams: Vec<String> = match stream {
            Some(stream) => vec![stream.to_string()],
            None => self.started.iter().cloned().collect(),
        };
        let messages: Vec<_> = streams
            .iter()
            .map(|s| super::protocol::stream_state(s, state, self.since_state.remove(s).unwrap_or(0)))
            .collect();
        super::emit(&messages).map_err(stdout_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        super::out().flush().map_err(stdout_error)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        super::out().flush().map_err(stdout_error)
    }
}
