//! A sink on its own thread behind a bounded channel, so that pages keep downloading while rows
//! are written, and grouped commits are applied when they fall due.

use std::path::PathBuf;
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use super::{Sink, SinkError, StreamInfo};
use crate::state::State;

enum Command {
    Begin(Box<StreamInfo>),
    Write(String, RecordBatch),
    Replace(String, Option<i64>),
    Commit(String, Box<State>),
}

/// A sink on its own thread. The async side sends commands; a send fails once the sink has
/// stopped on an error, and [`SinkHandle::finish`] returns that error.
pub struct SinkHandle {
    /// Rows handed to the sink so far, for progress lines.
    pub rows_sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<Result<(), SinkError>>>,
}

impl SinkHandle {
    pub fn spawn(mut sink: Box<dyn Sink>) -> SinkHandle {
        // Pages between download and write (64 x 500 rows): they absorb the writer's pauses at
        // commits; fewer measurably slow a load into DuckDB.
        let (tx, mut rx) = mpsc::channel::<Command>(64);
        let thread = std::thread::Builder::new().name("sink".to_string()).spawn(move || {
            // A clock for the one timed wait below: the channel is tokio's, so that the async
            // side's sends wait without blocking a worker.
            let timer = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|source| SinkError::Io {
                    path: PathBuf::from("<sink thread timer>"),
                    source,
                })?;
            loop {
                // Before every command (the sink applies only what has fallen due), so that a
                // sink kept busy by a full channel, whose timed wait below never times out,
                // still commits on time.
                sink.tick()?;
                let next = match sink.due() {
                    None => rx.blocking_recv(),
                    // Grouped commits wait for the next command only until they fall due: a
                    // reader sees a window's rows within `commit_interval_seconds` even when
                    // the next window takes longer.
                    Some(at) => match timer.block_on(async { tokio::time::timeout_at(at.into(), rx.recv()).await }) {
                        Ok(next) => next,
                        // Fallen due: applied by the tick at the top.
                        Err(_) => continue,
                    },
                };
                let Some(cmd) = next else { break };
                match cmd {
                    Command::Begin(info) => sink.begin_stream(&info)?,
                    Command::Write(stream, batch) => sink.write(&stream, &batch)?,
                    Command::Replace(stream, server) => sink.replace(&stream, server)?,
                    Command::Commit(stream, state) => sink.commit(Some(&stream), &state)?,
                }
            }
            sink.finish()
        });
        match thread {
            Ok(t) => SinkHandle {
                rows_sent: Default::default(),
                tx: Some(tx),
                thread: Some(t),
            },
            // Without a thread there is no sink: every send fails and finish reports why.
            Err(e) => SinkHandle {
                rows_sent: Default::default(),
                tx: None,
                thread: Some(std::thread::spawn(move || {
                    Err(SinkError::Io {
                        path: PathBuf::from("<sink thread>"),
                        source: e,
                    })
                })),
            },
        }
    }

    async fn send(&self, cmd: Command) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send(cmd).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    pub async fn begin_stream(&self, info: StreamInfo) -> Result<(), ()> {
        self.send(Command::Begin(Box::new(info))).await
    }

    pub async fn write(&self, stream: &str, batch: RecordBatch) -> Result<(), ()> {
        self.rows_sent.fetch_add(batch.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
        self.send(Command::Write(stream.to_string(), batch)).await
    }

    pub async fn replace(&self, stream: &str, server_id: Option<i64>) -> Result<(), ()> {
        self.send(Command::Replace(stream.to_string(), server_id)).await
    }

    pub async fn commit(&self, stream: &str, state: State) -> Result<(), ()> {
        self.send(Command::Commit(stream.to_string(), Box::new(state))).await
    }

    /// Waits for every command to be applied and closes the sink.
    pub fn finish(mut self) -> Result<(), SinkError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(SinkError::Write {
                dest: "destination".to_string(),
                context: "sink thread".to_string(),
                source: "panicked".into(),
            }),
            None => Ok(()),
        }
    }
}
