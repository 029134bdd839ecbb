//! Log lines as Airbyte LOG messages on stdout (the protocol's only log channel), written
//! through the same lock as the records.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event as `{"type":"LOG","log":{"level":..,"message":..}}`: the message, then the
/// event's fields as `key=value`.
pub struct LogMessage;

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for LogMessage
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut text = Text::default();
        event.record(&mut text);
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let line = json!({"type": "LOG", "log": {"level": level, "message": format!("{}{}", text.message, text.fields)}});
        writeln!(writer, "{line}")
    }
}

/// The writer of LOG lines: the shared stdout, flushed after each line.
pub struct Stdout;

pub struct Line(std::sync::MutexGuard<'static, std::io::BufWriter<std::io::Stdout>>);

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // A log line is worth seeing at once; a failure to write it has nowhere to go.
        let _ = self.0.flush();
    }
}

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(super::out())
    }
}
