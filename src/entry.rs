//! The process around a parsed command line, shared by both binaries (`postmark-elt` and
//! `source-postmark`): logging, the runtime, signals, and the one place exit codes are chosen.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};
use crate::{app, error::Error};

pub fn main(cli: Cli) -> ExitCode {
    if cli.command.is_some() && cli.singer.any() {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "the tap arguments (--config, --discover, --catalog, --state, --about) go without a subcommand; \
                 a subcommand takes its own, after its name (e.g. `postmark-elt sync --config c.json`)",
            )
            .exit();
    }
    let default_level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("postmark_elt={default_level},warn")));
    let airbyte = matches!(cli.command, Some(Command::Airbyte(_)));
    let json_logs = cli.log_format == LogFormat::Json;
    // Logs go to stderr: stdout carries data (Singer messages, catalogs). The Airbyte protocol
    // has no stderr channel: there they are LOG messages among the others on stdout.
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match (airbyte, json_logs) {
        (true, _) => logs
            .event_format(crate::airbyte::logs::LogMessage)
            .with_writer(crate::airbyte::logs::Stdout)
            .init(),
        (false, true) => logs.with_writer(std::io::stderr).json().init(),
        (false, false) => logs.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init(),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime);
    let result = runtime.and_then(|rt| {
        let result = rt.block_on(async {
            crate::signals::install();
            // A second SIGTERM/SIGINT ends the run where it is (commits are atomic).
            tokio::select! {
                result = app::run(cli) => result,
                signal = crate::signals::second() => Err(Error::InterruptedAtOnce { signal }),
            }
        });
        // Work still running after a second signal is not waited for.
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`| head`) is not a failure: end quietly, as ripgrep does.
        Err(Error::Stdout(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.kind().exit_code();
            match json_logs && !airbyte {
                true => tracing::error!(exit_code = code, "{e}"),
                false => eprintln!("error: {e}"),
            }
            ExitCode::from(code)
        }
    }
}
