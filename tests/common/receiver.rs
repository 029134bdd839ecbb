//! The webhook receiver run as the real binary, for the webhook tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::{BIN, Env};

pub const SECRET: &str = "hook-secret-0123456789abcdef";

pub fn write_config(env: &Env, extra: Value) -> std::path::PathBuf {
    let mut cfg = json!({
        "server_token": env.fake.token(), "base_url": env.fake.base_url(),
        "start_date": (Utc::now() - chrono::Duration::days(2)).to_rfc3339(),
        "webhook_secret": SECRET, "webhook_merge_interval_seconds": 1, "retry_initial_delay_ms": 5
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let path = env.path("hooks.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    super::set_private(&path);
    path
}

pub struct Receiver {
    pub child: Child,
    pub url: String,
}

pub fn start(env: &Env, config: &Path) -> Receiver {
    start_with(env, config, &[])
}

/// The receiver with more arguments (e.g. `--spool DIR`).
pub fn start_with(env: &Env, config: &Path, extra: &[&str]) -> Receiver {
    let mut child = Command::new(BIN)
        .args([
            "webhooks",
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--path",
            "hooks.duckdb",
        ])
        .args(extra)
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                tx.send(url.to_string()).ok();
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(20)).expect("the receiver did not start");
    Receiver { child, url }
}

impl Receiver {
    /// SIGTERM, then wait: the receiver drains and merges before it exits.
    pub fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "receiver exit: {status:?}");
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

pub async fn post(client: &reqwest::Client, url: &str, body: String, secret: Option<&str>) -> Result<u16, String> {
    let mut req = client.post(url).header("Content-Type", "application/json").body(body);
    if let Some(s) = secret {
        req = req.basic_auth("postmark", Some(s));
    }
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}
