//! The command-line contract: verbs, exit codes, messages, destinations and locking.

mod common;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use chrono_tz::America::New_York;
use common::{BIN, Env, assert_ok, duckdb_ids, set_private, text, two_days_ago, yesterday_messages};
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// `spec` prints the config's JSON Schema with every documented key.
#[test]
fn spec_prints_the_config_schema() {
    let out = std::process::Command::new(BIN).arg("spec").output().unwrap();
    assert_ok(&out);
    let spec: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "server_token",
        "postmark_server_token",
        "account_token",
        "start_date",
        "end_date",
        "base_url",
        "message_streams",
        "lookback_days",
        "page_size",
        "max_concurrency",
    ] {
        assert!(spec["properties"][key].is_object(), "spec lacks {key}");
    }
    assert_eq!(spec["properties"]["server_token"]["secret"], true);
}

/// `check` names the server; a wrong token exits 4 with Postmark's error and never echoes it.
#[test]
fn check_reports_the_server_or_a_bad_token() {
    let env = Env::new(Vec::new());
    let cfg = env.config(two_days_ago(), json!({}));
    let out = env.run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK: server Fake Shop Production");

    let wrong = "wrong-token-d5e3f1c9";
    let cfg = env.config(two_days_ago(), json!({"server_token": wrong}));
    for verb in ["check", "sync"] {
        let out = env.run(&[verb, "--config", cfg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(4), "{verb}: {}", text(&out));
        let all = text(&out);
        assert!(
            all.contains("HTTP 401") && all.contains("ErrorCode 10") && all.contains("server_token"),
            "{all}"
        );
        assert!(!all.contains(wrong), "the token leaked: {all}");
    }
}

/// Bad config values exit 3 with one line naming the key and the fix.
#[test]
fn bad_config_exits_3_naming_the_key() {
    let env = Env::new(Vec::new());
    let cases = [
        (json!({"start_date": null}), "`start_date` is missing"),
        (json!({"start_date": "2999-01-01"}), "in the future"),
        (json!({"page_size": 1000}), "`page_size`"),
        (json!({"base_url": "postmark"}), "`base_url`"),
    ];
    for (extra, want) in cases {
        let cfg = env.config(two_days_ago(), extra.clone());
        let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{extra}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.lines().last().unwrap_or_default().contains(want), "{extra}: {stderr}");
    }
    let out = env.run(&["sync", "--config", "does-not-exist.json"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

/// A corrupt --state file and a catalog with unknown streams are refused with exit 9.
#[test]
fn bad_state_or_catalog_exits_9() {
    let env = Env::new(yesterday_messages(10));
    let cfg = env.config(two_days_ago(), json!({}));
    std::fs::write(env.path("state.json"), "{not json").unwrap();
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--state", "state.json"]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("state.json"));
    std::fs::write(env.path("cat.json"), r#"{"streams":[{"tap_stream_id":"emails","selected":true}]}"#).unwrap();
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "cat.json"]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`emails`"));
    assert!(!env.path("postmark.duckdb").exists() || duckdb_ids(&env.path("postmark.duckdb")).0 == 0);
}

/// `discover` prints the catalog shipped in the repository; a catalog deselecting everything
/// syncs nothing.
#[test]
fn discover_matches_the_shipped_catalog_and_selection_works() {
    let env = Env::new(yesterday_messages(50));
    let cfg = env.config(two_days_ago(), json!({}));
    let out = env.run(&["discover", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shipped: Value = serde_json::from_str(include_str!("../catalog.json")).unwrap();
    assert_eq!(printed, shipped);

    let mut none = shipped.clone();
    none["streams"][0]["metadata"][0]["metadata"]["selected"] = json!(false);
    std::fs::write(env.path("none.json"), none.to_string()).unwrap();
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "none.json"]));
    assert!(env.fake.requests().iter().all(|r| r.path != "/messages/outbound"));
}

/// Singer output: SCHEMA first, one RECORD per message, STATE after the records; nothing else
/// on stdout. The Singer tap invocation (no subcommand) gives the same.
#[test]
fn singer_output_follows_the_spec() {
    let env = Env::new(yesterday_messages(1_200));
    let cfg = env.config(two_days_ago(), json!({"message_streams": ["outbound"]}));
    for args in [
        vec!["sync", "--config", cfg.to_str().unwrap(), "--dest", "singer"],
        vec!["--config", cfg.to_str().unwrap()],
    ] {
        let out = env.run(&args);
        assert_ok(&out);
        let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(lines[0]["type"], "SCHEMA");
        assert_eq!(lines[0]["key_properties"], json!(["message_id"]));
        // Every RECORD follows the SCHEMA of its stream.
        let mut announced = std::collections::HashSet::new();
        for l in &lines {
            match l["type"].as_str().unwrap() {
                "SCHEMA" => {
                    announced.insert(l["stream"].as_str().unwrap().to_string());
                }
                "RECORD" => assert!(announced.contains(l["stream"].as_str().unwrap()), "RECORD before SCHEMA: {l}"),
                _ => {}
            }
        }
        let records: Vec<&Value> = lines.iter().filter(|l| l["type"] == "RECORD" && l["stream"] == "messages_outbound").collect();
        assert_eq!(records.len(), 1_200);
        assert!(records.iter().all(|r| r["time_extracted"].is_string()));
        assert_eq!(lines.last().unwrap()["type"], "STATE");
        let last_record = lines.iter().rposition(|l| l["type"] == "RECORD").unwrap();
        assert!(lines[last_record..].iter().any(|l| l["type"] == "STATE"));
        assert!(lines.iter().all(|l| ["SCHEMA", "RECORD", "STATE"].contains(&l["type"].as_str().unwrap())));
        let ids: std::collections::HashSet<String> = records.iter().map(|r| r["record"]["message_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, env.truth());
    }
}

/// Parquet: two runs leave one row per message in date partitions, with the state beside them.
#[test]
fn parquet_destination_two_runs() {
    let env = Env::new(yesterday_messages(2_000));
    let cfg = env.config(two_days_ago(), json!({}));
    for _ in 0..2 {
        assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap(), "--dest", "parquet", "--path", "pq"]));
    }
    let mut ids = Vec::new();
    for day in std::fs::read_dir(env.path("pq/messages_outbound")).unwrap() {
        let day = day.unwrap().path();
        assert!(day.file_name().unwrap().to_str().unwrap().starts_with("date="));
        for file in std::fs::read_dir(&day).unwrap() {
            let file = std::fs::File::open(file.unwrap().path()).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let col = postmark_elt::streams::extract::string_column(&batch, "message_id").unwrap();
                ids.extend(col.iter().map(|v| v.unwrap().to_string()));
            }
        }
    }
    let unique: std::collections::HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "duplicates in parquet");
    assert_eq!(unique, env.truth());
    let state: Value = serde_json::from_str(&std::fs::read_to_string(env.path("pq/_state.json")).unwrap()).unwrap();
    assert!(state["bookmarks"]["messages_outbound"]["outbound"].is_object());
}

/// A second sync on a DuckDB file in use stops with "locked" (exit 8); the first completes.
#[test]
fn concurrent_runs_are_refused() {
    let config = FakeConfig {
        latency: Duration::from_millis(150),
        ..FakeConfig::default()
    };
    let env = Env::with_config(config, yesterday_messages(6_000));
    let cfg = env.config(two_days_ago(), json!({"message_streams": ["outbound"], "max_concurrency": 1}));
    let first = env.spawn(&["sync", "--config", cfg.to_str().unwrap(), "--progress-seconds", "1"]);
    std::thread::sleep(Duration::from_millis(800));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked by another run"));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    // A run of more than a second printed progress lines.
    assert!(String::from_utf8_lossy(&first.stderr).contains("Progress."), "{}", text(&first));
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct);
    assert_eq!(ids, env.truth());
}

/// kill -9 in the middle of a sync, then a rerun: nothing missing, nothing twice.
#[test]
fn killed_sync_resumes_exactly() {
    // Slow enough (about 50 pages, 5 s), and commits frequent enough (every second), that the
    // sink commits before a kill.
    let config = FakeConfig {
        latency: Duration::from_millis(200),
        ..FakeConfig::default()
    };
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=4 {
        messages.extend(generate::day(d, "outbound", today - ChronoDuration::days(d as i64), 6_000));
    }
    let env = Env::with_config(config, messages);
    let cfg = env.config(
        Utc::now() - ChronoDuration::days(5),
        json!({"message_streams": ["outbound"], "max_concurrency": 2, "commit_interval_seconds": 1}),
    );
    let mut partial_seen = Vec::new();
    // Killed after 15, then after 30 more page requests (mid-run, whatever the machine's
    // speed), and no sooner than 2.5 s after the start: durable commits fall due a second apart
    // and run beside the reads, so by then one that holds rows has landed.
    for pages in [15, 30] {
        env.fake.clear_requests();
        let started = std::time::Instant::now();
        let mut child = env.spawn(&["sync", "--config", cfg.to_str().unwrap()]);
        common::kill_when(&mut child, 30_000, || {
            started.elapsed() >= Duration::from_millis(2_500) && env.fake.requests().iter().filter(|r| r.path == "/messages/outbound").count() >= pages
        });
        if env.path("postmark.duckdb").exists() {
            partial_seen.push(duckdb_ids(&env.path("postmark.duckdb")).0);
        }
    }
    // The test proves something only if a kill landed between two commits.
    let total = env.truth().len() as i64;
    assert!(
        partial_seen.iter().any(|&n| n > 0 && n < total),
        "no kill interrupted a sync: {partial_seen:?} of {total}"
    );
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct, "duplicates after a crash");
    assert_eq!(ids, env.truth(), "rows lost after a crash");
}

/// The token from the environment works when the file has none; nothing prints it.
#[test]
fn token_from_environment_is_used_and_never_printed() {
    let env = Env::new(yesterday_messages(5));
    let path = env.path("env-config.json");
    std::fs::write(
        &path,
        json!({"base_url": env.fake.base_url(), "start_date": two_days_ago().to_rfc3339(), "message_streams": ["outbound"]}).to_string(),
    )
    .unwrap();
    set_private(&path);
    let out = std::process::Command::new(BIN)
        .args(["sync", "--config", path.to_str().unwrap(), "-v"])
        .current_dir(env.dir.path())
        .env("POSTMARK_SERVER_TOKEN", env.fake.token())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(!text(&out).contains(env.fake.token()));
    assert_eq!(duckdb_ids(&env.path("postmark.duckdb")).0, 5);
}

/// `--streams` picks streams without a catalog, `--summary-json` writes
/// the run summary on success and on failure, `--log-format json` writes JSON log lines, and
/// `completions` prints a script.
#[test]
fn streams_flag_summary_json_json_logs_and_completions() {
    let env = Env::new(yesterday_messages(700));
    let cfg = env.config(two_days_ago(), json!({"message_streams": ["outbound"]}));
    let out = env.run(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--streams",
        "messages_outbound,bounces",
        "--summary-json",
        "s.json",
        "--log-format",
        "json",
    ]);
    assert_ok(&out);
    let paths: std::collections::HashSet<String> = env.fake.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.contains("/bounces") && paths.contains("/messages/outbound") && !paths.contains("/templates"),
        "{paths:?}"
    );
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(env.path("s.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["exit_code"], 0);
    let streams = summary["streams"].as_array().unwrap();
    let messages = streams.iter().find(|s| s["stream"] == "messages_outbound").unwrap();
    assert_eq!(messages["records"], 700);
    assert!(messages["bookmark_after"].is_string());
    assert!(summary["requests"].as_u64().unwrap() > 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json_lines = stderr.lines().filter(|l| l.starts_with('{')).count();
    assert!(
        json_lines > 0 && stderr.lines().filter(|l| l.starts_with('{')).all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{stderr}"
    );

    // A failed run writes its summary too.
    let out = env.run(&["sync", "--config", "missing.json", "--summary-json", "f.json"]);
    assert_eq!(out.status.code(), Some(3));
    let failed: Value = serde_json::from_str(&std::fs::read_to_string(env.path("f.json")).unwrap()).unwrap();
    assert_eq!((failed["status"].as_str(), failed["exit_code"].as_u64()), (Some("failed"), Some(3)));
    assert!(failed["error"].as_str().unwrap().contains("missing.json"));

    let out = env.run(&["completions", "bash"]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("postmark-elt"));
}
