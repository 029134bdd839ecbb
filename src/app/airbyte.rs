//! `postmark-elt airbyte spec|check|discover|read`: the Airbyte protocol's four verbs, each a
//! wrapper of the verb it shares with the CLI, speaking AirbyteMessages on stdout.

use super::*;
use crate::airbyte::{emit, protocol};
use crate::cli::{AirbyteCommand, ConfigFile};

pub(super) async fn run(cmd: AirbyteCommand) -> Result<(), Error> {
    match cmd {
        AirbyteCommand::Spec => emit(&[protocol::spec()]).map_err(Error::Stdout),
        // The protocol wants a failed check as a status, and exit 0.
        AirbyteCommand::Check(ConfigFile { config }) => {
            let outcome = check_connection(&config).await;
            emit(&[protocol::connection_status(outcome.as_ref().err())]).map_err(Error::Stdout)
        }
        AirbyteCommand::Discover(ConfigFile { config }) => {
            let outcome = load_config(&config).and_then(|_| protocol::catalog().map_err(Error::from));
            finish(outcome.and_then(|catalog| emit(&[catalog]).map_err(Error::Stdout)))
        }
        AirbyteCommand::Read { config, catalog, state } => finish(read(config, catalog, state).await),
    }
}

async fn read(config: PathBuf, catalog: PathBuf, state: Option<PathBuf>) -> Result<(), Error> {
    let selection = protocol::configured_catalog(&catalog)?;
    let state = state.as_deref().map(protocol::read_state).transpose()?;
    let streams: Vec<&'static str> = selection.streams.iter().map(|d| d.name).collect();
    let (result, reports) = sync::run_reporting(SyncArgs {
        // The summary as log lines, which are LOG messages here.
        json_logs: true,
        selection: Some(selection),
        state_given: Some(state.unwrap_or_default()),
        ..SyncArgs::new(config, DestKind::Airbyte)
    })
    .await;
    // A stream is complete when it reported; after a failure the others are not.
    let statuses: Vec<Value> = streams
        .iter()
        .map(|s| {
            let complete = result.is_ok() || reports.iter().any(|r| r.stream == *s);
            protocol::stream_status(s, if complete { "COMPLETE" } else { "INCOMPLETE" })
        })
        .collect();
    emit(&statuses).map_err(Error::Stdout)?;
    result
}

/// A failure is also an error TRACE message, the protocol's way to tell the platform why.
fn finish(result: Result<(), Error>) -> Result<(), Error> {
    if let Err(e) = &result {
        let _ = emit(&[protocol::error_trace(e)]);
    }
    result
}
