//! Seeded simulation, the way FoundationDB and TigerBeetle test their protocols: one seed picks
//! the fake's modes (a clock hours off the host's, late indexing, new mail between pages, other
//! readings of the date filters, events stamped before their message), the transient faults,
//! the data, the destination, and the points where a sync is killed (SIGKILL) or stopped
//! (SIGTERM). A run of a seed does several syncs with Postmark's clock moving on and mail
//! arriving between them, then one more after everything settled, and checks every message and
//! open exactly once in the destination against the fake's ground truth.
//!
//! `SIM_SEEDS=N` (default 200) seeds from `SIM_FIRST` (default 1); `SIM_SEED=S` runs one. A
//! failing seed prints the command that reproduces it.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::{BIN, Env};
use fake_postmark::{DateReading, FakeConfig, Fault, Message, generate, rng};
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dest {
    Duckdb,
    Parquet,
    Singer,
}

#[derive(Debug)]
enum Stop {
    Kill(usize),
    Term(usize),
}

/// What one seed picked.
#[derive(Debug)]
struct Modes {
    clock_offset: ChronoDuration,
    reading: DateReading,
    index_delay: ChronoDuration,
    arrivals: usize,
    /// Lists only nearly newest first (`FakeConfig::order_jitter`).
    order_jitter: ChronoDuration,
    early_events: bool,
    dest: Dest,
    days: i64,
    per_day: usize,
    /// Per sync before the final one: faults queued, how it is stopped, time passing after it.
    syncs: Vec<(usize, Option<Stop>, ChronoDuration)>,
}

fn pick(seed: u64) -> Modes {
    let mut r = rng(seed);
    let offsets = [0, 0, -3, 3, -9, 11, -24 * 150];
    let readings = [
        DateReading::Eastern,
        DateReading::EasternWholeSecond,
        DateReading::FixedUtcMinus5,
        DateReading::BareDateWholeDay,
    ];
    let syncs = (0..r.random_range(1..=3))
        .map(|_| {
            let stop = match r.random_range(0..6) {
                0 => Some(Stop::Kill(r.random_range(1..25))),
                1 => Some(Stop::Term(r.random_range(1..25))),
                _ => None,
            };
            (r.random_range(0..4), stop, ChronoDuration::minutes(r.random_range(5..36 * 60)))
        })
        .collect();
    Modes {
        clock_offset: ChronoDuration::hours(offsets[r.random_range(0..offsets.len())]) + ChronoDuration::seconds(r.random_range(-90..90)),
        reading: readings[r.random_range(0..readings.len())],
        index_delay: ChronoDuration::seconds([0, 0, 30, 300][r.random_range(0..4)]),
        arrivals: [0, 0, 1, 4][r.random_range(0..4)],
        order_jitter: ChronoDuration::seconds([0, 0, 0, 600][r.random_range(0..4)]),
        early_events: r.random_bool(0.3),
        dest: [Dest::Duckdb, Dest::Parquet, Dest::Singer][r.random_range(0..3)],
        days: r.random_range(1..=3),
        per_day: r.random_range(50..1_500),
        syncs,
    }
}

fn faults(r: &mut StdRng, n: usize) -> Vec<Fault> {
    (0..n)
        .map(|_| match r.random_range(0..5) {
            0 => Fault::RateLimited { retry_after: Some(0) },
            1 => Fault::Status([500, 502, 503][r.random_range(0..3)]),
            2 => Fault::TruncatedJson,
            3 => Fault::ResetMidBody,
            _ => Fault::Status(504),
        })
        .collect()
}

/// Adds opens for `messages` (as of the fake's now); with `early`, some stamped before their
/// message (clocks of tracking pixels and mail servers disagree).
fn add_events(env: &Env, seed: u64, messages: &[Message], early: bool) {
    let (mut opens, _, _) = generate::events_until(seed, messages, env.fake.now());
    if early {
        for (i, o) in opens.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
            let sent = messages.iter().find(|m| m.id == o.message_id).map_or(o.received_at, |m| m.received_at);
            o.received_at = sent - ChronoDuration::seconds(1 + (i % 50) as i64);
        }
    }
    env.fake.with_data(0, |d| d.add_opens(opens));
}

/// One sync; returns its exit code, and for Singer its stdout.
fn sync(env: &Env, modes: &Modes, stop: Option<&Stop>, state: Option<&Value>) -> (Option<i32>, String) {
    let cfg = env.path("config.json");
    let summary = env.path("summary.json");
    let mut args: Vec<String> = [
        "sync",
        "--config",
        cfg.to_str().unwrap_or_default(),
        "--streams",
        "messages_outbound,messages_opens",
        "--summary-json",
        summary.to_str().unwrap_or_default(),
    ]
    .map(String::from)
    .to_vec();
    let (dest, path) = match modes.dest {
        Dest::Duckdb => ("duckdb", "pm.duckdb"),
        Dest::Parquet => ("parquet", "lake"),
        Dest::Singer => ("singer", "-"),
    };
    args.extend(["--dest".to_string(), dest.to_string()]);
    if modes.dest != Dest::Singer {
        args.extend(["--path".to_string(), path.to_string()]);
    }
    if let Some(s) = state {
        std::fs::write(env.path("state.json"), s.to_string()).expect("state");
        args.extend(["--state".to_string(), "state.json".to_string()]);
    }
    let out_path = env.path("stdout.jsonl");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    env.fake.clear_requests();
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(env.dir.path())
        .env_remove("RUST_LOG")
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    if let Some(Stop::Kill(n) | Stop::Term(n)) = stop {
        let started = std::time::Instant::now();
        while env.fake.requests().len() < *n && started.elapsed() < Duration::from_secs(20) && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        match stop {
            Some(Stop::Kill(_)) => {
                child.kill().ok();
            }
            _ => {
                Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .ok();
            }
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    (code, std::fs::read_to_string(&out_path).unwrap_or_default())
}

/// Keys loaded, each as often as a reader sees it: message ids, and opens as
/// `message_id|recipient|epoch microseconds`.
fn loaded(env: &Env, dest: Dest, singer_lines: &[Value]) -> (Vec<String>, Vec<String>) {
    let query = |conn: duckdb::Connection, from: &str| {
        // DuckDB reads its own file; the bundled build has no Parquet reader.
        let list = |sql: String| -> Vec<String> {
            let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").map(|r| r.expect("row")).collect()
        };
        (
            list(format!("SELECT message_id FROM {}", from.replace("{}", "messages_outbound"))),
            list(format!(
                "SELECT concat_ws('|', message_id, recipient, epoch_us(received_at)) FROM {}",
                from.replace("{}", "messages_opens")
            )),
        )
    };
    match dest {
        Dest::Duckdb => query(duckdb::Connection::open(env.path("pm.duckdb")).expect("open duckdb"), "{}"),
        Dest::Parquet => (
            common::parquet_strings(&env.path("lake"), "messages_outbound", "message_id"),
            parquet_open_keys(&env.path("lake").join("messages_opens")),
        ),
        Dest::Singer => {
            // A target keeps one row per key: the union of every run's committed records.
            let (mut ids, mut opens) = (HashSet::new(), HashSet::new());
            for l in singer_lines.iter().filter(|l| l["type"] == "RECORD") {
                let r = &l["record"];
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                match l["stream"].as_str() {
                    Some("messages_outbound") => ids.insert(text("message_id")),
                    _ => {
                        let at = DateTime::parse_from_rfc3339(&text("received_at")).map_or(0, |t| t.timestamp_micros());
                        opens.insert(format!("{}|{}|{at}", text("message_id"), text("recipient")))
                    }
                };
            }
            (ids.into_iter().collect(), opens.into_iter().collect())
        }
    }
}

/// `message_id|recipient|epoch microseconds` of every row of the opens' Parquet files.
fn parquet_open_keys(dir: &std::path::Path) -> Vec<String> {
    use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).expect("open parquet");
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .expect("parquet reader");
            for batch in reader {
                let batch = batch.expect("batch");
                let text = |name: &str| {
                    batch
                        .column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                        .expect(name)
                };
                let (ids, recipients) = (text("message_id"), text("recipient"));
                let at = batch
                    .column_by_name("received_at")
                    .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>().cloned())
                    .expect("received_at");
                for i in 0..batch.num_rows() {
                    out.push(format!("{}|{}|{}", ids.value(i), recipients.value(i), at.value(i)));
                }
            }
        }
    }
    out
}

fn run_seed(seed: u64) -> Result<(), String> {
    let modes = pick(seed);
    let mut r = rng(seed ^ 0x5eed);
    let config = FakeConfig {
        clock_offset: modes.clock_offset,
        date_reading: modes.reading,
        index_delay: modes.index_delay,
        arrivals_per_search: modes.arrivals,
        arrival_seed: seed,
        order_jitter: modes.order_jitter,
        ..FakeConfig::default()
    };
    let env = Env::with_config(config, Vec::new());
    let start: DateTime<Utc> = env.fake.now() - ChronoDuration::days(modes.days + 1);
    let first = generate::between(
        seed,
        "outbound",
        start + ChronoDuration::hours(2),
        env.fake.now(),
        modes.per_day * modes.days as usize,
    );
    env.fake.add_messages(first.clone());
    add_events(&env, seed, &first, modes.early_events);
    env.config(
        start,
        json!({"message_streams": ["outbound"], "settle_seconds": 60, "commit_interval_seconds": 1, "max_concurrency": 3}),
    );
    let mut singer_lines: Vec<Value> = Vec::new();
    let mut state: Option<Value> = None;
    let mut warned_misread = false;
    for (n, (fault_count, stop, later)) in modes.syncs.iter().enumerate() {
        env.fake.push_faults("", faults(&mut r, *fault_count));
        let (code, out) = sync(&env, &modes, stop.as_ref(), state.as_ref());
        if stop.is_none() && code != Some(0) {
            return Err(format!("sync {n} exited {code:?}"));
        }
        let lines: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if modes.dest == Dest::Singer {
            // What a target commits: the records up to the last STATE it saw.
            let upto = lines.iter().rposition(|l| l["type"] == "STATE").map_or(0, |p| p + 1);
            if let Some(s) = lines[..upto].iter().rev().find(|l| l["type"] == "STATE") {
                state = Some(s["value"].clone());
            }
            if stop.is_none() {
                let records: Vec<String> = lines
                    .iter()
                    .filter(|l| l["type"] == "RECORD" && l["stream"] == "messages_outbound")
                    .map(|l| l["record"]["message_id"].to_string())
                    .collect();
                let unique: HashSet<&String> = records.iter().collect();
                if unique.len() != records.len() {
                    return Err(format!("sync {n}: Singer repeated {} records within the run", records.len() - unique.len()));
                }
            }
            singer_lines.extend(lines.into_iter().take(upto));
        }
        warned_misread |= std::fs::read_to_string(env.path("summary.json")).is_ok_and(|t| t.contains("another offset"));
        // Time passes; mail arrives, some of it just before Postmark's now.
        let before = env.fake.now();
        env.fake.advance_clock(*later);
        let new = generate::between(
            seed + n as u64 + 1,
            "outbound",
            before - ChronoDuration::minutes(2),
            env.fake.now(),
            r.random_range(0..400),
        );
        env.fake.add_messages(new.clone());
        add_events(&env, seed + 100 + n as u64, &new, modes.early_events);
    }
    // Everything settles: no more arrivals, the index catches up; one last sync, no faults.
    env.fake.set_arrivals(0);
    env.fake.advance_clock(ChronoDuration::minutes(10));
    let (code, out) = sync(&env, &modes, None, state.as_ref());
    if code != Some(0) {
        return Err(format!("the final sync exited {code:?}"));
    }
    singer_lines.extend(out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()));
    warned_misread |= std::fs::read_to_string(env.path("summary.json")).is_ok_and(|t| t.contains("another offset"));
    let (ids, opens) = loaded(&env, modes.dest, &singer_lines);
    let truth = env.fake.visible(0);
    let check = |what: &str, got: Vec<String>, want: HashSet<String>| -> Result<(), String> {
        let repeated = got.len() - got.iter().collect::<HashSet<_>>().len();
        let got: HashSet<String> = got.into_iter().collect();
        let missing = want.difference(&got).count();
        if repeated > 0 || missing > 0 {
            return Err(format!("{what}: {missing} of {} missing, {repeated} repeated", want.len()));
        }
        Ok(())
    };
    // Every mode is made up for: a date reading an hour off included (reads start an hour early).
    let from = start;
    let want_ids: HashSet<String> = truth.messages.iter().filter(|m| m.received_at >= from).map(|m| m.id.clone()).collect();
    let got: HashSet<&String> = ids.iter().collect();
    let missed: Vec<String> = truth
        .messages
        .iter()
        .filter(|m| want_ids.contains(&m.id) && !got.contains(&m.id))
        .take(3)
        .map(|m| {
            format!(
                "{} (start + {} min, Postmark's now - {} min)",
                m.id,
                (m.received_at - start).num_minutes(),
                (env.fake.now() - m.received_at).num_minutes()
            )
        })
        .collect();
    check("messages", ids, want_ids).map_err(|e| format!("{e}; e.g. {missed:?}; the connector noted another date reading: {warned_misread}"))?;
    let want_opens: HashSet<String> = truth
        .opens
        .iter()
        .filter(|o| o.received_at >= from)
        .map(|o| format!("{}|{}|{}", o.message_id, o.recipient, o.received_at.timestamp_micros()))
        .collect();
    check("opens", opens, want_opens)
}

#[test]
fn seeds_lose_and_double_nothing() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(one) => vec![one],
        None => {
            let first: u64 = std::env::var("SIM_FIRST").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
            let count: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
            (first..first + count).collect()
        }
    };
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(seed) = seeds.get(i) else { break };
                    if let Err(e) = run_seed(*seed) {
                        let line = format!(
                            "seed {seed} ({:?}): {e}\n  reproduce: SIM_SEED={seed} cargo test --test simulation -- --nocapture",
                            pick(*seed)
                        );
                        eprintln!("{line}");
                        failures.lock().map(|mut f| f.push(line)).ok();
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}
