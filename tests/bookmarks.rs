//! Where bookmarks come from: Postmark's clock (its `Date` header), not the host's; and the
//! inbound stream's windows, which move like the other date-window streams.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// Syncs messages_outbound into DuckDB and returns the summary file and the log.
fn sync_outbound(env: &Env, start: DateTime<Utc>) -> (Value, String) {
    let cfg = env.config(start, json!({"settle_seconds": 60}));
    let summary = env.path("summary.json");
    let out = env.sync_streams(&cfg, "messages_outbound", &["--summary-json", summary.to_str().unwrap_or_default()]);
    assert_ok(&out);
    let summary = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("summary json");
    (summary, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// With the fake's clock hours behind and ahead of the host's, every message is loaded exactly
/// once over two syncs with 36 hours passing between them, including mail that arrived just
/// after the first sync's end; the summary reports the offset and the log names its size.
#[test]
fn windows_follow_postmarks_clock_not_the_hosts() {
    for hours in [-3i64, 3] {
        let config = FakeConfig {
            clock_offset: Duration::hours(hours),
            ..FakeConfig::default()
        };
        let env = Env::with_config(config, Vec::new());
        let api_now = env.fake.now();
        // Two days of mail up to two minutes before Postmark's now (past the settle margin).
        env.fake.add_messages(generate::between(
            7,
            "outbound",
            api_now - Duration::days(2),
            api_now - Duration::minutes(2),
            3000,
        ));
        let start = api_now - Duration::days(3);
        let (summary, log) = sync_outbound(&env, start);
        let side = if hours < 0 { "ahead of Postmark's" } else { "behind Postmark's" };
        assert!(log.contains("The host clock is 2h 59m") || log.contains("The host clock is 3h 0m"), "{log}");
        assert!(log.contains(side), "{log}");
        let offset = summary["clock_offset_seconds"].as_f64().expect("clock offset in the summary");
        assert!((offset - 3600.0 * hours as f64).abs() < 5.0, "offset {offset} for {hours} h");
        let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
        assert_eq!((rows, distinct), (3000, 3000), "first sync, clock offset {hours} h");
        assert_same(&ids, &env.truth(), "first sync");

        // 36 hours pass; mail keeps arriving, starting right after the first sync's reads.
        let first_end = api_now - Duration::seconds(60);
        env.fake.advance_clock(Duration::hours(36));
        let later = env.fake.now();
        env.fake
            .add_messages(generate::between(8, "outbound", first_end, later - Duration::minutes(2), 2000));
        let (summary, _) = sync_outbound(&env, start);
        let offset = summary["clock_offset_seconds"].as_f64().expect("clock offset in the summary");
        assert!((offset - 3600.0 * (hours + 36) as f64).abs() < 5.0, "offset {offset} after 36 h");
        let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
        assert_eq!((rows, distinct), (5000, 5000), "second sync, clock offset {hours} h");
        assert_same(&ids, &env.truth(), "second sync");
        // The bookmark is Postmark's time minus the settle margin, never the host's.
        let state = duckdb_state(&env.path("postmark.duckdb"));
        let bookmark: DateTime<Utc> = state["bookmarks"]["messages_outbound"]["outbound"]["replication_key_value"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("bookmark");
        let expected = env.fake.now() - Duration::seconds(60);
        assert!(
            (bookmark - expected).num_seconds().abs() < 30,
            "bookmark {bookmark}, Postmark's now - 60 s {expected}"
        );
    }
}

/// Inbound messages get a bookmark per status: the second run reads only the lookback window,
/// and a message whose status changed inside it is updated, not duplicated.
#[test]
fn inbound_is_incremental_with_a_lookback() {
    let env = Env::new(Vec::new());
    let now = env.fake.now();
    let mut inbound = generate::inbound(5, now - Duration::days(20), now - Duration::minutes(5), 400);
    for i in inbound.iter_mut() {
        i.status = "Processed".to_string();
    }
    let queued_id = inbound[0].id.clone();
    inbound[0].status = "Queued".to_string();
    inbound[0].received_at = now - Duration::days(1);
    env.fake.with_data(0, |d| d.add_inbound(inbound));
    let start = now - Duration::days(30);
    let cfg = env.config(start, json!({"lookback_days": 3}));
    let run = || env.sync_streams(&cfg, "messages_inbound", &[]);
    assert_ok(&run());
    let db = env.path("postmark.duckdb");
    assert_eq!(scalar(&db, "SELECT count(*) FROM messages_inbound"), 400);
    let state = duckdb_state(&db);
    let processed = &state["bookmarks"]["messages_inbound"]["processed"];
    assert_eq!(processed["replication_key"], "window_end", "{state}");
    let bookmark: DateTime<Utc> = processed["replication_key_value"].as_str().and_then(|t| t.parse().ok()).expect("bookmark");
    assert!(bookmark > now - Duration::minutes(5), "{bookmark}");

    // The queued message is processed now; the second run reads from the bookmark - 3 days.
    env.fake.with_data(0, |d| d.set_inbound_status(&queued_id, "Processed"));
    env.fake.clear_requests();
    assert_ok(&run());
    assert_eq!(scalar(&db, "SELECT count(*) FROM messages_inbound"), 400);
    assert_eq!(
        scalar(
            &db,
            &format!("SELECT count(*) FROM messages_inbound WHERE message_id = '{queued_id}' AND status = 'Processed'")
        ),
        1
    );
    let froms: Vec<String> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/messages/inbound")
        .filter_map(|r| r.param("fromdate").map(str::to_string))
        .collect();
    assert!(!froms.is_empty());
    let earliest = (bookmark - Duration::days(3) - Duration::hours(6)).with_timezone(&chrono_tz::America::New_York);
    for from in &froms {
        assert!(
            from.as_str() >= earliest.format("%Y-%m-%dT%H:%M:%S").to_string().as_str(),
            "re-read from {from}, start_date was 30 days ago"
        );
    }
}

/// Date-window reads start an hour early (Postmark may read `fromdate` without daylight
/// saving), yet nothing before `start_date` is loaded.
#[test]
fn reads_start_an_hour_early_but_load_from_start_date() {
    let env = Env::new(Vec::new());
    let start = env.fake.now() - Duration::days(2);
    env.fake
        .add_messages(generate::between(9, "outbound", start - Duration::minutes(50), start + Duration::hours(2), 600));
    let cfg = env.config(start, json!({}));
    assert_ok(&env.sync_streams(&cfg, "messages_outbound", &[]));
    let wanted: std::collections::HashSet<String> = env
        .fake
        .visible_messages()
        .into_iter()
        .filter(|m| m.received_at >= start)
        .map(|m| m.id)
        .collect();
    assert!(wanted.len() < 600 && wanted.len() > 400);
    let (rows, _, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows as usize, wanted.len());
    assert_same(&ids, &wanted, "rows from start_date on");
    assert_first_fromdate(&env, start - Duration::hours(1));
}
