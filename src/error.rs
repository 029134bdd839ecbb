//! The crate's top-level error, and the one place that maps errors to exit codes.

use crate::catalog::CatalogError;
use crate::client::ClientError;
use crate::config::ConfigError;
use crate::schema::SchemaError;
use crate::sinks::SinkError;
use crate::state::StateError;
use crate::streams::error::SyncError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Serve(#[from] crate::webhooks::server::ServeError),
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("interrupted by {signal}: everything read before it is committed, state included; the next run continues from there")]
    Interrupted { signal: &'static str },
    #[error("interrupted twice ({signal}, then again): stopped at once; everything committed stays, the next run continues from there")]
    InterruptedAtOnce { signal: &'static str },
}

/// Classes of failure, each with its own documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The config file is missing, unreadable or has a bad value.
    Config,
    /// A --state or --catalog file is unreadable or wrong.
    Input,
    /// Postmark refused the token.
    Auth,
    /// Postmark answered with an error, or kept failing after every retry.
    Api,
    /// Postmark holds more rows in one second than its API can page: data is incomplete.
    Incomplete,
    /// The API returned values that do not fit the schema (a type changed).
    Data,
    /// The destination could not be written.
    Destination,
    /// Another run holds the destination, or a reader held the DuckDB file past lock_timeout_seconds.
    Locked,
    /// A bug or an environment problem.
    Internal,
    /// SIGTERM or SIGINT stopped the run (after committing what was complete).
    Interrupted,
}

impl ErrorKind {
    /// Exit codes, documented in the README. 2 is clap's usage error.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Config => 3,
            ErrorKind::Auth => 4,
            ErrorKind::Api => 5,
            ErrorKind::Incomplete => 6,
            ErrorKind::Destination => 7,
            ErrorKind::Locked => 8,
            ErrorKind::Input => 9,
            ErrorKind::Data => 10,
            ErrorKind::Interrupted => 130,
        }
    }
}

fn sink_kind(e: &SinkError) -> ErrorKind {
    match e {
        SinkError::Locked { .. } | SinkError::HeldOpen { .. } => ErrorKind::Locked,
        SinkError::State(_) => ErrorKind::Input,
        SinkError::DuckdbDisabled | SinkError::NotLocal { .. } | SinkError::BadUrl { .. } | SinkError::AwsProfile { .. } | SinkError::NotOurs { .. } => {
            ErrorKind::Config
        }
        _ => ErrorKind::Destination,
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::Catalog(_) | Error::State(_) => ErrorKind::Input,
            Error::Client(e) if e.is_auth() => ErrorKind::Auth,
            Error::Client(ClientError::Data { .. })
            | Error::Sync(SyncError::Request {
                source: ClientError::Data { .. },
                ..
            }) => ErrorKind::Data,
            Error::Client(_) => ErrorKind::Api,
            Error::Sync(SyncError::TooDense { .. } | SyncError::TooManyRows { .. }) => ErrorKind::Incomplete,
            Error::Sync(SyncError::UnknownMessageStream { .. }) => ErrorKind::Config,
            Error::Sync(SyncError::SinkStopped(_)) => ErrorKind::Destination,
            Error::Sync(SyncError::Schema(_) | SyncError::Declaration(_)) => ErrorKind::Internal,
            Error::Sync(e) if e.is_auth() => ErrorKind::Auth,
            Error::Sync(_) => ErrorKind::Api,
            Error::Sink(e) => sink_kind(e),
            Error::Schema(_) | Error::Runtime(_) => ErrorKind::Internal,
            Error::Interrupted { .. } | Error::InterruptedAtOnce { .. } => ErrorKind::Interrupted,
            Error::Stdout(_) => ErrorKind::Destination,
            Error::Serve(crate::webhooks::server::ServeError::Listen { .. }) => ErrorKind::Config,
            Error::Serve(crate::webhooks::server::ServeError::Sink(e)) => sink_kind(e),
            Error::Serve(crate::webhooks::server::ServeError::Spool { .. }) => ErrorKind::Destination,
            Error::Serve(crate::webhooks::server::ServeError::Server(_)) => ErrorKind::Internal,
        }
    }
}
