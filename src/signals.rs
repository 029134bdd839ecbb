//! SIGTERM (orchestrators: Airflow timeouts, Kubernetes) and SIGINT (Ctrl-C). The first asks the
//! run to stop cleanly: a sync stops reading, commits what is complete and reports
//! `interrupted`; the webhook receiver stops accepting and merges. A second one ends the process
//! at once (`main` returns), which loses nothing committed: commits are atomic.
//!
//! Signals are process-wide, so the listener is too: [`install`] starts it once.

use std::sync::OnceLock;

use tokio::sync::watch;

/// The signals received so far: how many, and the name of the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub count: u32,
    pub first: Option<&'static str>,
}

static RECEIVED: OnceLock<watch::Sender<Received>> = OnceLock::new();

fn sender() -> &'static watch::Sender<Received> {
    RECEIVED.get_or_init(|| watch::channel(Received::default()).0)
}

/// Starts listening (inside the runtime, before any work, so an early signal is not lost).
pub fn install() {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        loop {
            #[cfg(unix)]
            let term = async {
                match terminate.as_mut() {
                    Some(s) => s.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<bool>();
            let name = tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_ok() { "SIGINT" } else { return },
                true = term => "SIGTERM",
            };
            let now = {
                let mut now = Received::default();
                sender().send_modify(|r| {
                    r.count += 1;
                    r.first.get_or_insert(name);
                    now = *r;
                });
                now
            };
            if now.count == 1 {
                tracing::warn!(signal = name, "Stopping: committing what is complete (send it again to stop at once).");
            } else {
                tracing::warn!(signal = name, "Stopping at once; everything committed stays.");
            }
        }
    });
}

/// What has been received so far.
pub fn received() -> Received {
    *sender().borrow()
}

/// Resolves once `count` signals have arrived, with the name of the first.
async fn after(count: u32) -> &'static str {
    let mut rx = sender().subscribe();
    let first = rx.wait_for(|r| r.count >= count).await.map(|r| r.first.unwrap_or("a signal"));
    match first {
        Ok(name) => name,
        // The sender lives in a static: it is never dropped.
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on the first signal: stop cleanly.
pub async fn first() -> &'static str {
    after(1).await
}

/// Resolves on the second signal: stop at once.
pub async fn second() -> &'static str {
    after(2).await
}
