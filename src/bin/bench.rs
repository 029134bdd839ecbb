//! End-to-end benchmark: the fake Postmark API (in this process, on 127.0.0.1) serves generated
//! messages and opens; postmark-elt syncs `messages_outbound` and `messages_opens` in a child
//! process into each destination. Prints records/s, requests against the minimum, and peak RSS
//! (VmHWM of the child), as medians over several runs, then PASS/FAIL per target.
//!
//!     cargo run --release --features bench --bin bench            # 100k and 1M records, 5 runs
//!     cargo run --release --features bench --bin bench -- --quick # 20k and 100k, 1 run

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use clap::Parser;
use fake_postmark::{FakeConfig, FakePostmark, default_streams, generate};

const PAGE: u64 = 500;

struct Run {
    seconds: f64,
    peak_rss_mib: f64,
    requests: u64,
}

struct Row {
    dest: &'static str,
    records: u64,
    minimum: u64,
    runs: Vec<Run>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

impl Row {
    fn rate(&self) -> f64 {
        median(self.runs.iter().map(|r| self.records as f64 / r.seconds).collect())
    }
    fn rss(&self) -> f64 {
        median(self.runs.iter().map(|r| r.peak_rss_mib).collect())
    }
    fn requests(&self) -> f64 {
        median(self.runs.iter().map(|r| r.requests as f64).collect())
    }
}

/// A data set of `records` rows: half messages over ten days, half opens of them.
fn start_fake(records: u64, latency: Duration) -> (FakePostmark, u64, u64) {
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
    let config = FakeConfig {
        latency,
        gzip: false,
        ..FakeConfig::default()
    };
    let fake = FakePostmark::start(config, default_streams(), messages);
    fake.with_data(0, |d| d.add_opens(opens));
    (fake, m, o)
}

/// Peak resident memory of a running process, from /proc (VmHWM), in MiB.
fn vm_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn run_once(fake: &FakePostmark, dest: &'static str, concurrency: usize, duckdb_memory_limit_mb: Option<u64>) -> Result<Run, String> {
    let dir = tempfile_dir();
    let config = dir.join("config.json");
    let mut cfg = serde_json::json!({
        "server_token": fake.token(), "base_url": fake.base_url(),
        "start_date": (Utc::now() - ChronoDuration::days(11)).to_rfc3339(),
        "message_streams": ["outbound"], "max_concurrency": concurrency, "lookback_days": 30
    });
    if let Some(mb) = duckdb_memory_limit_mb {
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
    let mut child = Command::new(me)
        .args(["child", "sync", "-q", "--config"])
        .arg(&config)
        .args(["--catalog"])
        .arg(dir.join("catalog.json"))
        .args(["--dest", dest, "--path"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
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
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).ok();
        }
        return Err(format!("sync into {dest} failed: {err}"));
    }
    let requests = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/messages/outbound" || r.path == "/messages/outbound/opens")
        .count() as u64;
    std::fs::remove_dir_all(&dir).ok();
    Ok(Run {
        seconds,
        peak_rss_mib: peak,
        requests,
    })
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "postmark-elt-bench-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).ok();
    dir
}

#[derive(Parser)]
#[command(about = "postmark-elt end-to-end benchmark against the in-repo fake Postmark API")]
struct Args {
    /// Small sizes and one run, to try the benchmark quickly.
    #[arg(long)]
    quick: bool,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only the webhook receiver's load test.
    #[arg(long)]
    webhooks_only: bool,
    /// Only the latency scenario (100 ms a request, 8 in flight).
    #[arg(long)]
    latency_only: bool,
    /// Only these destinations (throughput figures only; for profiling one sink).
    #[arg(long, value_delimiter = ',')]
    dest: Vec<String>,
    /// Record counts to measure instead of the defaults (throughput figures only).
    #[arg(long, value_delimiter = ',')]
    records: Vec<u64>,
    /// DuckDB's buffer pool cap for the syncs (config `duckdb_memory_limit_mb`) instead of the
    /// default (throughput figures only): to weigh memory against speed.
    #[arg(long)]
    duckdb_memory_limit_mb: Option<u64>,
}

struct HookLoad {
    events: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    merged: u64,
}

/// Starts the receiver in a child process and posts `count` distinct open events from 64
/// connections on loopback (at most 60 s), then stops it (SIGTERM) and counts the merged rows.
fn webhook_load(count: u64) -> Result<HookLoad, String> {
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

fn child(args: Vec<String>) -> ExitCode {
    let cli = postmark_elt::cli::Cli::parse_from(std::iter::once("postmark-elt".to_string()).chain(args));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(postmark_elt::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("child") {
        return child(argv.split_off(2));
    }
    let args = Args::parse();
    if args.webhooks_only {
        return match webhook_load(if args.quick { 10_000 } else { 50_000 }) {
            Ok(h) => {
                println!(
                    "webhooks: {} events from 64 connections, {:.0} events/s acknowledged durable, p50 {:.1} ms, p99 {:.1} ms, {} rows merged",
                    h.events, h.rate, h.p50_ms, h.p99_ms, h.merged
                );
                let ok = h.rate >= 5_000.0 && h.merged == h.events;
                println!(
                    "{} webhooks: {:.0} events/s >= 5,000 durable, all merged",
                    if ok { "PASS" } else { "FAIL" },
                    h.rate
                );
                if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let (mut sizes, runs) = match (args.quick, args.latency_only) {
        (_, true) => (Vec::new(), args.runs),
        (true, false) => (vec![20_000u64, 100_000], 1),
        (false, false) => (vec![100_000u64, 1_000_000], args.runs),
    };
    // A partial measurement: the figures asked for, no targets judged.
    let partial = !args.dest.is_empty() || !args.records.is_empty() || args.duckdb_memory_limit_mb.is_some();
    if !args.records.is_empty() {
        sizes = args.records.clone();
    }
    let dests: Vec<&'static str> = ["duckdb", "parquet", "singer"]
        .into_iter()
        .filter(|d| args.dest.is_empty() || args.dest.iter().any(|x| x == d))
        .collect();
    println!(
        "postmark-elt benchmark: {} cores, {runs} run(s) per figure, medians; fake API in-process, answering instantly",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:>9} {:>12} {:>12} {:>20}",
        "dest", "records", "records/s", "peak RSS", "requests / minimum"
    );
    let mut rows: Vec<Row> = Vec::new();
    for &size in &sizes {
        let (fake, m, o) = start_fake(size, Duration::ZERO);
        let minimum = m.div_ceil(PAGE) + o.div_ceil(PAGE);
        for &dest in &dests {
            let mut row = Row {
                dest,
                records: m + o,
                minimum,
                runs: Vec::new(),
            };
            for _ in 0..runs {
                match run_once(&fake, dest, 4, args.duckdb_memory_limit_mb) {
                    Ok(r) => row.runs.push(r),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            println!(
                "{:<8} {:>9} {:>12.0} {:>9.1} MiB {:>12.0} / {}",
                row.dest,
                row.records,
                row.rate(),
                row.rss(),
                row.requests(),
                row.minimum
            );
            rows.push(row);
        }
    }
    if partial {
        return ExitCode::SUCCESS;
    }
    // Latency: 100 ms per request, 8 in flight; the ideal is 8 x 500 / 0.1 s = 40,000 records/s.
    let latency_records = if args.quick { 40_000 } else { 200_000 };
    let (fake, m, o) = start_fake(latency_records, Duration::from_millis(100));
    let mut latency = Row {
        dest: "singer",
        records: m + o,
        minimum: m.div_ceil(PAGE) + o.div_ceil(PAGE),
        runs: Vec::new(),
    };
    for _ in 0..runs.min(3) {
        match run_once(&fake, "singer", 8, None) {
            Ok(r) => latency.runs.push(r),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ideal = 8.0 * PAGE as f64 / 0.1;
    println!(
        "latency 100 ms, max_concurrency 8: {:.0} records/s = {:.0}% of the ideal {ideal:.0} ({} records, requests {:.0} / {})",
        latency.rate(),
        100.0 * latency.rate() / ideal,
        latency.records,
        latency.requests(),
        latency.minimum
    );

    if args.latency_only {
        let ideal = 8.0 * PAGE as f64 / 0.1;
        let ok = latency.rate() >= 0.8 * ideal;
        println!(
            "{} latency: {:.0}% of the ideal >= 80%",
            if ok { "PASS" } else { "FAIL" },
            100.0 * latency.rate() / ideal
        );
        return if ok { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let hooks = match webhook_load(if args.quick { 10_000 } else { 50_000 }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "webhooks: {} events from 64 connections, {:.0} events/s acknowledged durable, p50 {:.1} ms, p99 {:.1} ms, {} rows merged",
        hooks.events, hooks.rate, hooks.p50_ms, hooks.p99_ms, hooks.merged
    );

    let big = *sizes.last().unwrap_or(&0);
    let small = sizes.first().copied().unwrap_or(0);
    let find = |dest: &str, size: u64| rows.iter().find(|r| r.dest == dest && r.records.abs_diff(size) <= 2);
    let mut all_pass = true;
    let mut target = |name: String, ok: bool| {
        all_pass &= ok;
        println!("{} {name}", if ok { "PASS" } else { "FAIL" });
    };
    for dest in ["duckdb", "parquet"] {
        if let Some(r) = find(dest, big) {
            target(format!("{dest}: {:.0} records/s >= 150,000", r.rate()), r.rate() >= 150_000.0);
        }
    }
    if let Some(r) = find("singer", big) {
        target(format!("singer: {:.0} records/s >= 250,000", r.rate()), r.rate() >= 250_000.0);
    }
    for dest in ["duckdb", "parquet", "singer"] {
        if let (Some(b), Some(s)) = (find(dest, big), find(dest, small)) {
            target(format!("{dest}: peak RSS {:.0} MiB at {big} records <= 200 MiB", b.rss()), b.rss() <= 200.0);
            target(
                format!(
                    "{dest}: peak RSS {:.0} MiB within 10% of {:.0} MiB at {small} (flat with volume)",
                    b.rss(),
                    s.rss()
                ),
                b.rss() <= s.rss() * 1.10,
            );
        }
    }
    target(
        format!("latency: {:.0}% of the ideal >= 80%", 100.0 * latency.rate() / ideal),
        latency.rate() >= 0.8 * ideal,
    );
    target(format!("webhooks: {:.0} events/s >= 5,000 durable", hooks.rate), hooks.rate >= 5_000.0);
    target(
        format!("webhooks: all {} acknowledged events merged", hooks.events),
        hooks.merged == hooks.events,
    );
    for r in rows.iter().chain(std::iter::once(&latency)) {
        target(
            format!("{} {} records: requests {:.0} <= 1.05 x minimum {}", r.dest, r.records, r.requests(), r.minimum),
            r.requests() <= 1.05 * r.minimum as f64,
        );
    }
    if all_pass { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
