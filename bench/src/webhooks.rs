//! The webhook scenario: the receiver in a child process under 64 connections on loopback.

use super::*;

pub(super) struct HookLoad {
    pub(super) events: u64,
    pub(super) rate: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) merged: u64,
}

/// Starts the receiver in a child process and posts `count` distinct open events from 64
/// connections on loopback (at most 60 s), then stops it (SIGTERM) and counts the merged rows.
pub(super) fn webhook_load(count: u64) -> Result<HookLoad, String> {
    let dir = tempfile_dir();
    let secret = "bench-secret-0123456789abcdef";
    let config = dir.join("config.json");
    let cfg = serde_json::json!({"server_token": "unused-here", "start_date": "2026-01-01", "webhook_secret": secret, "webhook_merge_interval_seconds": 2});
    std::fs::write(&config, cfg.to_string()).map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let db = dir.join("hooks.duckdb");
    let mut child = Command::new(me)
        .args(["child", "webhooks", "serve", "-q", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--path")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let url = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .ok_or("the receiver did not start")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let latencies: Vec<f64> = rt.block_on(async {
        let client = reqwest::Client::new();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count || started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    let body = serde_json::json!({"RecordType": "Open", "MessageID": format!("m-{}", i / 1000), "Recipient": "r@example.net",
                        "ReceivedAt": format!("2026-01-01T00:{:02}:{:02}.{:07}Z", (i / 60) % 60, i % 60, i), "MessageStream": "outbound"});
                    let t = Instant::now();
                    let ok = client
                        .post(&url)
                        .basic_auth("postmark", Some(secret))
                        .body(body.to_string())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    let merged = duckdb::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM webhook_opens", [], |r| r.get::<_, i64>(0)))
        .map_err(|e| e.to_string())? as u64;
    std::fs::remove_dir_all(&dir).ok();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0);
    Ok(HookLoad {
        events: latencies.len() as u64,
        rate: latencies.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        merged,
    })
}
