//! The Airbyte protocol, run as Airbyte runs it: `source-postmark spec|check|discover|read`,
//! every stdout line checked against the protocol's own models (airbyte-protocol-models, from
//! PyPI), and PyAirbyte reading into its DuckDB cache with `local_executable`.

mod common;

use std::collections::HashSet;
use std::process::{Command, Output};

use chrono::Duration;
use common::*;
use fake_postmark::generate;
use serde_json::{Value, json};

fn source(env: &Env, args: &[&str]) -> Output {
    Command::new(SOURCE_BIN)
        .args(args)
        .current_dir(env.dir.path())
        .env_remove("POSTMARK_SERVER_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run source-postmark")
}

/// Each stdout line as JSON; panics naming a line that is not.
fn messages(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Every line of `outputs` validates as an AirbyteMessage of the protocol's pydantic models.
fn validate_with_protocol_models(env: &Env, outputs: &[&Output]) {
    let python = python_tool("airbyte");
    let lines: String = outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).collect();
    let path = env.path("messages.jsonl");
    std::fs::write(&path, lines).expect("write messages");
    let script = r#"
import sys
from airbyte_protocol.models import AirbyteMessage
n = 0
for number, line in enumerate(open(sys.argv[1]), 1):
    try:
        AirbyteMessage.model_validate_json(line)
    except Exception as e:
        sys.exit(f"line {number} is not an AirbyteMessage: {e}\n{line[:500]}")
    n += 1
print(n)
"#;
    let count: usize = run_python(&python, env.dir.path(), script, &[path.to_str().expect("path")])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(count, lines_in(outputs), "every line validated");
}

fn lines_in(outputs: &[&Output]) -> usize {
    outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).lines().count()).sum()
}

/// The configured catalog Airbyte would send: messages_outbound incremental without `to`,
/// bounces as full refresh, stats_outbound_overview incremental.
fn configured_catalog(catalog: &Value) -> Value {
    let streams: Vec<Value> = catalog["catalog"]["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| {
            let mut stream = s.clone();
            let mode = match s["name"].as_str()? {
                "messages_outbound" => {
                    stream["json_schema"]["properties"].as_object_mut()?.remove("to");
                    "incremental"
                }
                "stats_outbound_overview" => "incremental",
                "bounces" => "full_refresh",
                _ => return None,
            };
            Some(json!({"stream": stream, "sync_mode": mode, "destination_sync_mode": "append_dedup",
                "cursor_field": s["default_cursor_field"], "primary_key": s["source_defined_primary_key"]}))
        })
        .collect();
    json!({ "streams": streams })
}

fn records<'a>(lines: &'a [Value], stream: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|m| m["type"] == "RECORD" && m["record"]["stream"] == stream)
        .map(|m| &m["record"])
        .collect()
}

/// The last STATE of each stream, as the list Airbyte passes back with `--state`.
fn last_states(lines: &[Value]) -> Value {
    let mut by_stream = std::collections::BTreeMap::new();
    for m in lines.iter().filter(|m| m["type"] == "STATE") {
        by_stream.insert(m["state"]["stream"]["stream_descriptor"]["name"].to_string(), m["state"].clone());
    }
    Value::Array(by_stream.into_values().collect())
}

/// Position of the first line matching `f`.
fn position(lines: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    lines.iter().position(f).expect("a matching line")
}

#[test]
fn airbyte_messages_follow_the_protocol_and_read_is_incremental() {
    let env = Env::new(yesterday_messages(1_500));
    env.fake.generate_events(3);
    let cfg = env.config(two_days_ago(), json!({}));
    let cfg = cfg.to_str().expect("path");

    let spec = source(&env, &["spec"]);
    assert_ok(&spec);
    let spec_lines = messages(&spec);
    assert_eq!(
        spec_lines[0]["spec"]["connectionSpecification"]["properties"]["server_token"]["airbyte_secret"],
        true
    );

    let check = source(&env, &["check", "--config", cfg]);
    assert_ok(&check);
    assert_eq!(messages(&check)[0]["connectionStatus"]["status"], "SUCCEEDED");
    let bad = env.path("bad.json");
    std::fs::write(
        &bad,
        json!({"server_token": "wrong-token", "base_url": env.fake.base_url(), "start_date": "2026-01-01"}).to_string(),
    )
    .expect("write");
    set_private(&bad);
    let failed_check = source(&env, &["check", "--config", bad.to_str().expect("path")]);
    assert_eq!(failed_check.status.code(), Some(0), "a failed check is a status: {}", text(&failed_check));
    let status = &messages(&failed_check)[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    assert!(
        status["message"].as_str().is_some_and(|m| m.contains("401")) && !text(&failed_check).contains("wrong-token"),
        "{status}"
    );

    let discover = source(&env, &["discover", "--config", cfg]);
    assert_ok(&discover);
    let catalog = &messages(&discover)[0];
    let outbound = catalog["catalog"]["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["name"] == "messages_outbound")
        .expect("stream");
    assert_eq!(outbound["supported_sync_modes"], json!(["full_refresh", "incremental"]));
    assert_eq!(
        (&outbound["source_defined_cursor"], &outbound["default_cursor_field"]),
        (&json!(true), &json!(["received_at"]))
    );
    assert_eq!(outbound["source_defined_primary_key"], json!([["message_id"]]));
    std::fs::write(env.path("configured.json"), configured_catalog(catalog).to_string()).expect("write");

    let read = source(&env, &["read", "--config", cfg, "--catalog", "configured.json"]);
    assert_ok(&read);
    let lines = messages(&read);
    let outbound_records = records(&lines, "messages_outbound");
    let ids: HashSet<String> = outbound_records
        .iter()
        .filter_map(|r| r["data"]["message_id"].as_str().map(String::from))
        .collect();
    assert_eq!((outbound_records.len(), ids), (1_500, env.truth()), "every message once");
    assert!(
        outbound_records.iter().all(|r| r["data"].get("to").is_none() && r["data"]["from"].is_string()),
        "`to` left out"
    );
    assert!(
        outbound_records.iter().all(|r| r["emitted_at"].as_i64().is_some_and(|t| t > 1_700_000_000_000)),
        "emitted_at in ms"
    );
    assert_eq!(records(&lines, "bounces").len(), env.fake.visible(0).bounces.len(), "every bounce");
    assert!(!records(&lines, "stats_outbound_overview").is_empty());
    // STARTED, then the records, then the STATE that covers them, then COMPLETE.
    for stream in ["messages_outbound", "bounces", "stats_outbound_overview"] {
        let started = position(&lines, |m| {
            m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream && m["trace"]["stream_status"]["status"] == "STARTED"
        });
        let first = position(&lines, |m| m["record"]["stream"] == stream);
        let last = lines.iter().rposition(|m| m["record"]["stream"] == stream).expect("records");
        let state = lines
            .iter()
            .rposition(|m| m["state"]["stream"]["stream_descriptor"]["name"] == stream)
            .expect("a state");
        let complete = position(&lines, |m| {
            m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream && m["trace"]["stream_status"]["status"] == "COMPLETE"
        });
        assert!(
            started < first && last < state && state < complete,
            "{stream}: {started} {first} {last} {state} {complete}"
        );
    }
    assert!(lines.iter().any(|m| m["type"] == "LOG"), "logs are LOG messages");

    // Time passes and mail arrives; the next read starts from the state Airbyte kept.
    let first_end = env.fake.now();
    env.fake.advance_clock(Duration::hours(2));
    env.fake
        .add_messages(generate::between(9, "outbound", first_end, env.fake.now() - Duration::minutes(5), 300));
    std::fs::write(env.path("state.json"), last_states(&lines).to_string()).expect("write");
    env.fake.clear_requests();
    let again = source(&env, &["read", "--config", cfg, "--catalog", "configured.json", "--state", "state.json"]);
    assert_ok(&again);
    let second = messages(&again);
    let new_ids: HashSet<String> = records(&second, "messages_outbound")
        .iter()
        .filter_map(|r| r["data"]["message_id"].as_str().map(String::from))
        .collect();
    assert!(new_ids.len() >= 300 && new_ids.len() < 600, "incremental: {} records", new_ids.len());
    let all: HashSet<String> = ids_union(&outbound_records, &new_ids);
    assert_eq!(all, env.truth(), "every message across the two reads");
    assert_started_near(&env, first_end);
    // bounces is a full refresh: all of them again.
    assert_eq!(records(&second, "bounces").len(), env.fake.visible(0).bounces.len());

    // A failing read ends with an error TRACE and its exit code.
    let broken = source(&env, &["read", "--config", bad.to_str().expect("path"), "--catalog", "configured.json"]);
    assert_eq!(broken.status.code(), Some(4), "{}", text(&broken));
    let trace = messages(&broken).into_iter().find(|m| m["trace"]["type"] == "ERROR").expect("an error trace");
    assert_eq!(trace["trace"]["error"]["failure_type"], "config_error");

    validate_with_protocol_models(&env, &[&spec, &check, &failed_check, &discover, &read, &again, &broken]);
}

fn ids_union(first: &[&Value], second: &HashSet<String>) -> HashSet<String> {
    first
        .iter()
        .filter_map(|r| r["data"]["message_id"].as_str().map(String::from))
        .chain(second.iter().cloned())
        .collect()
}

/// PyAirbyte, as its users run a local connector: `get_source(..., local_executable=...)`, a
/// read of messages_outbound and the overview stats into its DuckDB cache, then a second read
/// that continues from the state PyAirbyte saved in the cache.
#[test]
fn pyairbyte_reads_into_its_duckdb_cache_incrementally() {
    let env = Env::new(yesterday_messages(1_200));
    let cfg = env.config(two_days_ago(), json!({}));
    let python = python_tool("airbyte");
    let script = r#"
import json, sys
import airbyte as ab
import sqlalchemy
exe, config_path, db = sys.argv[1:4]
source = ab.get_source("source-postmark", config=json.load(open(config_path)), local_executable=exe)
source.check()
source.select_streams(["messages_outbound", "stats_outbound_overview"])
cache = ab.caches.DuckDBCache(db_path=db)
result = source.read(cache=cache)
with cache.get_sql_engine().connect() as c:
    rows, distinct = c.execute(sqlalchemy.text("SELECT count(*), count(DISTINCT message_id) FROM main.messages_outbound")).one()
    stats = c.execute(sqlalchemy.text("SELECT count(*) FROM main.stats_outbound_overview")).scalar()
    ids = [r[0] for r in c.execute(sqlalchemy.text("SELECT message_id FROM main.messages_outbound"))]
print(json.dumps({"rows": rows, "distinct": distinct, "stats": stats, "ids": ids}))
"#;
    let read = |env: &Env| -> Value {
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .args([SOURCE_BIN, cfg.to_str().expect("path"), "cache.duckdb"])
            .current_dir(env.dir.path())
            // No registry here: PyAirbyte's documented offline switch.
            .env("AIRBYTE_OFFLINE_MODE", "1")
            .env("DO_NOT_TRACK", "1")
            .output()
            .expect("run PyAirbyte");
        assert_ok(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    let first = read(&env);
    assert_eq!(
        (first["rows"].as_u64(), first["distinct"].as_u64()),
        (Some(1_200), Some(1_200)),
        "{}",
        first["rows"]
    );
    // The overview stats complete: as many rows as a sync of them into DuckDB holds.
    assert_ok(&env.sync_streams(&cfg, "stats_outbound_overview", &[]));
    let expected = rows(&env.path("postmark.duckdb"), "SELECT count(*) FROM stats_outbound_overview");
    assert_eq!(HashSet::from([first["stats"].to_string()]), expected, "stats rows");
    assert!(first["stats"].as_u64().is_some_and(|n| n > 0));

    let first_end = env.fake.now();
    env.fake.advance_clock(Duration::hours(2));
    env.fake
        .add_messages(generate::between(5, "outbound", first_end, env.fake.now() - Duration::minutes(5), 400));
    env.fake.clear_requests();
    let second = read(&env);
    assert_eq!((second["rows"].as_u64(), second["distinct"].as_u64()), (Some(1_600), Some(1_600)));
    let ids: HashSet<String> = second["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    assert_eq!(ids, env.truth());
    // Incremental: the second read asked from the saved bookmark, not from start_date.
    assert_started_near(&env, first_end);
}

/// The first outbound-messages request started within a few minutes of `bookmark` less the
/// overlap (60 min) and the date-reading slack (60 min): an incremental read, not one from
/// `start_date`.
fn assert_started_near(env: &Env, bookmark: chrono::DateTime<chrono::Utc>) {
    use chrono::TimeZone as _;
    let requests = env.fake.requests();
    let first = requests.iter().find(|r| r.path == "/messages/outbound").expect("a messages request");
    let wall = chrono::NaiveDateTime::parse_from_str(first.param("fromdate").unwrap_or_default(), "%Y-%m-%dT%H:%M:%S").expect("fromdate");
    let from = chrono_tz::America::New_York
        .from_local_datetime(&wall)
        .earliest()
        .expect("an Eastern time")
        .to_utc();
    let expected = bookmark - Duration::minutes(120);
    assert!((from - expected).num_minutes().abs() <= 3, "first fromdate {from}, expected about {expected}");
}
