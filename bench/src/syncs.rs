//! The sync scenarios: a generated data set served by the fake, and one timed `postmark-elt sync` in a child process with its peak RSS.

use super::*;

/// A data set of `records` rows: half messages over ten days, half opens of them.
pub(super) fn start_fake(records: u64) -> (FakePostmark, u64, u64) {
    let config = FakeConfig {
        gzip: false,
        ..FakeConfig::default()
    };
    start_fake_with(records, config)
}

/// The data set of [`start_fake`] behind a fake configured as given (latency, errors).
pub(super) fn start_fake_with(records: u64, config: FakeConfig) -> (FakePostmark, u64, u64) {
    let now = Utc::now();
    let messages = generate::between(
        11,
        "outbound",
        now - ChronoDuration::days(10),
        now - ChronoDuration::hours(1),
        (records / 2) as usize,
    );
    let mut rng = fake_postmark::rng(12);
    let opens: Vec<_> = messages
        .iter()
        .map(|m| generate::event(&mut rng, m, &m.to[0].0, m.received_at + ChronoDuration::seconds(90), true, false))
        .collect();
    let (m, o) = (messages.len() as u64, opens.len() as u64);
    let fake = FakePostmark::start(config, default_streams(), messages);
    fake.with_data(0, |d| d.add_opens(opens));
    (fake, m, o)
}

/// Peak resident memory of a running process, from /proc (VmHWM), in MiB.
pub(super) fn vm_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One timed sync: where it writes and what it reads.
pub(super) struct Spec {
    pub dest: &'static str,
    pub concurrency: usize,
    pub duckdb_memory_limit_mb: Option<u64>,
    /// Poll the DuckDB file as a reader during the sync.
    pub readers: bool,
    /// The streams synced: messages_outbound and messages_opens by a catalog, or (`false`) the
    /// default selection, as `postmark-elt sync` without a catalog reads.
    pub two_streams: bool,
}

impl Spec {
    pub fn two_streams(dest: &'static str, concurrency: usize) -> Self {
        Spec {
            dest,
            concurrency,
            duckdb_memory_limit_mb: None,
            readers: false,
            two_streams: true,
        }
    }
}

pub(super) fn run_once(fake: &FakePostmark, spec: &Spec) -> Result<Run, String> {
    let dest = spec.dest;
    let dir = tempfile_dir();
    let config = dir.join("config.json");
    let mut cfg = serde_json::json!({
        "server_token": fake.token(), "base_url": fake.base_url(),
        "start_date": (Utc::now() - ChronoDuration::days(11)).to_rfc3339(),
        "message_streams": ["outbound"], "max_concurrency": spec.concurrency, "lookback_days": 30
    });
    if let Some(mb) = spec.duckdb_memory_limit_mb {
        cfg["duckdb_memory_limit_mb"] = mb.into();
    }
    std::fs::write(&config, cfg.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("catalog.json"),
        r#"{"streams":[{"tap_stream_id":"messages_outbound","selected":true},{"tap_stream_id":"messages_opens","selected":true}]}"#,
    )
    .map_err(|e| e.to_string())?;
    fake.clear_requests();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = dir.join(if dest == "parquet" { "lake" } else { "bench.duckdb" });
    let started = Instant::now();
    let mut command = Command::new(me);
    command.args(["child", "sync", "-q", "--config"]).arg(&config);
    if spec.two_streams {
        command.args(["--catalog"]).arg(dir.join("catalog.json"));
    }
    let mut child = command
        .args(["--dest", dest, "--path"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let poller = (spec.readers && dest == "duckdb").then(|| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        (stop.clone(), readers::poll_while(path.clone(), stop))
    });
    let mut peak: f64 = 0.0;
    let status = loop {
        if let Some(mib) = vm_hwm_mib(child.id()) {
            peak = peak.max(mib);
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let reader = poller.and_then(|(stop, handle)| {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().ok()
    });
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).ok();
        }
        return Err(format!("sync into {dest} failed: {err}"));
    }
    let served = fake.requests();
    if let Ok(dump) = std::env::var("BENCH_DUMP") {
        let t0 = served.first().map(|r| r.arrived);
        let lines: Vec<String> = served
            .iter()
            .map(|r| {
                let at = t0.map_or(0.0, |t| (r.arrived - t).as_secs_f64());
                let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{at:.3} {:.3} {} {} {}", (r.answered - r.arrived).as_secs_f64(), r.status, r.path, q.join("&"))
            })
            .collect();
        static DUMPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = DUMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::write(format!("{dump}.{n}"), lines.join("\n")).ok();
    }
    let requests = served
        .iter()
        .filter(|r| r.status == 200 && (r.path == "/messages/outbound" || r.path == "/messages/outbound/opens"))
        .count() as u64;
    std::fs::remove_dir_all(&dir).ok();
    Ok(Run {
        seconds,
        peak_rss_mib: peak,
        requests,
        served: Served::of(&served),
        reader,
    })
}

/// What the fake served during one sync: requests, the answered ones, and the time they took
/// at the fake (its drawn latency), summed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Served {
    pub requests: u64,
    pub errors: u64,
    pub latency_sum_s: f64,
}

impl Served {
    fn of(requests: &[fake_postmark::RecordedRequest]) -> Self {
        Served {
            requests: requests.len() as u64,
            errors: requests.iter().filter(|r| r.status != 200).count() as u64,
            latency_sum_s: requests.iter().map(|r| (r.answered - r.arrived).as_secs_f64()).sum(),
        }
    }
}

pub(super) fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "postmark-elt-bench-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).ok();
    dir
}
