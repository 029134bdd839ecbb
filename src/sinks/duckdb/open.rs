//! Opening the database file while other programs use it. DuckDB lets one process write a file
//! or any number of processes read it, never both: it takes an fcntl lock on the file (shared
//! when read-only, exclusive when writing) and fails at once if another process holds a
//! conflicting one. Here writers and readers wait for the other side instead, with backoff, up to
//! a timeout. Whether a failed open was that lock is asked of the lock itself (F_GETLK), never
//! read from DuckDB's message.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};
use duckdb::{AccessMode, Config, Connection};
use rustix::process::{Flock, FlockOffsetType, FlockType, fcntl_getlk};

use crate::sinks::SinkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

enum Attempt {
    /// Another process holds a conflicting lock on the file.
    Held {
        pid: i32,
    },
    Failed(duckdb::Error),
}

/// The process holding a lock on `path` that conflicts with `access`, if any.
fn holder(path: &Path, access: Access) -> Option<i32> {
    let file = File::open(path).ok()?;
    let wanted = Flock {
        start: 0,
        length: 0,
        pid: None,
        typ: match access {
            Access::ReadWrite => FlockType::WriteLock,
            Access::ReadOnly => FlockType::ReadLock,
        },
        offset_type: FlockOffsetType::Set,
    };
    // Closing `file` drops this process's own fcntl locks on the path: callers hold no
    // connection to it while they wait.
    let blocking = fcntl_getlk(&file, &wanted).ok()??;
    Some(blocking.pid.map_or(0, |p| p.as_raw_nonzero().get()))
}

fn open_once(path: &Path, access: Access) -> Result<Connection, duckdb::Error> {
    let config = Config::default().enable_autoload_extension(false)?;
    let config = match access {
        Access::ReadOnly => config.access_mode(AccessMode::ReadOnly)?,
        Access::ReadWrite => config,
    };
    Connection::open_with_flags(path, config)
}

/// Opens `path`, waiting up to `timeout` while another process holds it in a conflicting mode.
pub fn open_waiting(path: &Path, access: Access, timeout: Duration, dest: &str) -> Result<Connection, SinkError> {
    let started = Instant::now();
    let attempt = || match open_once(path, access) {
        Ok(conn) => Ok(conn),
        Err(first) => match holder(path, access) {
            Some(pid) => Err(Attempt::Held { pid }),
            // The holder may have let go between the open and the question: once more.
            None => open_once(path, access).map_err(|again| match holder(path, access) {
                Some(pid) => Attempt::Held { pid },
                None => Attempt::Failed(if again.to_string() == first.to_string() { first } else { again }),
            }),
        },
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(500))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(timeout));
    attempt
        .retry(backoff)
        .sleep(std::thread::sleep)
        .when(|e| matches!(e, Attempt::Held { .. }))
        .notify(|e, _| {
            if let Attempt::Held { pid } = e {
                tracing::debug!(pid, "{dest} is held by another process; waiting");
            }
        })
        .call()
        .map_err(|e| match e {
            Attempt::Held { pid } => SinkError::HeldOpen {
                dest: dest.to_string(),
                pid,
                waited_seconds: started.elapsed().as_secs(),
            },
            Attempt::Failed(source) => SinkError::Write {
                dest: dest.to_string(),
                context: "opening the database".to_string(),
                source: Box::new(source),
            },
        })
}
