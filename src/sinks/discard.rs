//! `--dest none`: every page is fetched and decoded into Arrow batches, and nothing is kept; no
//! state is read or saved, so each run reads from `start_date`. What the API and the decoder
//! allow on this machine: the benchmark's ceiling, against which every destination is judged,
//! and a way to time a read (or try credentials and filters) without writing anywhere.

use arrow::array::RecordBatch;

use crate::sinks::{Sink, SinkError, StreamInfo};
use crate::state::State;

#[derive(Debug, Default)]
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn load_state(&mut self) -> Result<Option<State>, SinkError> {
        Ok(None)
    }

    fn begin_stream(&mut self, _stream: &StreamInfo) -> Result<(), SinkError> {
        Ok(())
    }

    fn replace(&mut self, _stream: &str, _server_id: Option<i64>) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, _stream: &str, _batch: &RecordBatch) -> Result<(), SinkError> {
        Ok(())
    }

    fn commit(&mut self, _stream: Option<&str>, _state: &State) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
