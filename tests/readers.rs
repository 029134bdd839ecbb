//! Analysts read the DuckDB file while syncs run: DuckDB's Python client and `postmark-elt
//! query` open it between commits, and a sync waits for a reader that holds it open, up to
//! `lock_timeout_seconds`, then fails with exit 8 and loses nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// Polls the file read-only with DuckDB's Python client while process `pid` lives, as a notebook
/// would; prints one JSON summary.
const POLLER: &str = r#"
import duckdb, json, os, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
ok, failed, counts, errors = 0, 0, [], set()
while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
    try:
        con = duckdb.connect(path, read_only=True)
        try:
            counts.append(con.execute("SELECT count(*) FROM messages_outbound").fetchone()[0])
        except duckdb.CatalogException:
            counts.append(0)
        con.close()
        ok += 1
    except duckdb.Error as e:
        failed += 1
        errors.add(type(e).__name__)
    time.sleep(0.1)
print(json.dumps({"ok": ok, "failed": failed, "counts": counts, "errors": sorted(errors)}))
"#;

/// Opens the file read-only and keeps it open for argv[2] seconds.
const HOLDER: &str = r#"
import duckdb, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
time.sleep(float(sys.argv[2]))
"#;

fn slow_env(messages: usize) -> Env {
    let config = FakeConfig {
        latency: Duration::from_millis(25),
        ..FakeConfig::default()
    };
    let from = two_days_ago() - chrono::Duration::days(4);
    Env::with_config(config, generate::between(7, "outbound", from, two_days_ago(), messages))
}

/// During a sync of several seconds, a Python reader opens the file again and again and sees
/// the rows of a commit before the sync ends, and every `postmark-elt query` succeeds (it waits
/// while a commit holds the file).
#[test]
fn readers_query_while_a_sync_runs() {
    // Three windows (the dense range is cut along its 10,000-row reach: 2,000, then 10,000
    // twice), so a commit lands after `commit_interval_seconds` and before the last window:
    // the DuckDB queue is applied by the next commit once the interval has passed.
    const MESSAGES: i64 = 22_000;
    let env = slow_env(MESSAGES as usize);
    let python = python_tool("dbt");
    let cfg = env.config(
        two_days_ago() - chrono::Duration::days(5),
        json!({"page_size": 50, "max_concurrency": 2, "commit_interval_seconds": 1}),
    );
    let db = env.path("postmark.duckdb");
    let started = Instant::now();
    let mut sync = env.spawn(&["sync", "--config", cfg.to_str().unwrap_or_default(), "--streams", "messages_outbound"]);
    let poller = Command::new(&python)
        .args(["-c", POLLER])
        .arg(&db)
        .arg(sync.id().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python reader");
    let mut queries = 0;
    while sync.try_wait().expect("sync status").is_none() {
        if db.exists() {
            let out = env.run(&["query", "--path", "postmark.duckdb", "SELECT count(*) AS n FROM messages_outbound"]);
            // The table appears with the first commit; before it a query names it missing.
            let missing = String::from_utf8_lossy(&out.stderr).contains("does not exist");
            assert!(out.status.success() || missing, "a query during the sync failed: {}", text(&out));
            queries += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = sync.wait().expect("sync");
    let elapsed = started.elapsed();
    assert!(status.success(), "sync failed: {status:?}");
    let report: Value = serde_json::from_slice(&poller.wait_with_output().expect("reader").stdout).expect("reader summary");
    let counts: Vec<i64> = report["counts"].as_array().expect("counts").iter().filter_map(Value::as_i64).collect();
    eprintln!("sync {elapsed:?}; Python reader {report}; {queries} postmark-elt queries");
    assert!(
        elapsed > Duration::from_secs(3),
        "the sync must last long enough to be read during it: {elapsed:?}"
    );
    assert!(queries >= 5, "{queries} queries during the sync");
    assert!(report["ok"].as_i64() >= Some(10), "the Python reader rarely got in: {report}");
    assert!(
        counts.iter().any(|&n| n > 0 && n < MESSAGES),
        "the reader saw a commit of the sync before its end: {report}"
    );
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "counts only grow: {counts:?}");
    let (rows, distinct, _) = duckdb_ids(&db);
    assert_eq!((rows, distinct), (MESSAGES, MESSAGES));
}

/// A reader that keeps the file open: the sync waits for it while it is shorter than
/// `lock_timeout_seconds`; past it, the sync fails with exit 8 naming the holder, commits
/// nothing, and the next sync loads everything once.
#[test]
fn a_sync_waits_for_a_reader_then_gives_up_cleanly() {
    let env = slow_env(1_000);
    let python = python_tool("dbt");
    let db = env.path("postmark.duckdb");
    let start = two_days_ago() - chrono::Duration::days(5);
    // New mail arrives just before each sync.
    let recent = |seed: u64, count: usize| {
        let now = chrono::Utc::now();
        generate::between(seed, "outbound", now - chrono::Duration::minutes(20), now - chrono::Duration::minutes(1), count)
    };
    let cfg = env.config(start, json!({"lock_timeout_seconds": 30}));
    assert_ok(&env.sync_streams(&cfg, "messages_outbound", &[]));
    let hold = |seconds: &str| {
        let mut holder = Command::new(&python)
            .args(["-c", HOLDER])
            .arg(&db)
            .arg(seconds)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python holder");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().expect("stdout")), &mut line).expect("read");
        assert_eq!(line.trim(), "open");
        holder
    };

    env.fake.add_messages(recent(8, 200));
    let mut holder = hold("3");
    let began = Instant::now();
    let out = env.sync_streams(&cfg, "messages_outbound", &[]);
    assert_ok(&out);
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "the sync waited for the reader: {:?}",
        began.elapsed()
    );
    holder.wait().expect("holder");
    assert_eq!(duckdb_ids(&db).1, 1_200);

    env.fake.add_messages(recent(9, 300));
    let mut holder = hold("60");
    let impatient = env.config(start, json!({"lock_timeout_seconds": 1}));
    let out = env.sync_streams(&impatient, "messages_outbound", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(
        stderr.contains(&format!("held open by process {}", holder.id())) && stderr.contains("lock_timeout_seconds"),
        "{stderr}"
    );
    holder.kill().expect("kill holder");
    holder.wait().expect("holder");
    assert_eq!(duckdb_ids(&db).1, 1_200, "the failed sync committed nothing");
    assert_ok(&env.sync_streams(&cfg, "messages_outbound", &[]));
    let (rows, distinct, ids) = duckdb_ids(&db);
    assert_eq!((rows, distinct), (1_500, 1_500));
    assert_same(&ids, &env.truth(), "messages after the reader let go");
}
