//! Serving the receiver's connections with limits a slow or hostile client cannot exhaust: at
//! most `max_connections` at once (more wait in the listen backlog), and a connection that has
//! not sent its request headers within the timeout is closed (hyper's `header_read_timeout`;
//! the body's timeout is a layer on the router). `axum::serve` offers neither, hence this loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// How long the requests in flight may take to finish after the stop signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stop` resolves, then lets the requests in flight finish.
pub async fn serve_connections(listener: TcpListener, router: Router, stop: impl Future<Output = ()>, limits: Limits) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot accept a webhook connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that breaks off or times out is its own problem, not the receiver's.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "Requests still in flight after {} s were cut off (their events were not acknowledged).",
            DRAIN.as_secs()
        );
    }
    Ok(())
}
