//! `source-postmark`: `postmark-elt airbyte` under the name Airbyte's tools call, so the
//! platform's Docker interface and PyAirbyte (`local_executable="source-postmark"`) run
//! `source-postmark spec|check|discover|read ...` as they run any source.
//!
//! A launcher, not a second copy of the connector: it runs the `postmark-elt` beside it (or on
//! PATH), so a wheel or a release archive carries DuckDB once.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn connector() -> PathBuf {
    let name = format!("postmark-elt{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = vec!["airbyte".into()];
    args.extend(std::env::args_os().skip(1));
    let mut command = Command::new(connector());
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replaces this process: signals, stdio and the exit code are the connector's own.
        let error = command.exec();
        eprintln!("error: cannot run postmark-elt ({error}); install it beside source-postmark or on PATH");
        ExitCode::from(1)
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => ExitCode::from(status.code().map_or(1, |c| c as u8)),
        Err(error) => {
            eprintln!("error: cannot run postmark-elt ({error}); install it beside source-postmark or on PATH");
            ExitCode::from(1)
        }
    }
}
