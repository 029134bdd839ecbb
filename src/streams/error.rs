//! What can stop a stream's sync; `crate::error` maps each case to an exit code.

use crate::client::ClientError;
use crate::schema::SchemaError;
use crate::streams::window::CannotSplit;

/// Attempts at reading a window whose pages disagree with its TotalCount.
pub const WINDOW_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("stream `{stream}`, {at}: {source}")]
    Request {
        stream: &'static str,
        /// Where: server, message stream, window.
        at: String,
        #[source]
        source: ClientError,
    },
    #[error("listing {what}: {source}")]
    Listing {
        what: &'static str,
        #[source]
        source: ClientError,
    },
    /// Another stream's listing of the same thing failed (that failure is the one reported):
    /// a listing is tried once per run, not once per stream.
    #[error("listing {what} failed earlier in this run")]
    ListingFailedEarlier { what: &'static str },
    #[error(
        "stream `{stream}`, {at}: {total} records in {source}, more than Postmark's API can page (10,000 per query); \
         rows before this point were loaded and the bookmark stops here"
    )]
    TooDense {
        stream: &'static str,
        at: String,
        total: u64,
        #[source]
        source: CannotSplit,
    },
    #[error("stream `{stream}`, {at}: {total} records, more than Postmark's API can page (10,000); nothing of this stream was replaced")]
    TooManyRows { stream: &'static str, at: String, total: u64 },
    #[error(
        "stream `{stream}`, {at}: the window kept changing while it was read ({WINDOW_ATTEMPTS} attempts; \
         TotalCount went from {first_total} to {last_total}, {seen} distinct records arrived); nothing from this window was committed, run the sync again"
    )]
    Unstable {
        stream: &'static str,
        at: String,
        first_total: u64,
        last_total: u64,
        seen: u64,
    },
    #[error("message stream `{wanted}` from config `message_streams` is not on server {server} (it has: {available}); fix the list or remove it")]
    UnknownMessageStream { wanted: String, server: String, available: String },
    #[error("config `servers` names {wanted}, which the account does not have (it has: {available})")]
    UnknownServer { wanted: String, available: String },
    #[error("server `{0}` has no API token in the account API's answer; create one in Postmark")]
    ServerWithoutToken(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("stream declaration: {0} (a bug in postmark-elt; please report it)")]
    Declaration(String),
    #[error("the destination stopped while stream `{0}` was being written")]
    SinkStopped(&'static str),
}

impl SyncError {
    pub fn is_auth(&self) -> bool {
        match self {
            SyncError::Request { source, .. } | SyncError::Listing { source, .. } => source.is_auth(),
            _ => false,
        }
    }
}
