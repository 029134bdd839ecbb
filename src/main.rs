//! Thin entry point: parse arguments, set up logging, run, and choose the exit code.
#![allow(clippy::result_large_err)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use postmark_elt::cli::{Cli, LogFormat};
use postmark_elt::{app, error::Error};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("postmark_elt={default_level},warn")));
    // Logs go to stderr: stdout carries data (Singer messages, catalogs).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime);
    let result = runtime.and_then(|rt| {
        let result = rt.block_on(async {
            postmark_elt::signals::install();
            // A second SIGTERM/SIGINT ends the run where it is (commits are atomic).
            tokio::select! {
                result = app::run(cli) => result,
                signal = postmark_elt::signals::second() => Err(Error::InterruptedAtOnce { signal }),
            }
        });
        // Work still running after a second signal is not waited for.
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}
