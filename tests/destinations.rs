//! Parquet and Singer destinations: layout, incremental runs, crashes, and the Singer spec.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use chrono_tz::America::New_York;
use common::{BIN, Env, assert_ok, eastern_days_ago, parquet_strings};
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

fn days_of_mail(config: FakeConfig, per_day: usize) -> Env {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=3 {
        messages.extend(generate::day(d as u64, "outbound", today - ChronoDuration::days(d), per_day));
    }
    let env = Env::with_config(config, messages);
    env.fake.generate_events(3);
    env
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect()
}

/// Every Singer line is one message of the spec: SCHEMA before RECORDs, RECORDs valid against
/// their SCHEMA (types, date-times, required keys), STATE after the records it covers.
#[test]
fn singer_output_is_valid_line_by_line() {
    let env = days_of_mail(FakeConfig::default(), 600);
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--dest", "singer"]);
    assert_ok(&out);
    let lines = parse_lines(&out.stdout);
    let mut validators: HashMap<String, jsonschema::Validator> = HashMap::new();
    let mut records: HashMap<String, usize> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let stream = line["stream"].as_str().map(str::to_string);
        match line["type"].as_str() {
            Some("SCHEMA") => {
                let stream = stream.expect("SCHEMA has a stream");
                let schema = &line["schema"];
                for key in line["key_properties"].as_array().expect("key_properties") {
                    assert!(schema["properties"][key.as_str().unwrap()].is_object(), "{stream}: key {key} not in schema");
                }
                assert!(line["bookmark_properties"].is_array());
                let v = jsonschema::options().should_validate_formats(true).build(schema).expect("a valid JSON Schema");
                validators.insert(stream, v);
            }
            Some("RECORD") => {
                let stream = stream.expect("RECORD has a stream");
                let v = validators
                    .get(&stream)
                    .unwrap_or_else(|| panic!("line {i}: RECORD of {stream} before its SCHEMA"));
                if let Err(e) = v.validate(&line["record"]) {
                    panic!("line {i}: {stream} record does not match its schema: {e}\n{}", line["record"]);
                }
                chrono::DateTime::parse_from_rfc3339(line["time_extracted"].as_str().expect("time_extracted")).expect("RFC 3339");
                *records.entry(stream).or_default() += 1;
            }
            Some("STATE") => assert!(line["value"]["bookmarks"].is_object(), "line {i}: {line}"),
            other => panic!("line {i}: unknown message type {other:?}"),
        }
    }
    assert_eq!(lines.last().unwrap()["type"], "STATE", "the last line is not a STATE");
    assert_eq!(records["messages_outbound"], env.fake.visible_messages().len());
    assert_eq!(records["messages_opens"], env.fake.visible(0).opens.len());
    assert!(records.len() >= 20, "only {} streams had records", records.len());
}

/// A second Singer run started from the last STATE re-reads only the overlap, and the two runs
/// together hold every message.
#[test]
fn singer_second_run_from_state_is_incremental() {
    let env = days_of_mail(FakeConfig::default(), 400);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"]}));
    let out = env.run(&["--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    let lines = parse_lines(&out.stdout);
    let state = lines.iter().rev().find(|l| l["type"] == "STATE").unwrap()["value"].clone();
    std::fs::write(env.path("state.json"), state.to_string()).unwrap();
    let now = Utc::now();
    env.fake
        .add_messages(generate::between(8, "outbound", now - ChronoDuration::seconds(5), now, 0));
    std::thread::sleep(Duration::from_millis(1100));
    env.fake.add_messages(generate::between(9, "outbound", now, Utc::now(), 30));
    env.fake.clear_requests();
    let second = env.run(&["--config", cfg.to_str().unwrap(), "--state", "state.json"]);
    assert_ok(&second);
    let ids = |out: &std::process::Output| -> HashSet<String> {
        parse_lines(&out.stdout)
            .iter()
            .filter(|l| l["type"] == "RECORD" && l["stream"] == "messages_outbound")
            .map(|l| l["record"]["message_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (ids(&out), ids(&second));
    assert!(b.len() < 200, "the second run re-read {} messages", b.len());
    let all: HashSet<String> = a.union(&b).cloned().collect();
    assert_eq!(all, env.truth());
}

/// A Singer run killed mid-way, resumed from the last STATE it printed, loses nothing.
#[test]
fn singer_killed_then_resumed_loses_nothing() {
    let config = FakeConfig {
        latency: Duration::from_millis(15),
        ..FakeConfig::default()
    };
    let env = days_of_mail(config, 5_000);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"], "max_concurrency": 2}));
    std::fs::write(env.path("m.json"), r#"{"streams":[{"tap_stream_id":"messages_outbound","selected":true}]}"#).unwrap();
    let partial = std::fs::File::create(env.path("partial.jsonl")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["sync", "--config", cfg.to_str().unwrap(), "--dest", "singer", "--catalog", "m.json"])
        .current_dir(env.dir.path())
        .stdout(partial)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed right after its first STATE: records of later windows may be half written.
    let partial_path = env.path("partial.jsonl");
    let killed = common::kill_when(&mut child, 20_000, || {
        std::fs::read_to_string(&partial_path).is_ok_and(|t| t.contains("\"type\":\"STATE\""))
    });
    assert!(killed, "the sync ended before it could be killed");
    let first = std::fs::read(env.path("partial.jsonl")).unwrap();
    // A killed writer may leave half a line at the end: a Singer target stops there too.
    let text_out = String::from_utf8_lossy(&first);
    let complete: Vec<Value> = text_out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let state = complete.iter().rev().find(|l| l["type"] == "STATE").map(|l| l["value"].clone());
    let mut args = vec!["sync", "--config", cfg.to_str().unwrap(), "--dest", "singer", "--catalog", "m.json"];
    if let Some(s) = &state {
        std::fs::write(env.path("state.json"), s.to_string()).unwrap();
        args.extend(["--state", "state.json"]);
    }
    let second = env.run(&args);
    assert_ok(&second);
    let mut ids: HashSet<String> = HashSet::new();
    // What a target had committed: records up to the last STATE of the first run, then all of the second.
    let committed = complete.iter().rposition(|l| l["type"] == "STATE").map_or(0, |p| p + 1);
    for l in complete[..committed].iter().chain(parse_lines(&second.stdout).iter()) {
        if l["type"] == "RECORD" {
            ids.insert(l["record"]["message_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ids, env.truth());
    assert!(state.is_some(), "the first run printed no STATE before it was killed");
}

/// Parquet: killed twice mid-way, then completed; a reader sees every message once and no
/// unfinished file; the state sits beside the data.
#[test]
fn parquet_killed_then_resumed_exactly_once() {
    let config = FakeConfig {
        latency: Duration::from_millis(15),
        ..FakeConfig::default()
    };
    let env = days_of_mail(config, 5_000);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"], "max_concurrency": 2}));
    let args = ["sync", "--config", cfg.to_str().unwrap(), "--dest", "parquet", "--path", "lake"];
    for pages in [10, 25] {
        env.fake.clear_requests();
        let mut child = env.spawn(&args);
        common::kill_when(&mut child, 30_000, || env.fake.requests().len() >= pages);
    }
    assert_ok(&env.run(&args));
    let ids = parquet_strings(&env.path("lake"), "messages_outbound", "message_id");
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate rows visible to a reader");
    assert_eq!(unique, env.truth());
    let opens = parquet_strings(&env.path("lake"), "messages_opens", "message_id");
    assert_eq!(opens.len(), env.fake.visible(0).opens.len());
    assert!(env.path("lake/_state.json").exists());
    // Hive layout: stream/date=YYYY-MM-DD/part-NNNNNN.parquet only; a day this small is one
    // file (each flush's rows merged into the small last file), and no staging folder is left.
    for day in std::fs::read_dir(env.path("lake/messages_outbound")).unwrap() {
        let day = day.unwrap().path();
        let name = day.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("date=") && chrono::NaiveDate::parse_from_str(&name[5..], "%Y-%m-%d").is_ok(),
            "{name}"
        );
        let files: Vec<String> = std::fs::read_dir(&day)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_str().unwrap().to_string())
            .collect();
        assert_eq!(files, vec!["part-000001.parquet".to_string()], "{name}");
    }
    assert!(!env.path("lake/.staging").exists());
    // Second, incremental run: nothing new, nothing doubled.
    assert_ok(&env.run(&args));
    assert_eq!(parquet_strings(&env.path("lake"), "messages_outbound", "message_id").len(), unique.len());
}

/// `--state` overrides the state stored in the destination.
#[test]
fn state_flag_overrides_stored_state() {
    let env = days_of_mail(FakeConfig::default(), 200);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"]}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let from = Utc::now() - ChronoDuration::days(2);
    let state = json!({"bookmarks": {"messages_outbound": {"outbound": {"replication_key": "received_at", "replication_key_value": from.to_rfc3339()}}}});
    std::fs::write(env.path("older.json"), state.to_string()).unwrap();
    env.fake.clear_requests();
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--state", "older.json"]);
    assert_ok(&out);
    // The overlap (60 min) and the hour date-window reads start early.
    common::assert_first_fromdate(&env, from - ChronoDuration::minutes(120));
}

/// kill -9 at many points (seeded) of syncs into DuckDB and Parquet, each followed by a run that
/// resumes from the saved state: in the end, every message exactly once.
#[test]
fn many_kill_points_lose_and_double_nothing() {
    let config = FakeConfig {
        latency: Duration::from_millis(5),
        ..FakeConfig::default()
    };
    let env = days_of_mail(config, 4_000);
    // DuckDB commits every second (not the default 10 s), so that kills land between commits.
    let cfg = env.config(
        eastern_days_ago(4),
        json!({"message_streams": ["outbound"], "max_concurrency": 2, "commit_interval_seconds": 1}),
    );
    std::fs::write(
        env.path("m.json"),
        r#"{"streams":[{"tap_stream_id":"messages_outbound","selected":true},{"tap_stream_id":"messages_opens","selected":true}]}"#,
    )
    .unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let python = common::python_with_pyarrow();
    let folder = env.path("k-lake/messages_outbound");
    for (dest, path) in [("duckdb", "k.duckdb"), ("parquet", "k-lake")] {
        let args = ["sync", "--config", cfg.to_str().unwrap(), "--catalog", "m.json", "--dest", dest, "--path", path];
        for _ in 0..6 {
            let pages = 1 + (next() % 40) as usize;
            env.fake.clear_requests();
            let mut child = env.spawn(&args);
            common::kill_when(&mut child, 30_000, || env.fake.requests().len() >= pages);
            // A folder reader (pyarrow, like Spark) reads what a kill left: no temporary file
            // is mistaken for data.
            if dest == "parquet" && folder.exists() {
                common::pyarrow_rows(&python, &folder).unwrap_or_else(|e| panic!("pyarrow after a kill after {pages} pages: {e}"));
            }
        }
        assert_ok(&env.run(&args));
        let (rows, unique) = if dest == "duckdb" {
            let (rows, _, ids) = common::duckdb_ids(&env.path(path));
            (rows as usize, ids)
        } else {
            let ids = parquet_strings(&env.path(path), "messages_outbound", "message_id");
            (ids.len(), ids.into_iter().collect::<HashSet<String>>())
        };
        assert_eq!(rows, unique.len(), "{dest}: duplicates");
        assert_eq!(unique, env.truth(), "{dest}: missing rows");
        let opens = if dest == "duckdb" {
            common::scalar(
                &env.path(path),
                "SELECT count(*) - count(DISTINCT (message_id, recipient, received_at)) FROM messages_opens",
            )
        } else {
            0
        };
        assert_eq!(opens, 0, "{dest}: duplicate opens");
        if dest == "parquet" {
            assert_eq!(common::pyarrow_rows(&python, &folder), Ok(unique.len() as u64));
        }
    }
}
