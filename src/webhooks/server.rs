//! `webhooks serve`: the HTTP endpoint Postmark posts to.
//!
//! 200 only after the event is in the spool and fsynced; 401 without the shared secret (basic
//! auth password or the `X-Webhook-Secret` header, compared in constant time); 413 above the
//! body limit; 400 for a body that is not a Postmark event. SIGTERM or Ctrl-C stops accepting,
//! drains the requests in flight, then merges what is spooled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SecondsFormat, Utc};
use headers::authorization::Basic;
use headers::{Authorization, HeaderMapExt};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::secret::Secret;
use crate::sinks::{DestKind, SinkError};
use crate::webhooks::connections::{Limits, serve_connections};
use crate::webhooks::merge;
use crate::webhooks::spool::SpoolWriter;
use crate::webhooks::{classify, slim};

/// How the receiver runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub dest: DestKind,
    pub path: PathBuf,
    pub spool: PathBuf,
    pub secret: Secret,
    pub max_body_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Headers, then the body, must each arrive within this time.
    pub read_timeout: Duration,
    pub merge_every: Duration,
    pub sink: crate::sinks::SinkOptions,
    /// Print `listening on http://ADDR` on stderr (text logs; JSON logs carry it as `listen`).
    pub print_address: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; pick another --listen address")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot use the spool directory {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
    #[error("the webhook server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

struct App {
    spool: SpoolWriter,
    secret: Secret,
}

fn authorized(headers: &HeaderMap, secret: &Secret) -> bool {
    let expected = secret.expose().as_bytes();
    let matches = |given: &[u8]| bool::from(given.ct_eq(expected));
    if let Some(v) = headers.get("x-webhook-secret") {
        return matches(v.as_bytes());
    }
    // Any user name; the password is the secret (the header parsed by the `headers` crate).
    let Some(basic) = headers.typed_get::<Authorization<Basic>>() else {
        return false;
    };
    let password = basic.password().as_bytes();
    matches(password)
}

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers, &app.secret) {
        tracing::warn!("Webhook refused: missing or wrong credentials.");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"postmark-elt\"")],
            "unauthorized\n",
        )
            .into_response();
    }
    let mut event: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, bytes = body.len(), "Webhook refused: the body is not JSON.");
            return (StatusCode::BAD_REQUEST, format!("malformed JSON: {e}\n")).into_response();
        }
    };
    let table = match classify(&event) {
        Ok(t) => t,
        Err(problem) => {
            tracing::warn!(problem = %problem, "Webhook refused: not a Postmark event.");
            return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response();
        }
    };
    slim(&mut event);
    let line = json!({"t": table.name, "at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true), "e": event});
    match app.spool.append(line.to_string().into_bytes()).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        // Not acknowledged: Postmark retries later.
        Err(e) => {
            tracing::error!(error = %e, "Webhook not stored.");
            (StatusCode::SERVICE_UNAVAILABLE, "not stored, retry\n").into_response()
        }
    }
}

/// Resolves on the first SIGTERM or Ctrl-C (see [`crate::signals`]).
async fn shutdown_signal() {
    let signal = crate::signals::first().await;
    tracing::info!(signal, "Stopping: finishing the requests in flight.");
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let stop = shutdown_signal();
    let spool = SpoolWriter::start(&opts.spool, opts.merge_every).map_err(|source| ServeError::Spool {
        path: opts.spool.clone(),
        source,
    })?;
    let set_aside = merge::set_aside_files(&opts.spool);
    if !set_aside.is_empty() {
        tracing::warn!(
            files = set_aside.len(),
            folder = %opts.spool.join(merge::FAILED_DIR).display(),
            "Webhook events that could not be loaded are kept there with their errors; look at them and remove the files."
        );
    }
    // The merger: loads segments whenever the destination is free; a busy one is tried again.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let merger = {
        let (dir, dest, path, every, sink) = (opts.spool.clone(), opts.dest, opts.path.clone(), opts.merge_every, opts.sink);
        std::thread::Builder::new()
            .name("merge".to_string())
            .spawn(move || {
                loop {
                    let stopping = stop_rx.recv_timeout(every).is_ok() || matches!(stop_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
                    match merge::merge(&dir, dest, &path, sink.clone()) {
                        Ok(m) if m.events > 0 => tracing::info!(events = m.events, segments = m.segments, "Webhook events merged."),
                        Ok(_) => {}
                        Err(SinkError::Locked { .. }) => {
                            tracing::info!("Destination busy (a sync holds it); webhook events stay spooled and are merged later.")
                        }
                        Err(e) => tracing::error!(error = %e, "Merging webhook events failed; they stay spooled."),
                    }
                    if stopping {
                        break;
                    }
                }
            })
            .map_err(ServeError::Server)?
    };
    let app = Arc::new(App {
        spool,
        secret: opts.secret.clone(),
    });
    let router = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .fallback(post(receive).with_state(app.clone()))
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(opts.read_timeout));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: opts.listen, source })?;
    let local = listener.local_addr().map_err(ServeError::Server)?;
    tracing::info!(listen = %local, "Receiving Postmark webhooks.");
    // Printed for scripts that start the receiver on port 0.
    if opts.print_address {
        eprintln!("listening on http://{local}");
    }
    let limits = Limits {
        max_connections: opts.max_connections,
        header_timeout: opts.read_timeout,
    };
    let served = serve_connections(listener, router, stop, limits).await;
    // Every accepted event is on disk; close the spool (rotating the last file) and merge.
    app.spool.close();
    stop_tx.send(()).ok();
    merger.join().ok();
    served.map_err(ServeError::Server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use base64::Engine;

    /// The secret is accepted as a header or as the basic-auth password, nothing else.
    #[test]
    fn credentials() {
        let secret = Secret::new("s3cret");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &secret));
        h.insert("x-webhook-secret", HeaderValue::from_static("s3cret"));
        assert!(authorized(&h, &secret));
        h.insert("x-webhook-secret", HeaderValue::from_static("s3cre"));
        assert!(!authorized(&h, &secret));
        let mut h = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("postmark:s3cret");
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {basic}")).unwrap());
        assert!(authorized(&h, &secret));
        let wrong = base64::engine::general_purpose::STANDARD.encode("postmark:nope");
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {wrong}")).unwrap());
        assert!(!authorized(&h, &secret));
    }
}
