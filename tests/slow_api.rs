//! A slow and flaky API: answers that take 20-150 ms each, drawn per request, and 10% of them a
//! random 429 or 503. The load must still be exact, the client's limit must hold (never more
//! requests in flight than `max_concurrency`) and be used (all slots busy at some point), and
//! `--dest none` must read every page and keep nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_postmark::{FakeConfig, RecordedRequest, generate};
use serde_json::json;

/// The most requests the fake was answering at once, from when each arrived and was answered.
fn peak_in_flight(requests: &[RecordedRequest]) -> usize {
    let mut edges: Vec<(Instant, i32)> = requests.iter().flat_map(|r| [(r.arrived, 1), (r.answered, -1)]).collect();
    // An answer at the same instant as an arrival frees its slot first.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

fn flaky() -> FakeConfig {
    FakeConfig {
        latency: Duration::from_millis(20),
        latency_max: Duration::from_millis(150),
        error_rate: 0.1,
        chaos_seed: 5,
        ..FakeConfig::default()
    }
}

/// 14,000 messages over two days (the window is split) and their opens, through a flaky API
/// with 4 slots: every message once, retries taken, at most and at some point 4 in flight.
#[test]
fn flaky_slow_api_loads_exactly_with_every_slot_used() {
    let messages = generate::between(31, "outbound", eastern_days_ago(3), eastern_days_ago(1), 14_000);
    let env = Env::with_config(flaky(), messages);
    env.fake.generate_events(31);
    let cfg = env.config(eastern_days_ago(4), json!({"message_streams": ["outbound"], "max_concurrency": 4}));
    let out = env.sync_streams(&cfg, "messages_outbound,messages_opens", &[]);
    assert_ok(&out);
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct, "no message twice");
    assert_same(&ids, &env.truth(), "messages");
    let opens = scalar(
        &env.path("postmark.duckdb"),
        "SELECT count(*) FROM (SELECT DISTINCT message_id, recipient, received_at FROM messages_opens)",
    );
    assert_eq!(opens as usize, env.fake.visible(0).opens.len(), "every open once");
    let requests = env.fake.requests();
    let errors = requests.iter().filter(|r| r.status == 429 || r.status == 503).count();
    assert!(errors >= 3, "the fake answered {errors} random errors; the test needs some");
    assert!(text(&out).contains(&format!("retries: {errors}")), "each error retried once: {}", text(&out));
    let peak = peak_in_flight(&requests);
    assert_eq!(
        peak, 4,
        "requests in flight at the fake: at most max_concurrency, and all of them at some point"
    );
}

/// `--dest none` reads and decodes every page and writes nothing: no file, no state, so a
/// second run reads everything again.
#[test]
fn dest_none_reads_everything_and_keeps_nothing() {
    let messages = generate::between(32, "outbound", eastern_days_ago(2), eastern_days_ago(1), 1_200);
    let env = Env::new(messages);
    let cfg = env.config(eastern_days_ago(3), json!({"message_streams": ["outbound"]}));
    for run in 0..2 {
        env.fake.clear_requests();
        let out = env.sync_streams(&cfg, "messages_outbound", &["--dest", "none"]);
        assert_ok(&out);
        assert!(out.stdout.is_empty(), "nothing on stdout");
        assert!(text(&out).contains("1200"), "run {run}: the summary counts every record: {}", text(&out));
        let pages: Vec<u64> = env
            .fake
            .requests()
            .iter()
            .filter(|r| r.path == "/messages/outbound")
            .filter_map(|r| r.param("offset")?.parse().ok())
            .collect();
        assert_eq!(pages.len(), 3, "run {run}: 1,200 messages in pages of 500: {pages:?}");
        let left: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n != "config.json")
            .collect();
        assert!(left.is_empty(), "run {run} wrote {left:?}");
    }
}

/// A run's first two requests, the server and its message streams, go out side by side: the
/// listing of message streams needs the token only, so at 200 ms a request it arrives before
/// the server's answer, and each is asked once although two streams start together.
#[test]
fn the_server_and_its_message_streams_are_asked_side_by_side() {
    let slow = FakeConfig {
        latency: Duration::from_millis(200),
        ..FakeConfig::default()
    };
    let messages = generate::between(33, "outbound", eastern_days_ago(2), eastern_days_ago(1), 50);
    let env = Env::with_config(slow, messages);
    let cfg = env.config(eastern_days_ago(3), json!({"message_streams": ["outbound"]}));
    assert_ok(&env.sync_streams(&cfg, "messages_outbound,messages_opens", &[]));
    let requests = env.fake.requests();
    let asked = |path: &str| requests.iter().filter(|r| r.path == path).collect::<Vec<_>>();
    let (server, streams) = (asked("/server"), asked("/message-streams"));
    assert_eq!((server.len(), streams.len()), (1, 1), "each listed once for the run");
    assert!(
        streams[0].arrived < server[0].answered && server[0].arrived < streams[0].answered,
        "the two listings overlap at the fake"
    );
    assert_eq!(duckdb_ids(&env.path("postmark.duckdb")).0, 50, "and the messages landed");
}
