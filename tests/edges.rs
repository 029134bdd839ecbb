//! Smaller holes that independent checks found: records repeated on a shared window second,
//! archived message streams left out, state files in runners' wrappers, URL paths written as
//! local folders.

mod common;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use common::*;
use fake_postmark::{DateReading, FakeConfig, MessageStream, default_streams, generate};
use serde_json::{Value, json};

/// Singer output holds each record once within a run, even where neighbouring windows share
/// their boundary second and the API reads `todate` as covering that whole second.
#[test]
fn singer_never_repeats_a_record_within_a_run() {
    let config = FakeConfig {
        date_reading: DateReading::EasternWholeSecond,
        ..FakeConfig::default()
    };
    // 24,000 messages in two hours: windows are split, and every boundary second holds mail.
    let from = Utc::now() - Duration::hours(30);
    let env = Env::with_config(config, generate::between(31, "outbound", from, from + Duration::hours(2), 24_000));
    let cfg = env.config(from - Duration::hours(1), json!({"message_streams": ["outbound"]}));
    let out = env.sync_streams(&cfg, "messages_outbound", &["--dest", "singer"]);
    assert_ok(&out);
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "RECORD")
        .filter_map(|l| l["record"]["message_id"].as_str().map(str::to_string))
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "records repeated within one run");
    assert_same(&unique, &env.truth(), "singer records");
    let windows: HashSet<(String, String)> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/messages/outbound")
        .filter_map(|r| Some((r.param("fromdate")?.to_string(), r.param("todate")?.to_string())))
        .collect();
    assert!(windows.len() >= 3, "the range was not divided into windows: {windows:?}");
}

/// Archived message streams have rows in `message_streams`, as their messages and stats do.
#[test]
fn message_streams_lists_archived_ones() {
    let mut streams = default_streams();
    streams.push(MessageStream {
        id: "spring-2026".into(),
        kind: "Broadcasts".into(),
        name: "Spring campaign".into(),
        archived: true,
    });
    let env = common::Env {
        dir: tempfile::tempdir().expect("dir"),
        fake: fake_postmark::FakePostmark::start(FakeConfig::default(), streams, Vec::new()),
    };
    let cfg = env.config(Utc::now() - Duration::days(1), json!({}));
    assert_ok(&env.sync_streams(&cfg, "message_streams", &[]));
    let ids = rows(&env.path("postmark.duckdb"), "SELECT id FROM message_streams");
    assert!(ids.contains("spring-2026"), "{ids:?}");
    assert_eq!(ids.len(), 4);
}

/// A `--state` file that is not a state (a list, an unrelated object) stops the run with exit 9
/// instead of a silent restart from `start_date`; a Meltano wrapper is read.
#[test]
fn state_files_are_unwrapped_or_refused() {
    // Mail of three days ago: outside the overlap read before any bookmark of about now, at
    // any time of day (yesterday's mail meets it just after midnight in New York).
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    let env = Env::new(generate::day(42, "outbound", today - Duration::days(3), 50));
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let run = |state: &str| {
        std::fs::write(env.path("state.json"), state).expect("write state");
        env.sync_streams(&cfg, "messages_outbound", &["--state", "state.json"])
    };
    for bad in ["[]", r#"{"last_run": "2026-11-30"}"#] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(9), "{bad}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a postmark-elt state"), "{}", text(&out));
    }
    let later = (Utc::now() + Duration::minutes(1)).to_rfc3339();
    let wrapped = format!(
        r#"{{"singer_state": {{"bookmarks": {{"messages_outbound": {{"outbound": {{"replication_key": "received_at", "replication_key_value": "{later}"}}}}}}}}}}"#
    );
    env.fake.clear_requests();
    assert_ok(&run(&wrapped));
    // The wrapped bookmark is after every message: only the overlap is read, nothing loads.
    assert_eq!(scalar(&env.path("postmark.duckdb"), "SELECT count(*) FROM messages_outbound"), 0);
}

/// A busy server whose newest window keeps growing while it is read (mail becoming searchable
/// minutes late, arriving between pages) does not fail the run: what is complete is committed,
/// the growing head is read again next run, and in the end every message is loaded once.
#[test]
fn a_growing_newest_window_does_not_fail_the_run() {
    let config = FakeConfig {
        index_delay: Duration::minutes(5),
        arrivals_per_search: 12,
        arrival_seed: 3,
        ..FakeConfig::default()
    };
    let now = Utc::now();
    let env = Env::with_config(config, generate::between(32, "outbound", now - Duration::hours(20), now, 8_000));
    let cfg = env.config(now - Duration::days(1), json!({"message_streams": ["outbound"], "settle_seconds": 60}));
    let run = || env.sync_streams(&cfg, "messages_outbound", &[]);
    for _ in 0..3 {
        assert_ok(&run());
        env.fake.advance_clock(Duration::minutes(2));
    }
    // Mail stops arriving; once every message is searchable, one more run completes the data.
    env.fake.set_arrivals(0);
    env.fake.advance_clock(Duration::minutes(10));
    assert_ok(&run());
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct, "duplicates");
    assert_same(&ids, &env.truth(), "after the head settled");
}

/// Reshaped answers treat a wrong type like decoded ones: a stats counter that is a string, or a
/// message's details without their events list, stop the run with exit 10 naming the stream,
/// the field and the request, and what other streams committed stays.
#[test]
fn reshaped_answers_refuse_wrong_types() {
    let env = Env::new(yesterday_messages(40));
    let cfg = env.config(two_days_ago(), json!({"message_streams": ["outbound"]}));
    let yesterday = (Utc::now() - Duration::days(1)).with_timezone(&chrono_tz::America::New_York).date_naive();
    let cases = [
        (
            "stats_outbound_bounces",
            "/stats/outbound/bounces",
            format!(r#"{{"Days": [{{"Date": "{yesterday}", "HardBounce": "2"}}]}}"#),
            "`Days[].HardBounce`",
        ),
        ("stats_outbound_overview", "/stats/outbound?", "[]".to_string(), "not an object"),
        ("message_events", "/details", r#"{"MessageID": "x"}"#.to_string(), "no `MessageEvents` list"),
    ];
    for (stream, matcher, body, named) in cases {
        env.fake.push_faults(matcher, [fake_postmark::Fault::Body(body)]);
        let out = env.sync_streams(&cfg, &format!("messages_outbound,{stream}"), &[]);
        assert_eq!(out.status.code(), Some(10), "{stream}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(stream) && last.contains(named), "{stream}: {last}");
        assert_eq!(scalar(&env.path("postmark.duckdb"), "SELECT count(*) FROM messages_outbound"), 40, "{stream}");
    }
}

/// A destination folder that does not exist is a destination error (exit 7) naming the path,
/// even when the path's name contains "lock": the lock state is never guessed from error text.
#[test]
fn a_missing_folder_named_like_a_lock_is_not_locked() {
    let env = Env::new(yesterday_messages(5));
    let cfg = env.config(two_days_ago(), json!({}));
    let out = env.sync_streams(&cfg, "messages_outbound", &["--path", "blocks/pm/pm.duckdb"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocks/pm"), "{}", text(&out));
}

/// A URL as `--path` that the destination cannot write (any URL for DuckDB, a scheme that is
/// not an object store for Parquet) is refused before anything is requested or written (it
/// used to become a local folder named `s3:`), with exit 3 and the way out.
#[test]
fn url_paths_are_refused_not_written_locally() {
    let env = Env::new(yesterday_messages(20));
    let cfg = env.config(two_days_ago(), json!({}));
    for (dest, url, says) in [
        ("duckdb", "gs://bucket/postmark.duckdb", "is a URL, and DuckDB writes a local file"),
        (
            "duckdb",
            "s3://lake/pm.duckdb",
            "use a local path, or --dest parquet to write to object storage",
        ),
        ("parquet", "ftp://host/pm", "ftp:// is not an object store postmark-elt writes to; use s3://"),
    ] {
        let out = env.sync_streams(&cfg, "messages_outbound", &["--dest", dest, "--path", url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(stderr.contains(&format!("--path {url}")) && stderr.contains(says), "{stderr}");
        let scheme = url.split(':').next().unwrap_or_default();
        assert!(!env.path(&format!("{scheme}:")).exists(), "a local folder named {scheme}: was created");
    }
    assert!(env.fake.requests().is_empty(), "nothing was requested");
}
