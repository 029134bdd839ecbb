//! End-to-end: the real binary syncs messages_outbound from the fake Postmark into DuckDB.

mod common;

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use chrono_tz::America::New_York;
use common::{Env, assert_ok, duckdb_ids, duckdb_state, text};
use fake_postmark::{FakeConfig, Fault, generate};
use postmark_elt::streams::window::eastern_wall_clock;
use serde_json::json;

fn today_eastern() -> NaiveDate {
    Utc::now().with_timezone(&New_York).date_naive()
}

/// Five ordinary days and a hot day of 25,000 messages in `outbound`, plus a broadcast stream.
fn busy_server() -> Vec<fake_postmark::Message> {
    let today = today_eastern();
    let mut messages = Vec::new();
    for d in 1..=5 {
        let date = today - ChronoDuration::days(d);
        let count = if d == 3 { 25_000 } else { 400 };
        messages.extend(generate::day(d as u64, "outbound", date, count));
        messages.extend(generate::day(100 + d as u64, "broadcast", date, 30));
    }
    messages
}

fn start_of(date: NaiveDate) -> DateTime<Utc> {
    generate::eastern_day(date).0
}

/// A day above Postmark's 10,000 offset limit loads completely, and every request respects the
/// API's rules (token, Accept, count <= 500, count + offset <= 10,000, New York dates).
#[test]
fn hot_day_loads_completely_and_requests_follow_the_rules() {
    let env = Env::new(busy_server());
    let cfg = env.config(start_of(today_eastern() - ChronoDuration::days(6)), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);

    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    let truth = env.truth();
    assert_eq!(rows, distinct, "duplicate rows");
    assert_eq!(ids.len(), truth.len());
    assert_eq!(ids, truth, "the loaded message IDs differ from the API's");

    let requests = env.fake.requests();
    assert!(requests.iter().all(|r| r.server_token_ok), "a request lacked the server token");
    assert!(requests.iter().all(|r| r.accept.as_deref() == Some("application/json")));
    assert!(requests.iter().all(|r| r.accept_encoding.as_deref().is_some_and(|e| e.contains("gzip"))));
    assert!(requests.iter().all(|r| r.status == 200), "a request was refused");
    let pages: Vec<_> = requests.iter().filter(|r| r.path == "/messages/outbound").collect();
    for r in &pages {
        let count: u64 = r.param("count").unwrap().parse().unwrap();
        let offset: u64 = r.param("offset").unwrap().parse().unwrap();
        assert!(count <= 500 && count + offset <= 10_000, "{r:?}");
        for p in ["fromdate", "todate"] {
            let v = r.param(p).unwrap();
            assert!(chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").is_ok(), "{p}={v}");
        }
        assert!(matches!(r.param("messagestream"), Some("outbound" | "broadcast")));
    }
    // Requests stay close to the minimum, one per 500 rows: the hot day is cut along the
    // reach (its deepest pages asked, offset 9,500), so only the oldest part ends in a
    // part-filled page; each stream's probe of the whole range is its first page.
    let minimum = truth.len().div_ceil(500);
    assert!(pages.len() <= minimum + 3, "{} page requests for a minimum of {minimum}", pages.len());
    assert!(
        pages.iter().any(|r| r.param("offset") == Some("9500")),
        "the dense window was not cut along its reach"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("messages_outbound"), "no summary: {stderr}");
    assert!(!stderr.contains("not newest first"), "{stderr}");
}

/// An API that lists only nearly newest first (by an internal ID, say: records up to 10 min out
/// of order) must not lose the rows a cut along the reach would leave beyond it: the pages
/// give the order away, and the dense window is read again in equal-time parts.
#[test]
fn a_list_not_newest_first_is_noticed_and_read_in_parts() {
    let config = FakeConfig {
        order_jitter: ChronoDuration::minutes(10),
        ..FakeConfig::default()
    };
    let env = Env::with_config(config, busy_server());
    let cfg = env.config(start_of(today_eastern() - ChronoDuration::days(6)), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct, "duplicate rows");
    assert_eq!(ids, env.truth(), "the loaded message IDs differ from the API's");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not newest first"), "the disorder went unreported: {stderr}");
}

/// A second run reads only from the bookmark (minus the overlap), adds the new rows, and
/// neither duplicates nor loses any; messages that appeared late inside the overlap are caught.
#[test]
fn second_run_is_incremental_without_duplicates() {
    let today = today_eastern();
    let mut messages = Vec::new();
    for d in 1..=3 {
        messages.extend(generate::day(d, "outbound", today - ChronoDuration::days(d as i64), 300));
    }
    let env = Env::new(messages);
    let cfg = env.config(start_of(today - ChronoDuration::days(4)), json!({"message_streams": ["outbound"]}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let db = env.path("postmark.duckdb");
    let (first_rows, _, _) = duckdb_ids(&db);
    assert_eq!(first_rows as usize, env.truth().len());
    let state = duckdb_state(&db);
    let bookmark: DateTime<Utc> = state["bookmarks"]["messages_outbound"]["outbound"]["replication_key_value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // New messages after the bookmark, and late ones inside the overlap before it.
    std::thread::sleep(Duration::from_millis(1100));
    let now = Utc::now();
    env.fake
        .add_messages(generate::between(77, "outbound", bookmark + ChronoDuration::milliseconds(1), now, 40));
    env.fake
        .add_messages(generate::between(78, "outbound", bookmark - ChronoDuration::minutes(30), bookmark, 7));
    env.fake.clear_requests();

    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let (rows, distinct, ids) = duckdb_ids(&db);
    assert_eq!(rows, distinct);
    assert_eq!(ids, env.truth());
    assert_eq!(rows, first_rows + 47);

    // The overlap (60 min), and the hour date-window reads start early (DATE_READING_SLACK).
    let earliest = eastern_wall_clock(bookmark - ChronoDuration::minutes(120) - ChronoDuration::seconds(1));
    for r in env.fake.requests().iter().filter(|r| r.path == "/messages/outbound") {
        let from = chrono::NaiveDateTime::parse_from_str(r.param("fromdate").unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap();
        assert!(
            from >= earliest,
            "second run re-read from {from}, before the bookmark minus overlap and slack {earliest}"
        );
    }
}

/// Both daylight-saving days of 2026 in New York, with thousands of messages inside the
/// repeated and the skipped hour, load completely (windows split around the transitions).
#[test]
fn daylight_saving_days_load_completely() {
    let config = FakeConfig {
        retention_days: 3650,
        ..FakeConfig::default()
    };
    let mut messages = Vec::new();
    let fall = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
    messages.extend(generate::day(1, "outbound", fall, 9_000));
    // 4,000 messages in 04:30Z..07:30Z: across both passes of 01:00-01:59 on Nov 1.
    let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    messages.extend(generate::between(
        2,
        "outbound",
        utc("2026-11-01T04:30:00Z"),
        utc("2026-11-01T07:30:00Z"),
        4_000,
    ));
    messages.extend(generate::day(3, "outbound", spring, 9_000));
    messages.extend(generate::between(
        4,
        "outbound",
        utc("2026-03-08T06:00:00Z"),
        utc("2026-03-08T08:00:00Z"),
        4_000,
    ));
    let env = Env::with_config(config, messages);
    let cfg = env.config(
        utc("2026-03-07T00:00:00Z"),
        json!({"end_date": "2026-11-03T00:00:00Z", "message_streams": ["outbound"]}),
    );
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct);
    let truth = env.truth();
    let missing: Vec<_> = truth.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "{} missing, e.g. {missing:?}", truth.len() - ids.len());
    assert_eq!(ids.len(), 26_000);
}

/// Storms of 429 (with and without Retry-After), 500/502/503, a truncated body and a reset
/// connection are retried; the load completes exactly.
#[test]
fn survives_rate_limits_and_server_errors() {
    let today = today_eastern();
    let env = Env::new(generate::day(9, "outbound", today - ChronoDuration::days(1), 3_000));
    env.fake.push_faults(
        "/messages/outbound",
        [
            Fault::RateLimited { retry_after: None },
            Fault::RateLimited { retry_after: Some(1) },
            Fault::Status(503),
            Fault::Status(500),
            Fault::Status(502),
            Fault::TruncatedJson,
            Fault::ResetMidBody,
            Fault::RateLimited { retry_after: None },
            Fault::Status(503),
            Fault::Status(503),
        ],
    );
    // Ten failures in a row on one request: more than the default 8 retries allow.
    let cfg = env.config(
        start_of(today - ChronoDuration::days(2)),
        json!({"message_streams": ["outbound"], "max_retries": 12}),
    );
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct);
    assert_eq!(ids, env.truth());
    let failed = env.fake.requests().iter().filter(|r| r.status != 200).count();
    assert_eq!(failed, 8, "the 8 error statuses were served");
    assert!(String::from_utf8_lossy(&out.stderr).contains("retries: 10"), "{}", text(&out));
}

/// When retries run out the run fails with the stream, the window and the HTTP status, exit 5,
/// and what was committed before stays.
#[test]
fn exhausted_retries_fail_clearly_and_keep_committed_data() {
    let today = today_eastern();
    let mut messages = generate::day(5, "outbound", today - ChronoDuration::days(2), 200);
    messages.extend(generate::day(6, "outbound", today - ChronoDuration::days(1), 200));
    let env = Env::new(messages);
    let cfg = env.config(
        start_of(today - ChronoDuration::days(2)),
        json!({"message_streams": ["outbound", "broadcast"], "max_retries": 2}),
    );
    // Outbound loads; every attempt at broadcast fails. (One stream: streams run concurrently
    // and would share out the faults.)
    env.fake.push_faults("messagestream=broadcast", std::iter::repeat_n(Fault::Status(503), 3));
    let out = env.run(&["sync", "--streams", "messages_outbound", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("message stream `broadcast`") && last.contains("US-Eastern") && last.contains("HTTP 503"),
        "{last}"
    );
    let db = env.path("postmark.duckdb");
    let (rows, _, _) = duckdb_ids(&db);
    assert_eq!(rows, 400);
    let state = duckdb_state(&db);
    assert!(state["bookmarks"]["messages_outbound"]["outbound"].is_object());
    assert!(state["bookmarks"]["messages_outbound"].get("broadcast").is_none());
    // The next run completes the data.
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    assert_eq!(duckdb_ids(&db).2, env.truth());
}

/// A hung response times out and is retried; the load completes.
#[test]
fn hung_response_times_out_and_is_retried() {
    let today = today_eastern();
    let env = Env::new(generate::day(11, "outbound", today - ChronoDuration::days(1), 1_200));
    // Hung far longer than the timeout, so that the bound below tells "gave up and asked
    // again" from "waited for the answer" on a loaded machine too.
    env.fake.push_faults("offset=500", [Fault::Hang(Duration::from_secs(30))]);
    let cfg = env.config(
        start_of(today - ChronoDuration::days(2)),
        json!({"message_streams": ["outbound"], "request_timeout_seconds": 1}),
    );
    let started = std::time::Instant::now();
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    assert!(text(&out).contains("timed out"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!(duckdb_ids(&env.path("postmark.duckdb")).2, env.truth());
}

/// A 422 is not retried: the run stops at once with Postmark's ErrorCode and Message.
#[test]
fn validation_error_is_not_retried() {
    let today = today_eastern();
    let env = Env::new(generate::day(12, "outbound", today - ChronoDuration::days(1), 100));
    env.fake.push_faults(
        "/messages/outbound",
        [Fault::Api {
            status: 422,
            code: 700,
            message: "Count + Offset cannot exceed 10000 messages.".into(),
        }],
    );
    let cfg = env.config(start_of(today - ChronoDuration::days(2)), json!({"message_streams": ["outbound"]}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("HTTP 422, Postmark ErrorCode 700: Count + Offset cannot exceed 10000 messages."),
        "{}",
        text(&out)
    );
    let pages = env.fake.requests().iter().filter(|r| r.path == "/messages/outbound").count();
    assert_eq!(pages, 1, "a 422 was retried");
}

/// A page whose TotalCount disagrees with the window's (data changing while paging).
const SHIFTED_PAGE: &str = r#"{"TotalCount": 1300, "Messages": []}"#;

/// Pages go to the destination as they arrive, before their window is known to be complete.
/// When the pages disagree with the TotalCount, the window is probed and read again from its
/// start, and every message still arrives exactly once.
#[test]
fn shifted_pages_are_read_again_and_load_exactly_once() {
    let today = today_eastern();
    let env = Env::new(generate::day(21, "outbound", today - ChronoDuration::days(2), 1_200));
    env.fake.push_faults("/messages/outbound", [Fault::Body(SHIFTED_PAGE.to_string())]);
    let cfg = env.config(start_of(today - ChronoDuration::days(3)), json!({"message_streams": ["outbound"]}));
    let out = env.run(&["sync", "--streams", "messages_outbound", "--config", cfg.to_str().unwrap()]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading it again"), "{}", text(&out));
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!((rows, distinct), (1_200, 1_200));
    assert_eq!(ids, env.truth());
    let first_pages = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/messages/outbound" && r.param("offset") == Some("0"))
        .count();
    assert_eq!(first_pages, 2, "the window was not probed again from its start");
}

/// A window whose pages never agree with its TotalCount, in a read that ends at `end_date`
/// (not at Postmark's now, where the newest window may still fill), fails after three reads
/// (exit 5), and none of its rows, already sent to the destination, are committed.
#[test]
fn window_that_never_settles_fails_without_committing_its_rows() {
    let today = today_eastern();
    let env = Env::new(generate::day(22, "outbound", today - ChronoDuration::days(2), 1_200));
    env.fake
        .push_faults("/messages/outbound", std::iter::repeat_n(Fault::Body(SHIFTED_PAGE.to_string()), 20));
    let cfg = env.config(
        start_of(today - ChronoDuration::days(3)),
        json!({"message_streams": ["outbound"], "end_date": start_of(today).to_rfc3339()}),
    );
    let out = env.run(&["sync", "--streams", "messages_outbound", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("reading it again").count(), 3, "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("3 attempts; TotalCount went from 1300 to 1300, 0 distinct records arrived); nothing from this window was committed"),
        "{stderr}"
    );
    let db = env.path("postmark.duckdb");
    assert_eq!(duckdb_ids(&db).0, 0, "rows of an unsettled window were committed");
    assert_eq!(common::scalar(&db, "SELECT count(*) FROM _postmark_elt_state"), 0, "a state was saved");
}

fn page_with(records: &str) -> String {
    format!(r#"{{"TotalCount": 2, "Messages": [{records}]}}"#)
}

/// A new field in API records is ignored with one warning per field; a value of the wrong type
/// stops the run with exit 10 naming the stream, the field and the record, and nothing of the
/// window is committed.
#[test]
fn new_fields_warn_once_and_wrong_types_stop_clearly() {
    let today = today_eastern();
    let env = Env::new(Vec::new());
    let cfg = env.config(start_of(today - ChronoDuration::days(1)), json!({"message_streams": ["outbound"]}));
    std::fs::write(env.path("m.json"), r#"{"streams":[{"tap_stream_id":"messages_outbound","selected":true}]}"#).unwrap();
    let rec = |id: &str, extra: &str| format!(r#"{{"MessageID":"{id}","ReceivedAt":"2026-11-20T10:00:00.1234567-05:00","TrackOpens":true{extra}}}"#);
    let body = page_with(&format!("{},{}", rec("a", r#","Shiny":1"#), rec("b", r#","Shiny":2"#)));
    env.fake.push_faults("/messages/outbound", [Fault::Body(body.clone()), Fault::Body(body)]);
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "m.json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("field=Shiny").count(), 1, "{stderr}");
    assert!(stderr.contains("not loaded"));

    let env = Env::new(Vec::new());
    let cfg = env.config(start_of(today - ChronoDuration::days(1)), json!({"message_streams": ["outbound"]}));
    std::fs::write(env.path("m.json"), r#"{"streams":[{"tap_stream_id":"messages_outbound","selected":true}]}"#).unwrap();
    let bad = page_with(&format!(
        "{},{}",
        rec("good-1", ""),
        rec("bad-2", "").replace(r#""TrackOpens":true"#, r#""TrackOpens":"yes""#)
    ));
    env.fake.push_faults("/messages/outbound", [Fault::Body(bad)]);
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "m.json"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let last = String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("messages_outbound") && last.contains("TrackOpens") && last.contains("bad-2"),
        "{last}"
    );
    let db = env.path("postmark.duckdb");
    assert_eq!(duckdb_ids(&db).0, 0, "rows of a failed window were committed");
}

/// Even with every library logging at trace level, a failing run never prints the token.
#[test]
fn trace_logs_of_a_failing_run_hold_no_token() {
    let today = today_eastern();
    let env = Env::new(generate::day(13, "outbound", today - ChronoDuration::days(1), 50));
    env.fake.push_faults("", std::iter::repeat_n(Fault::Status(503), 40));
    let cfg = env.config(start_of(today - ChronoDuration::days(2)), json!({"max_retries": 1}));
    let out = std::process::Command::new(common::BIN)
        .args(["sync", "--config", cfg.to_str().unwrap(), "-vv"])
        .current_dir(env.dir.path())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.len() > 1_000, "trace logging produced little output");
    assert!(!all.contains(env.fake.token()), "the token appeared in trace output");
}
