//! Helpers for tests that run the real binary against the fake Postmark server.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use chrono::{DateTime, Utc};
use fake_postmark::{FakeConfig, FakePostmark, Message, default_streams};
use serde_json::{Value, json};
use tempfile::TempDir;

pub mod data;
pub mod receiver;

pub const BIN: &str = env!("CARGO_BIN_EXE_postmark-elt");
/// `postmark-elt airbyte`, under the name Airbyte's tools run.
pub const SOURCE_BIN: &str = env!("CARGO_BIN_EXE_source-postmark");

pub struct Env {
    pub dir: TempDir,
    pub fake: FakePostmark,
}

impl Env {
    pub fn new(messages: Vec<Message>) -> Env {
        Self::with_config(FakeConfig::default(), messages)
    }

    pub fn with_config(config: FakeConfig, messages: Vec<Message>) -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            fake: FakePostmark::start(config, default_streams(), messages),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config (mode 600) for the fake, with fast retries and no settle margin (the
    /// plain fake indexes mail at once; tests of late indexing set `settle_seconds`); `extra`
    /// overrides keys.
    pub fn config(&self, start: DateTime<Utc>, extra: Value) -> PathBuf {
        let mut cfg = json!({
            "server_token": self.fake.token(),
            "base_url": self.fake.base_url(),
            "start_date": start.to_rfc3339(),
            "retry_initial_delay_ms": 5,
            "request_timeout_seconds": 10,
            "settle_seconds": 0,
        });
        if let (Some(base), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                base.insert(k.clone(), v.clone());
            }
        }
        let path = self.path("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&cfg).expect("json")).expect("write config");
        set_private(&path);
        path
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run postmark-elt")
    }

    /// The binary with `args`, run in the test's directory without the caller's token and
    /// log filter: every test starts it the same way.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("POSTMARK_SERVER_TOKEN")
            .env_remove("RUST_LOG");
        cmd
    }

    /// `sync --config CFG --streams STREAMS` and `extra` arguments.
    pub fn sync_streams(&self, cfg: &Path, streams: &str, extra: &[&str]) -> Output {
        let mut args = vec!["sync", "--config", cfg.to_str().unwrap_or_default(), "--streams", streams];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postmark-elt")
    }

    /// IDs of every message the API holds, the ground truth.
    pub fn truth(&self) -> HashSet<String> {
        self.fake.visible_messages().into_iter().map(|m| m.id).collect()
    }
}

#[cfg(unix)]
pub fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

pub fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
}

/// (rows, distinct message ids, the ids) of messages_outbound in a DuckDB file.
pub fn duckdb_ids(path: &Path) -> (i64, i64, HashSet<String>) {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let (rows, distinct): (i64, i64) = conn
        .query_row("SELECT count(*), count(DISTINCT message_id) FROM messages_outbound", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("count");
    let mut stmt = conn.prepare("SELECT message_id FROM messages_outbound").expect("prepare");
    let ids = stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").map(|r| r.expect("row")).collect();
    (rows, distinct, ids)
}

pub fn duckdb_state(path: &Path) -> Value {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let text: String = conn
        .query_row("SELECT state FROM _postmark_elt_state WHERE id = 1", [], |r| r.get(0))
        .expect("state row");
    serde_json::from_str(&text).expect("state json")
}

/// Rows of a query, each row's columns joined with '|', as a set.
pub fn rows(path: &Path, sql: &str) -> HashSet<String> {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let mut stmt = conn.prepare(&format!("SELECT concat_ws('|', *COLUMNS(*)) FROM ({sql})")).expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").map(|r| r.expect("row")).collect()
}

pub fn scalar(path: &Path, sql: &str) -> i64 {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every value of every table rendered as text, to search for secrets.
pub fn dump_all(path: &Path) -> String {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let mut names = conn.prepare("SELECT table_name FROM information_schema.tables").expect("prepare");
    let tables: Vec<String> = names.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    let mut out = String::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).expect("prepare");
        let batches: Vec<arrow::array::RecordBatch> = stmt.query_arrow([]).expect("query").collect();
        out.push_str(&arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string());
    }
    out
}

/// The Eastern instant that starts `days_ago` days before today.
pub fn eastern_days_ago(days_ago: i64) -> DateTime<Utc> {
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    fake_postmark::generate::eastern_day(today - chrono::Duration::days(days_ago)).0
}

/// Set equality with a short message: sizes and a few differences each way.
pub fn assert_same(loaded: &HashSet<String>, expected: &HashSet<String>, what: &str) {
    if loaded != expected {
        let missing: Vec<_> = expected.difference(loaded).take(3).collect();
        let extra: Vec<_> = loaded.difference(expected).take(3).collect();
        panic!(
            "{what}: loaded {} rows, expected {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            loaded.len(),
            expected.len()
        );
    }
}

/// Values of one string column across every Parquet file of a stream folder (hive partitions).
pub fn parquet_strings(dir: &Path, stream: &str, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for path in parquet_files(&dir.join(stream)) {
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet footer")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let col = postmark_elt::streams::extract::string_column(&batch, column).expect("column");
            out.extend(col.iter().map(|v| v.unwrap_or_default().to_string()));
        }
    }
    out
}

/// Every `.parquet` file under `dir`, at any depth.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files
}

/// Kills `child` (SIGKILL) as soon as `ready()` holds (checked every 10 ms), or after `timeout_ms`.
/// Returns whether it was still running when killed.
pub fn kill_when(child: &mut Child, timeout_ms: u64, mut ready: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(timeout_ms) && !ready() {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let running = child.try_wait().expect("wait").is_none();
    child.kill().ok();
    child.wait().ok();
    running
}

/// `count` outbound messages of yesterday (US-Eastern).
pub fn yesterday_messages(count: usize) -> Vec<fake_postmark::Message> {
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    fake_postmark::generate::day(42, "outbound", today - chrono::Duration::days(1), count)
}

pub fn two_days_ago() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::days(2)
}

/// The python of the venv with pyarrow that `scripts/python-tools.sh` installs (once).
pub fn python_with_pyarrow() -> PathBuf {
    python_tool("pyarrow")
}

/// The python of a tool's venv (`pyarrow`, `airbyte` or `meltano`), which
/// scripts/python-tools.sh installs from PyPI on first use.
pub fn python_tool(tool: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python-tools.sh");
    let out = Command::new("bash").arg(&script).arg(tool).output().expect("run scripts/python-tools.sh");
    assert!(
        out.status.success(),
        "{tool} is needed (scripts/python-tools.sh {tool} installs it with pip): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs a Python script with `args`; panics with its output when it fails.
pub fn run_python(python: &Path, dir: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .env("DO_NOT_TRACK", "1")
        .output()
        .expect("run python");
    assert!(out.status.success(), "python failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of a stream folder as pyarrow's dataset reader (hive partitions) counts them, as Spark
/// and pandas users read it; `Err` with pyarrow's message when it cannot read the folder.
pub fn pyarrow_rows(python: &Path, dir: &Path) -> Result<u64, String> {
    let code = "import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1], format='parquet', partitioning='hive').count_rows())";
    let out = Command::new(python).args(["-c", code]).arg(dir).output().expect("run python");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("{e}"))
}

/// The first outbound-messages request asked from `at` (US-Eastern, to the minute).
pub fn assert_first_fromdate(env: &Env, at: DateTime<Utc>) {
    let first = env
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/messages/outbound")
        .expect("a messages request");
    let expected = postmark_elt::streams::window::eastern_wall_clock(at).format("%Y-%m-%dT%H:%M").to_string();
    let from = first.param("fromdate").unwrap_or_default();
    assert!(from.starts_with(&expected), "fromdate {from}, expected {expected}");
}
