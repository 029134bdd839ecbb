//! Per-record streams (one request per parent row): a record the API no longer has is skipped as
//! the declaration says, counted, and everything else loads.

mod common;

use std::collections::HashSet;

use common::data::busy_env;
use common::{assert_ok, assert_same, eastern_days_ago, rows, text};
use fake_postmark::{FakeConfig, Fault};
use serde_json::{Value, json};

/// Per-record streams skip a record the API no longer has (their declared error rule: 422 with
/// ErrorCode 701 for message details, 1001 for bounce dumps), count it in the summary, and load
/// every other record; another error on the same endpoint still fails the run.
#[test]
fn per_record_streams_skip_records_gone_from_the_api() {
    let env = busy_env(FakeConfig::default());
    let truth = env.fake.visible(0);
    let (gone_message, gone_bounce) = (truth.messages[0].id.clone(), truth.bounces[0].id);
    env.fake.push_faults(
        &format!("/messages/outbound/{gone_message}/details"),
        [Fault::Api {
            status: 422,
            code: 701,
            message: "This message was not found.".into(),
        }],
    );
    env.fake.push_faults(
        &format!("/bounces/{gone_bounce}/dump"),
        [Fault::Api {
            status: 422,
            code: 1001,
            message: "The dump is no longer available.".into(),
        }],
    );
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let out = env.run(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--streams",
        "message_events,bounce_dumps",
        "--summary-json",
        "s.json",
    ]);
    assert_ok(&out);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(env.path("s.json")).unwrap()).unwrap();
    let skipped = |stream: &str| {
        summary["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stream"] == stream)
            .map(|s| s["skipped"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((skipped("message_events"), skipped("bounce_dumps")), (1, 1), "{summary}");
    let db = env.path("postmark.duckdb");
    let others: HashSet<String> = truth.messages.iter().filter(|m| m.id != gone_message).map(|m| m.id.clone()).collect();
    assert_same(
        &rows(&db, "SELECT DISTINCT message_id FROM message_events WHERE type = 'Delivered'"),
        &others,
        "message_events",
    );
    let bounces: HashSet<String> = truth.bounces.iter().filter(|b| b.id != gone_bounce).map(|b| b.id.to_string()).collect();
    assert_same(&rows(&db, "SELECT bounce_id::VARCHAR FROM bounce_dumps"), &bounces, "bounce_dumps");

    // Another ErrorCode on the same status is not in the rules: the run fails (exit 5).
    env.fake.push_faults(
        &format!("/bounces/{gone_bounce}/dump"),
        [Fault::Api {
            status: 422,
            code: 1000,
            message: "Invalid bounce query.".into(),
        }],
    );
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--streams", "bounce_dumps", "--path", "fresh.duckdb"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("ErrorCode 1000"), "{}", text(&out));
}
