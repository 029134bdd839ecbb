//! One HTTP exchange on a task of its own: it takes a slot of the limit, sends, and reads the
//! whole answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::header::{HeaderValue, RETRY_AFTER};

use super::{AdaptiveLimit, Attempt, ClientStats};

/// What a transfer brought back: the status, the headers the client reads, the whole body.
pub(super) struct Answer {
    pub(super) status: reqwest::StatusCode,
    pub(super) date: Option<String>,
    pub(super) retry_after: Option<String>,
    pub(super) body: Vec<u8>,
}

/// One HTTP exchange on a task of its own, which takes a slot of the limit, sends the request
/// and reads the whole body (a body cut off mid-way is a transport failure, retried like a reset
/// connection). Reads hand pages on in order and decode them on their own task; on its own
/// task, a request is sent the moment a slot is free and its answer read as it arrives,
/// whatever that task is busy with. Dropping the transfer (a read that stops) aborts it.
pub(super) struct Transfer(tokio::task::JoinHandle<Result<Answer, reqwest::Error>>);

impl Transfer {
    pub(super) fn spawn(request: reqwest::RequestBuilder, limiter: Arc<AdaptiveLimit>, stats: Arc<ClientStats>, first: bool) -> Self {
        Transfer(tokio::spawn(async move {
            // The slot is held only while the request is in flight, not while backing off.
            let _slot = if first { limiter.acquire_first().await } else { limiter.acquire().await };
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let response = request.send().await?;
            let header = |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            let (date, retry_after) = (header(reqwest::header::DATE), header(RETRY_AFTER));
            let status = response.status();
            let body = response.bytes().await?.to_vec();
            Ok(Answer {
                status,
                date,
                retry_after,
                body,
            })
        }))
    }

    pub(super) async fn finish(mut self) -> Result<Answer, Attempt> {
        match (&mut self.0).await {
            Ok(answer) => answer.map_err(|e| transport_failure(&e)),
            // A panic is re-raised here, as it would have been inline.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only the runtime shutting down does that (our own drop comes later).
            Err(e) => Err(Attempt::Retry {
                reason: format!("request cancelled: {e}"),
                status: None,
                retry_after: None,
                connect: false,
            }),
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn transport_failure(e: &reqwest::Error) -> Attempt {
    // reqwest's Display names the URL (path and query only: tokens travel in headers).
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broken off"
    } else {
        "request failed"
    };
    let mut reason = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Attempt::Retry {
        reason,
        status: None,
        retry_after: None,
        connect: e.is_connect(),
    }
}
