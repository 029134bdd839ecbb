//! PostgreSQL through the Singer loader most teams use: the tap's output loaded by
//! meltanolabs-target-postgres (PyPI), directly and under Meltano, into a PostgreSQL server
//! (Debian's `postgresql`) that this test starts in a temporary data directory on a free port.
//! The server's time zone is New York, not UTC, as a team's server may be.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use chrono_tz::America::New_York;
use common::{BIN, Env, assert_ok, eastern_days_ago, python_tool, text};
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// A PostgreSQL server of its own, stopped (and its data removed) when dropped.
struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    /// `runuser -u postgres --` when running as root (initdb refuses root).
    as_user: Vec<String>,
}

fn postgres_bin() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        let mut dirs: Vec<PathBuf> = versions
            .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    });
    found.expect("PostgreSQL's server is needed (scripts/test.sh installs it: apt-get install postgresql)")
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    out
}

impl Postgres {
    fn start() -> Postgres {
        let bin = postgres_bin();
        let data = tempfile::tempdir().expect("temp dir");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let as_user: Vec<String> = if root {
            run(Command::new("chown").args(["-R", "postgres"]).arg(data.path()));
            ["runuser", "-u", "postgres", "--"].iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let pg = Postgres { bin, data, port, as_user };
        let dir = pg.data.path().join("db");
        run(pg.command("initdb").args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"]).arg(&dir));
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c timezone=America/New_York",
            pg.data.path().display()
        );
        run(pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&dir)
            .arg("-l")
            .arg(pg.data.path().join("log"))
            .args(["-o", &options, "-w", "start"]));
        pg
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match self.as_user.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// One value per line of `sql`'s result (psql, unaligned, tuples only).
    fn query(&self, sql: &str) -> Vec<String> {
        let out = run(self.command("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-AtXc",
            sql,
        ]));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    fn one(&self, sql: &str) -> String {
        self.query(sql).into_iter().next().unwrap_or_default()
    }

    /// target-postgres's config for `schema`.
    fn target_config(&self, schema: &str) -> Value {
        json!({"host": "127.0.0.1", "port": self.port, "user": "postgres", "password": "unused", "database": "postgres", "default_target_schema": schema})
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let dir = self.data.path().join("db");
        self.command("pg_ctl").arg("-D").arg(&dir).args(["-m", "immediate", "stop"]).output().ok();
    }
}

/// 3 days of 3,000 messages and their events, served with a little latency so a sync can be
/// killed midway.
fn fake() -> Env {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let messages = (1..=3)
        .flat_map(|d| generate::day(d as u64, "outbound", today - ChronoDuration::days(d), 3_000))
        .collect();
    let config = FakeConfig {
        latency: Duration::from_millis(10),
        ..FakeConfig::default()
    };
    let env = Env::with_config(config, messages);
    env.fake.generate_events(3);
    env
}

/// The tap (`postmark-elt --config C [--state S]`) piped into target-postgres, the bytes
/// relayed as they come; with `kill_after_states`, the tap is killed (SIGKILL) once it has
/// written that many STATE messages. Returns the last state the target emitted (it emits the
/// latest state it was given once the rows before it are in the database), read as a Singer
/// runner does: the last line of its stdout.
fn tap_into_target(env: &Env, target: &Path, target_config: &Path, state: Option<&Value>, kill_after_states: Option<usize>) -> Option<Value> {
    let cfg = env.path("config.json");
    let mut tap = env.command(&["--config", cfg.to_str().expect("UTF-8 path")]);
    if let Some(state) = state {
        std::fs::write(env.path("state.json"), state.to_string()).expect("state file");
        tap.arg("--state").arg(env.path("state.json"));
    }
    env.fake.clear_requests();
    let mut tap: Child = tap.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn the tap");
    let mut records = tap.stdout.take().expect("tap stdout");
    let mut loader = Command::new(target)
        .arg("--config")
        .arg(target_config)
        .env("PGTZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn target-postgres");
    let mut to_target = loader.stdin.take().expect("target stdin");
    let states = Arc::new(AtomicUsize::new(0));
    let relay = {
        let states = states.clone();
        std::thread::spawn(move || {
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                let n = match records.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                const STATE: &[u8] = b"\"type\":\"STATE\"";
                let seen = chunk[..n].windows(STATE.len()).filter(|w| *w == STATE).count();
                states.fetch_add(seen, Ordering::SeqCst);
                if to_target.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
        })
    };
    match kill_after_states {
        Some(n) => assert!(
            common::kill_when(&mut tap, 60_000, || states.load(Ordering::SeqCst) >= n),
            "the tap ended before it was killed"
        ),
        None => assert!(tap.wait().expect("wait for the tap").success(), "the tap failed"),
    }
    relay.join().expect("relay");
    let out = loader.wait_with_output().expect("wait for target-postgres");
    assert!(out.status.success(), "target-postgres failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
}

/// Rows and distinct keys of every table of `schema`, by table.
fn counts(pg: &Postgres, schema: &str, keys: &HashMap<String, Vec<String>>) -> HashMap<String, (i64, i64)> {
    let mut found = HashMap::new();
    for table in pg.query(&format!("SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'")) {
        let key = keys.get(&table).unwrap_or_else(|| panic!("a table for no stream: {table}"));
        let key = key.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
        let row = pg.one(&format!("SELECT count(*) || ',' || count(DISTINCT ({key})) FROM {schema}.\"{table}\""));
        let (rows, distinct) = row.split_once(',').expect("two counts");
        found.insert(table, (rows.parse().expect("count"), distinct.parse().expect("count")));
    }
    found
}

/// The default streams' keys, from the tap's catalog.
fn stream_keys(env: &Env) -> HashMap<String, Vec<String>> {
    let cfg = env.path("config.json");
    let out = env
        .command(&["--config", cfg.to_str().expect("UTF-8 path"), "--discover"])
        .output()
        .expect("discover");
    assert_ok(&out);
    let catalog: Value = serde_json::from_slice(&out.stdout).expect("catalog JSON");
    let streams = catalog["streams"].as_array().expect("streams");
    streams
        .iter()
        .map(|s| {
            let keys = s["key_properties"]
                .as_array()
                .expect("key_properties")
                .iter()
                .map(|k| k.as_str().unwrap_or_default().to_string());
            (s["tap_stream_id"].as_str().unwrap_or_default().to_string(), keys.collect())
        })
        .collect()
}

/// What the DuckDB destination holds for the same API (the reference): rows per stream
/// table that has any.
fn duckdb_counts(env: &Env) -> HashMap<String, i64> {
    let cfg = env.path("config.json");
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap_or_default(), "--path", "reference.duckdb"]));
    let db = env.path("reference.duckdb");
    let tables = common::rows(
        &db,
        "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_%' ESCAPE '\\'",
    );
    tables
        .into_iter()
        .map(|t| {
            let n = common::scalar(&db, &format!("SELECT count(*) FROM \"{t}\""));
            (t, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn target_postgres_loads_every_stream_once_directly_and_under_meltano() {
    let target = python_tool("postgres").with_file_name("target-postgres");
    let meltano = python_tool("meltano").with_file_name("meltano");
    let pg = Postgres::start();
    let env = fake();
    env.config(eastern_days_ago(4), json!({"max_concurrency": 2}));
    let keys = stream_keys(&env);

    // Directly: killed twice mid-sync, each rerun from the state the target emitted, then a
    // complete run, and an incremental one below.
    let target_config = env.path("target-postgres.json");
    std::fs::write(&target_config, pg.target_config("postmark").to_string()).expect("target config");
    common::set_private(&target_config);
    let started = Instant::now();
    // Killed after its 3rd STATE, then after the 2nd of the rerun: the target drains what it
    // was given (the tap's writes are whole lines, so no half line stops it) and emits the
    // latest state, which the next run starts from.
    let state = tap_into_target(&env, &target, &target_config, None, Some(3));
    assert!(state.is_some(), "the target emitted no state after the tap was killed");
    let mut state = tap_into_target(&env, &target, &target_config, state.as_ref(), Some(2)).or(state);
    state = tap_into_target(&env, &target, &target_config, state.as_ref(), None).or(state);
    let first = started.elapsed();
    let loaded = counts(&pg, "postmark", &keys);
    let reference = duckdb_counts(&env);
    assert!(reference.len() >= 20, "the reference holds too few streams: {reference:?}");
    for (table, rows) in &reference {
        assert_eq!(
            loaded.get(table),
            Some(&(*rows, *rows)),
            "{table}: rows (and distinct keys) differ from the DuckDB destination's"
        );
    }
    for (table, (rows, _)) in &loaded {
        assert!(*rows == 0 || reference.contains_key(table), "{table} is not in the DuckDB destination");
    }
    assert_eq!(loaded["messages_outbound"].0 as usize, env.truth().len());
    assert_eq!(loaded["messages_opens"].0 as usize, env.fake.visible(0).opens.len());
    let ids: std::collections::HashSet<String> = pg.query("SELECT message_id FROM postmark.messages_outbound").into_iter().collect();
    assert_eq!(ids, env.truth());

    // Types a Postgres user expects: lists and maps as jsonb/arrays, counters as integers, and
    // instants that are UTC although the server's zone is New York (PGTZ=UTC for the target).
    let types: HashMap<String, String> = pg
        .query("SELECT table_name || '.' || column_name || '=' || udt_name FROM information_schema.columns WHERE table_schema = 'postmark'")
        .into_iter()
        .filter_map(|l| l.split_once('=').map(|(c, t)| (c.to_string(), t.to_string())))
        .collect();
    for (column, udt) in [
        ("messages_outbound.metadata", "jsonb"),
        ("messages_outbound.to", "_jsonb"),
        ("messages_outbound.recipients", "_text"),
        ("messages_outbound.received_at", "timestamp"),
        ("stats_outbound_overview.sent", "int8"),
        ("stats_outbound_overview.date", "date"),
        ("bounces.bounced_at", "timestamp"),
    ] {
        assert_eq!(types.get(column).map(String::as_str), Some(udt), "{column}");
    }
    let newest = env.fake.visible_messages().iter().map(|m| m.received_at).max().expect("messages");
    let stored = pg.one("SELECT to_char(max(received_at), 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM postmark.messages_outbound");
    assert_eq!(stored, newest.format("%Y-%m-%dT%H:%M:%S").to_string(), "received_at is not UTC");
    // The README's recipe: timestamptz once, and the next runs keep it.
    pg.query("ALTER TABLE postmark.messages_outbound ALTER COLUMN received_at TYPE timestamptz USING received_at AT TIME ZONE 'UTC'");
    tap_into_target(&env, &target, &target_config, state.as_ref(), None);
    assert_eq!(pg.one("SELECT udt_name FROM information_schema.columns WHERE table_schema = 'postmark' AND table_name = 'messages_outbound' AND column_name = 'received_at'"), "timestamptz");
    let after = counts(&pg, "postmark", &keys);
    assert_eq!(after, loaded, "the incremental run doubled or lost rows");
    let stored = pg.one("SELECT to_char(max(received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM postmark.messages_outbound");
    assert_eq!(stored, newest.format("%Y-%m-%dT%H:%M:%S").to_string());
    eprintln!(
        "direct: 3 runs (2 killed) loaded {} rows in {:.1} s",
        loaded.values().map(|c| c.0).sum::<i64>(),
        first.as_secs_f64()
    );

    // Under Meltano: the tap and target-postgres as plugins, twice; the second run continues
    // from the state Meltano saved and loads nothing twice.
    let project = env.path("meltano");
    std::fs::create_dir_all(&project).expect("project dir");
    let yml = format!(
        "version: 1\ndefault_environment: dev\nproject_id: postmark-elt-postgres\nenvironments:\n  - name: dev\nplugins:\n  extractors:\n    - name: tap-postmark\n      namespace: tap_postmark\n      executable: {BIN}\n      capabilities: [catalog, discover, state, about]\n      settings:\n        - {{name: server_token, kind: password}}\n        - {{name: start_date, kind: date_iso8601}}\n        - {{name: base_url, kind: string}}\n        - {{name: settle_seconds, kind: integer}}\n        - {{name: retry_initial_delay_ms, kind: integer}}\n      config:\n        start_date: \"{}\"\n        base_url: {}\n        settle_seconds: 0\n        retry_initial_delay_ms: 5\n  loaders:\n    - name: target-postgres\n      namespace: target_postgres\n      executable: {}\n      settings:\n        - {{name: host}}\n        - {{name: port, kind: integer}}\n        - {{name: user}}\n        - {{name: password, kind: password}}\n        - {{name: database}}\n        - {{name: default_target_schema}}\n      config:\n        host: 127.0.0.1\n        port: {}\n        user: postgres\n        password: unused\n        database: postgres\n        default_target_schema: meltano\n",
        eastern_days_ago(4).format("%Y-%m-%d"),
        env.fake.base_url(),
        target.display(),
        pg.port
    );
    std::fs::write(project.join("meltano.yml"), yml).expect("meltano.yml");
    let meltano_run = || {
        run(Command::new(&meltano)
            .args(["run", "tap-postmark", "target-postgres"])
            .current_dir(&project)
            .env("TAP_POSTMARK_SERVER_TOKEN", env.fake.token())
            .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("PGTZ", "UTC"))
    };
    meltano_run();
    // Meltano selects every stream of the catalog (`*.*`), also those off by default
    // (message_events, bounce_dumps): the default streams hold what the direct load holds,
    // and every table each key once.
    let through_meltano = counts(&pg, "meltano", &keys);
    for (table, count) in &loaded {
        assert_eq!(through_meltano.get(table), Some(count), "{table}: Meltano's load differs from the direct one");
    }
    for (table, (rows, distinct)) in &through_meltano {
        assert_eq!(rows, distinct, "{table}: a key twice under Meltano");
    }
    env.fake.clear_requests();
    let second = meltano_run();
    assert!(text(&second).contains("Reading state from"), "{}", text(&second));
    let from = env
        .fake
        .requests()
        .iter()
        .find(|r| r.path == "/messages/outbound")
        .and_then(|r| r.param("fromdate").map(String::from));
    let start = eastern_days_ago(4).with_timezone(&New_York).format("%Y-%m-%dT%H:%M:%S").to_string();
    assert!(
        from.as_deref().is_some_and(|f| f > start.as_str()),
        "the second run started at start_date: {from:?}"
    );
    assert_eq!(counts(&pg, "meltano", &keys), through_meltano, "the second Meltano run doubled or lost rows");
}
