//! Every stream against the fake: complete, exactly once, typed; stats equal the data; late and
//! overflowing events; catalog selection; account tokens and several servers.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, Utc};
use chrono_tz::America::New_York;
use common::data::{all_streams_catalog, busy_env, event_keys};
use common::{Env, assert_ok, assert_same, dump_all, eastern_days_ago, rows, scalar, text};
use fake_postmark::{Event, FakeConfig, default_streams, generate};
use serde_json::json;

/// Every stream loads completely and exactly once, without secrets.
#[test]
fn every_stream_loads_completely_once_and_without_secrets() {
    let env = busy_env(FakeConfig::default());
    let catalog = all_streams_catalog(&env);
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", &catalog]);
    assert_ok(&out);
    // A second run must not duplicate anything either.
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", &catalog]));
    let db = env.path("postmark.duckdb");
    let truth = env.fake.visible(0);

    let ids = |sql: &str| rows(&db, sql);
    assert_same(
        &ids("SELECT message_id FROM messages_outbound"),
        &truth.messages.iter().map(|m| m.id.clone()).collect(),
        "messages_outbound",
    );
    assert_same(
        &ids("SELECT id::VARCHAR FROM bounces"),
        &truth.bounces.iter().map(|b| b.id.to_string()).collect(),
        "bounces",
    );
    assert_same(
        &ids("SELECT message_id FROM messages_inbound"),
        &truth.inbound.iter().map(|i| i.id.clone()).collect(),
        "messages_inbound",
    );
    assert!(truth.inbound.iter().any(|i| i.status == "Blocked"), "the data set has blocked inbound mail");
    assert_same(
        &ids("SELECT message_id, recipient, received_at FROM messages_opens"),
        &event_keys(&truth.opens, false),
        "messages_opens",
    );
    assert_same(
        &ids("SELECT message_id, recipient, original_link, received_at FROM messages_clicks"),
        &event_keys(&truth.clicks, true),
        "messages_clicks",
    );
    for (table, key) in [
        ("messages_outbound", "message_id"),
        ("bounces", "id"),
        ("messages_opens", "message_id, recipient, received_at"),
        ("messages_clicks", "message_id, recipient, original_link, received_at"),
        ("message_events", "message_id, recipient, type, received_at"),
        ("templates", "server_id, template_id"),
        ("suppressions", "server_id, message_stream, email_address"),
    ] {
        let dupes = scalar(&db, &format!("SELECT count(*) - count(DISTINCT ({key})) FROM {table}"));
        assert_eq!(dupes, 0, "duplicates in {table}");
    }
    // message_events: one Delivered per recipient, every open, click and bounce.
    let recipients: usize = truth.messages.iter().map(|m| m.to.len()).sum();
    assert_eq!(scalar(&db, "SELECT count(*) FROM message_events WHERE type = 'Delivered'") as usize, recipients);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM message_events WHERE type = 'Opened'") as usize,
        truth.opens.len()
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM message_events WHERE type = 'Bounced'") as usize,
        truth.bounces.len()
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM message_events WHERE details['BounceID'] IS NOT NULL") as usize,
        truth.bounces.len()
    );
    // bounce_dumps: one row per bounce (all are younger than the 30 days Postmark keeps dumps),
    // holding that bounce's source; one request per bounce, none for anything else.
    assert_same(
        &ids("SELECT bounce_id::VARCHAR FROM bounce_dumps"),
        &truth.bounces.iter().map(|b| b.id.to_string()).collect(),
        "bounce_dumps",
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM bounce_dumps WHERE body NOT LIKE '%(bounce ' || bounce_id || ')%'"),
        0
    );
    assert_eq!(scalar(&db, "SELECT count(*) - count(DISTINCT bounce_id) FROM bounce_dumps"), 0);
    // Full tables.
    assert_eq!(scalar(&db, "SELECT count(*) FROM inbound_rules WHERE server_id = 118822"), 3);
    assert_eq!(scalar(&db, "SELECT count(*) FROM inbound_rules WHERE rule = 'bulk.example.org'"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM templates"), 7);
    assert_eq!(scalar(&db, "SELECT count(*) FROM message_streams"), 3);
    assert_eq!(scalar(&db, "SELECT count(*) FROM webhooks"), 2);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM server WHERE id = 118822 AND name = 'Fake Shop Production'"),
        1
    );
    let inactive: HashSet<(String, String)> = truth
        .bounces
        .iter()
        .filter(|b| b.inactive)
        .map(|b| (b.stream.clone(), b.email.clone()))
        .collect();
    assert_eq!(scalar(&db, "SELECT count(*) FROM suppressions") as usize, inactive.len());
    assert_eq!(
        scalar(&db, "SELECT inactive_mails FROM delivery_stats WHERE name = 'All'") as usize,
        inactive.iter().map(|(_, e)| e).collect::<HashSet<_>>().len()
    );
    // Scope columns and falsy values.
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM messages_opens WHERE server_id IS DISTINCT FROM 118822 OR message_stream IS NULL"
        ),
        0
    );
    assert!(
        scalar(&db, "SELECT count(*) FROM messages_opens WHERE read_seconds = 0") > 0,
        "zero read seconds kept"
    );
    assert!(scalar(&db, "SELECT count(*) FROM templates WHERE NOT active") == 1, "false kept");
    // No secrets anywhere in the warehouse.
    let everything = dump_all(&db);
    for secret in [env.fake.token(), fake_postmark::WEBHOOK_PASSWORD, fake_postmark::WEBHOOK_HEADER_VALUE] {
        assert!(!everything.contains(secret), "a secret reached the warehouse");
    }
    assert!(!text(&out).contains(env.fake.token()));
}

/// Stats rows add up to the generated data, one row per Eastern day and message stream even for
/// days the API leaves out.
#[test]
fn stats_equal_the_generated_data() {
    let env = busy_env(FakeConfig::default());
    let start = eastern_days_ago(4);
    let cfg = env.config(start, json!({}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let db = env.path("postmark.duckdb");
    let truth = env.fake.visible(0);
    let days = (Utc::now().with_timezone(&New_York).date_naive() - start.with_timezone(&New_York).date_naive()).num_days() + 1;

    for stream in ["outbound", "broadcast"] {
        let sent: usize = truth.messages.iter().filter(|m| m.stream == stream).map(|m| m.to.len()).sum();
        let q = |sql: &str| scalar(&db, &sql.replace("$S", stream));
        assert_eq!(q("SELECT sum(sent) FROM stats_outbound_sends WHERE message_stream = '$S'") as usize, sent);
        assert_eq!(
            q("SELECT count(*) FROM stats_outbound_sends WHERE message_stream = '$S'"),
            days,
            "one row per day, zeros included"
        );
        let opens = truth.opens.iter().filter(|e| e.stream == stream).count();
        assert_eq!(q("SELECT sum(opens) FROM stats_outbound_opens WHERE message_stream = '$S'") as usize, opens);
        assert_eq!(
            q("SELECT sum(desktop + mobile + web_mail + \"unknown\") FROM stats_outbound_platforms WHERE message_stream = '$S'") as usize,
            opens
        );
        assert_eq!(q("SELECT sum(count) FROM stats_outbound_clients WHERE message_stream = '$S'") as usize, opens);
        let clicks = truth.clicks.iter().filter(|e| e.stream == stream).count();
        assert_eq!(q("SELECT sum(clicks) FROM stats_outbound_clicks WHERE message_stream = '$S'") as usize, clicks);
        assert_eq!(
            q("SELECT sum(html + text) FROM stats_outbound_click_locations WHERE message_stream = '$S'") as usize,
            clicks
        );
        assert_eq!(
            q("SELECT sum(count) FROM stats_outbound_browser_families WHERE message_stream = '$S'") as usize,
            clicks
        );
        let hard = truth.bounces.iter().filter(|b| b.stream == stream && b.kind == "HardBounce").count();
        assert_eq!(
            q("SELECT sum(hard_bounce) FROM stats_outbound_bounces WHERE message_stream = '$S'") as usize,
            hard
        );
        let spam = truth.bounces.iter().filter(|b| b.stream == stream && b.kind == "SpamComplaint").count();
        assert_eq!(
            q("SELECT sum(spam_complaint) FROM stats_outbound_spam WHERE message_stream = '$S'") as usize,
            spam
        );
        assert_eq!(q("SELECT sum(sent) FROM stats_outbound_overview WHERE message_stream = '$S'") as usize, sent);
        assert_eq!(
            q("SELECT sum(total_clicks) FROM stats_outbound_overview WHERE message_stream = '$S'") as usize,
            clicks
        );
    }
    // Per day, too: opens by Eastern day.
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    for e in truth.opens.iter().filter(|e| e.stream == "outbound") {
        *by_day.entry(e.received_at.with_timezone(&New_York).date_naive().to_string()).or_default() += 1;
    }
    let loaded = rows(
        &db,
        "SELECT date::VARCHAR, opens FROM stats_outbound_opens WHERE message_stream = 'outbound' AND opens > 0",
    );
    let expected: HashSet<String> = by_day.iter().map(|(d, n)| format!("{d}|{n}")).collect();
    assert_same(&loaded, &expected, "opens per day");
}

/// Opens that arrive days after the send are picked up by the next run.
#[test]
fn late_opens_are_picked_up_by_the_next_run() {
    let env = busy_env(FakeConfig::default());
    let cfg = env.config(eastern_days_ago(4), json!({}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let db = env.path("postmark.duckdb");
    let before = scalar(&db, "SELECT count(*) FROM messages_opens");

    // Late opens now, for messages sent three days ago.
    let old: Vec<_> = env
        .fake
        .visible(0)
        .messages
        .into_iter()
        .filter(|m| m.received_at < Utc::now() - Duration::days(2))
        .take(25)
        .collect();
    let mut rng = fake_postmark::rng(99);
    let late: Vec<Event> = old
        .iter()
        .map(|m| generate::event(&mut rng, m, &m.to[0].0, Utc::now() - Duration::seconds(30), false, false))
        .collect();
    env.fake.with_data(0, |d| d.add_opens(late.clone()));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    assert_eq!(scalar(&db, "SELECT count(*) FROM messages_opens"), before + 25);
    let loaded = rows(&db, "SELECT message_id, recipient, received_at FROM messages_opens");
    assert!(event_keys(&late, false).is_subset(&loaded));
    assert_same(&loaded, &event_keys(&env.fake.visible(0).opens, false), "messages_opens");
}

/// More than 10,000 opens since the last run: all loaded, whether the API honours date filters
/// on the opens list or not (then through the per-message endpoint), and the summary says how.
#[test]
fn more_than_ten_thousand_opens_are_all_loaded() {
    // The last: a list only nearly newest first (events up to 10 min out of order), which
    // the reads beyond the offset limit cannot be sure to reach: it is reported, not silent.
    for (date_filters, jitter) in [(true, 0), (false, 0), (true, 600)] {
        let config = FakeConfig {
            event_date_filters: date_filters,
            order_jitter: Duration::seconds(jitter),
            ..FakeConfig::default()
        };
        let now = Utc::now();
        let messages = generate::between(5, "outbound", now - Duration::days(2), now - Duration::hours(1), 3_800);
        let env = Env::with_config(config, messages.clone());
        let mut rng = fake_postmark::rng(6);
        let mut opens = Vec::new();
        // Only messages sent with open tracking can be opened.
        for m in messages.iter().filter(|m| m.track_opens) {
            for k in 0..4 {
                opens.push(generate::event(
                    &mut rng,
                    m,
                    &m.to[0].0,
                    m.received_at + Duration::minutes(10 + k),
                    k == 0,
                    false,
                ));
            }
        }
        env.fake.with_data(0, |d| d.add_opens(opens));
        let cfg = env.config(now - Duration::days(3), json!({"message_streams": ["outbound"]}));
        std::fs::write(env.path("opens.json"), r#"{"streams":[{"tap_stream_id":"messages_opens","selected":true}]}"#).unwrap();
        let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "opens.json"]);
        assert_ok(&out);
        let db = env.path("postmark.duckdb");
        let truth = env.fake.visible(0).opens;
        assert!(truth.len() > 10_000);
        let loaded = rows(&db, "SELECT message_id, recipient, received_at FROM messages_opens");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if jitter > 0 {
            assert!(stderr.contains("the list was not newest first"), "the disorder went unreported: {stderr}");
            assert!(loaded.is_subset(&event_keys(&truth, false)), "rows the API does not hold");
            continue;
        }
        assert_same(&loaded, &event_keys(&truth, false), &format!("opens with date filters {date_filters}"));
        let expected_note = if date_filters { "date windows" } else { "one by one" };
        assert!(stderr.contains("10,000 offset limit") && stderr.contains(expected_note), "{stderr}");
    }
}

/// A catalog selecting one stream syncs that stream only.
#[test]
fn catalog_selects_streams() {
    let env = busy_env(FakeConfig::default());
    let cfg = env.config(eastern_days_ago(4), json!({}));
    std::fs::write(
        env.path("bounces.json"),
        r#"{"streams":[{"tap_stream_id":"bounces","selected":true},{"tap_stream_id":"messages_outbound","selected":false}]}"#,
    )
    .unwrap();
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap(), "--catalog", "bounces.json"]));
    let paths: HashSet<String> = env.fake.requests().into_iter().map(|r| r.path).collect();
    let expected: HashSet<String> = ["/server", "/message-streams", "/bounces"].iter().map(|s| s.to_string()).collect();
    assert_eq!(paths, expected);
    let db = env.path("postmark.duckdb");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'messages_outbound'"),
        0
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM bounces") as usize, env.fake.visible(0).bounces.len());
}

/// A wrong account token stops the run with exit 4 and a message naming `account_token`.
#[test]
fn wrong_account_token_is_a_clear_error() {
    let env = busy_env(FakeConfig::default());
    let cfg = env.config(eastern_days_ago(2), json!({"account_token": "not-the-account-token"}));
    for verb in ["check", "sync"] {
        let out = env.run(&[verb, "--config", cfg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(4), "{verb}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("account_token") && stderr.contains("HTTP 401"), "{stderr}");
        assert!(!stderr.contains("not-the-account-token"));
    }
}

/// With `servers: "all"` and only the account token, every server is synced with its own token,
/// and every row says which server it came from.
#[test]
fn several_servers_through_the_account() {
    let env = busy_env(FakeConfig::default());
    let second = env.fake.add_server("Fake Shop Staging", "second-server-token", default_streams());
    let now = Utc::now();
    env.fake.with_data(1, |d| {
        d.add_messages(generate::between(77, "outbound", now - Duration::days(1), now - Duration::hours(1), 250))
    });
    let path = env.path("account.json");
    std::fs::write(
        &path,
        json!({"account_token": env.fake.account_token(), "servers": "all", "base_url": env.fake.base_url(),
               "start_date": eastern_days_ago(4).to_rfc3339(), "retry_initial_delay_ms": 5})
        .to_string(),
    )
    .unwrap();
    common::set_private(&path);
    let out = env.run(&["sync", "--config", path.to_str().unwrap()]);
    assert_ok(&out);
    let db = env.path("postmark.duckdb");
    let first = env.fake.visible(0);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM messages_outbound WHERE server_id = 118822") as usize,
        first.messages.len()
    );
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM messages_outbound WHERE server_id = {second}")), 250);
    assert_eq!(scalar(&db, "SELECT count(DISTINCT server_id) FROM templates"), 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM servers"), 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM domains"), 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM sender_signatures"), 1);
    let everything = dump_all(&db);
    assert!(
        !everything.contains("second-server-token") && !everything.contains(env.fake.token()),
        "server tokens reached the warehouse"
    );
    // Bookmarks are kept per server.
    let state = common::duckdb_state(&db);
    assert!(state["bookmarks"]["messages_outbound"][format!("{second}/outbound")].is_object(), "{state}");
}

/// Streams are read side by side (sharing the request limit), and the server and its message
/// streams are listed once per run however many streams ask for them.
#[test]
fn streams_run_side_by_side_and_listings_are_fetched_once() {
    let env = busy_env(FakeConfig {
        latency: std::time::Duration::from_millis(20),
        ..FakeConfig::default()
    });
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let out = env.run(&[
        "sync",
        "--config",
        cfg.to_str().unwrap(),
        "--streams",
        "messages_outbound,messages_opens,bounces",
    ]);
    assert_ok(&out);
    let requests = env.fake.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/server").count(), 1, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| **p == "/message-streams").count(), 1, "{paths:?}");
    let first = |p: &str| paths.iter().position(|x| *x == p).unwrap();
    let last = |p: &str| paths.iter().rposition(|x| *x == p).unwrap();
    assert!(
        first("/messages/outbound/opens") < last("/messages/outbound") && first("/bounces") < last("/messages/outbound"),
        "streams were read one after another: {paths:?}"
    );
    assert_eq!(
        scalar(&env.path("postmark.duckdb"), "SELECT count(*) FROM messages_outbound") as usize,
        env.fake.visible(0).messages.len()
    );
}
