//! The Airbyte protocol: `postmark-elt airbyte spec|check|discover|read` (and the
//! `source-postmark` binary, which is the same with `airbyte` implied, for the Airbyte platform's
//! Docker interface and PyAirbyte's `local_executable`).
//!
//! Every line on stdout is one AirbyteMessage: records, per-stream state, stream status and
//! error traces from the sink and the verb, and LOG messages for log lines ([`logs`]). They all
//! go through one locked writer ([`out`]), so a log line never lands inside a record.

pub mod logs;
pub mod protocol;
pub mod sink;

use std::io::{BufWriter, Stdout, Write};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// The one writer of Airbyte messages on stdout.
pub fn out() -> MutexGuard<'static, BufWriter<Stdout>> {
    static OUT: OnceLock<Mutex<BufWriter<Stdout>>> = OnceLock::new();
    OUT.get_or_init(|| Mutex::new(BufWriter::with_capacity(1 << 20, std::io::stdout())))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Writes whole message lines and flushes them.
pub fn emit(lines: &[serde_json::Value]) -> std::io::Result<()> {
    let mut out = out();
    for line in lines {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Milliseconds since the epoch, as `emitted_at` wants.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
