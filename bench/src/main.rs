//! End-to-end benchmark: the fake Postmark API (in this process, on 127.0.0.1) serves generated
//! messages and opens; postmark-elt syncs `messages_outbound` and `messages_opens` in a child
//! process into each destination. Prints records/s, requests against the minimum, and peak RSS
//! (VmHWM of the child), as medians over several runs, then PASS/FAIL per target.
//!
//!     cargo run --release -p postmark-elt-bench            # 100k and 1M records, 5 runs
//!     cargo run --release -p postmark-elt-bench -- --quick # 20k and 100k, 1 run

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use clap::Parser;
use fake_postmark::{FakeConfig, FakePostmark, default_streams, generate};

mod readers;
mod syncs;
mod webhooks;

use syncs::*;
use webhooks::*;

const PAGE: u64 = 500;

struct Run {
    seconds: f64,
    peak_rss_mib: f64,
    requests: u64,
    /// What a reader polling during the sync saw (`--readers`, DuckDB only).
    reader: Option<readers::ReaderFigures>,
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

#[derive(Parser)]
#[command(about = "postmark-elt end-to-end benchmark against the in-repo fake Postmark API")]
struct Args {
    /// Small sizes and one run, to try the benchmark quickly.
    #[arg(long)]
    quick: bool,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// During each DuckDB sync, poll the file once a second as a reader would, and report how
    /// many opens that do not wait failed and how long waiting ones took.
    #[arg(long)]
    readers: bool,
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
    let partial = !args.dest.is_empty() || !args.records.is_empty() || args.duckdb_memory_limit_mb.is_some() || args.readers;
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
                match run_once(&fake, dest, 4, args.duckdb_memory_limit_mb, args.readers) {
                    Ok(r) => {
                        if let Some(f) = &r.reader {
                            let mut waits = f.waits_ms.clone();
                            waits.sort_by(f64::total_cmp);
                            println!(
                                "  reader during a {:.1} s sync: {} polls, {} opens without waiting failed; waiting opens: median {:.0} ms, longest {:.0} ms",
                                r.seconds,
                                f.polls,
                                f.plain_failed,
                                median(waits.clone()),
                                waits.last().copied().unwrap_or(0.0)
                            );
                        }
                        row.runs.push(r)
                    }
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
        match run_once(&fake, "singer", 8, None, false) {
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
