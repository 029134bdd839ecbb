//! The process and the network misbehaving: SIGTERM and Ctrl-C from orchestrators and people,
//! and a host that cannot be reached.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::America::New_York;
use common::*;
use fake_postmark::{FakeConfig, generate};
use serde_json::{Value, json};

/// Four days of 5,000 messages (about 45 pages), served slowly enough that a sync takes seconds.
fn slow_env() -> Env {
    let config = FakeConfig {
        latency: Duration::from_millis(40),
        ..FakeConfig::default()
    };
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=4 {
        messages.extend(generate::day(d, "outbound", today - ChronoDuration::days(d as i64), 5_000));
    }
    Env::with_config(config, messages)
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The committed bookmark of messages_outbound, if a commit happened at all.
fn committed_bookmark(db: &std::path::Path) -> Option<DateTime<Utc>> {
    let conn = duckdb::Connection::open(db).ok()?;
    let text: String = conn.query_row("SELECT state FROM _postmark_elt_state WHERE id = 1", [], |r| r.get(0)).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    state["bookmarks"]["messages_outbound"]["outbound"]["replication_key_value"]
        .as_str()?
        .parse()
        .ok()
}

fn outbound_pages(env: &Env) -> usize {
    env.fake.requests().iter().filter(|r| r.path == "/messages/outbound").count()
}

/// SIGTERM and SIGINT, at several points of a sync: the run stops reading, keeps every window it
/// completed (rows and bookmark: every message before the bookmark is in the table), writes the
/// summary with `status: interrupted` and exits 130; the next run completes the data exactly once.
#[test]
fn a_signal_commits_what_is_complete_and_the_next_run_finishes() {
    for (name, pages) in [("TERM", 3), ("INT", 20), ("TERM", 33)] {
        let env = slow_env();
        let cfg = env.config(
            Utc::now() - ChronoDuration::days(5),
            json!({"message_streams": ["outbound"], "max_concurrency": 2, "commit_interval_seconds": 60}),
        );
        let summary = env.path("summary.json");
        let args = [
            "sync",
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--streams",
            "messages_outbound",
            "--summary-json",
            summary.to_str().unwrap_or_default(),
        ];
        let mut child = env.spawn(&args);
        let started = Instant::now();
        while outbound_pages(&env) < pages && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&child, name);
        let status = child.wait().expect("wait");
        let mut log = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut log).ok();
        }
        assert_eq!(status.code(), Some(130), "SIG{name} after {pages} pages: {log}");
        assert!(log.contains(&format!("SIG{name}")), "{log}");
        let report: Value = serde_json::from_slice(&std::fs::read(&summary).expect("summary written")).expect("summary json");
        assert_eq!(report["status"], "interrupted", "{report}");
        assert_eq!(report["exit_code"], 130);

        // What was committed is consistent: every message before the bookmark is there.
        let db = env.path("postmark.duckdb");
        let bookmark = committed_bookmark(&db);
        if pages >= 20 {
            assert!(bookmark.is_some(), "SIG{name} after {pages} pages kept no window");
        }
        if let Some(b) = bookmark {
            let (_, _, ids) = duckdb_ids(&db);
            let before: std::collections::HashSet<String> = env.fake.visible_messages().into_iter().filter(|m| m.received_at <= b).map(|m| m.id).collect();
            assert!(before.is_subset(&ids), "SIG{name}: messages before the bookmark {b} are missing");
        }
        assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap_or_default()]));
        let (rows, distinct, ids) = duckdb_ids(&db);
        assert_eq!(rows, distinct, "duplicates after SIG{name}");
        assert_same(&ids, &env.truth(), "after the run that follows the signal");
    }
}

/// A second signal stops at once, and still nothing committed is lost.
#[test]
fn a_second_signal_stops_at_once() {
    let env = slow_env();
    let cfg = env.config(
        Utc::now() - ChronoDuration::days(5),
        json!({"message_streams": ["outbound"], "max_concurrency": 2, "commit_interval_seconds": 1}),
    );
    let mut child = env.spawn(&["sync", "--config", cfg.to_str().unwrap_or_default()]);
    let started = Instant::now();
    while outbound_pages(&env) < 20 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "TERM");
    signal(&child, "TERM");
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap_or_default()]));
    let (rows, distinct, ids) = duckdb_ids(&env.path("postmark.duckdb"));
    assert_eq!(rows, distinct);
    assert_same(&ids, &env.truth(), "after two signals and a new run");
}

/// A host that refuses connections fails after the connect budget (1 + `max_connect_retries`
/// attempts of each of the run's first two requests, once for the run, not once per stream), with exit 5 and a message that says so,
/// not after the long retry budget.
#[test]
fn an_unreachable_host_fails_after_the_connect_budget() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let env = Env::new(Vec::new());
    let cfg = env.config(
        Utc::now() - ChronoDuration::days(1),
        json!({"base_url": format!("http://127.0.0.1:{port}"), "max_connect_retries": 2, "max_retries": 50, "retry_initial_delay_ms": 2000}),
    );
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("after 3 attempts") && stderr.contains("connection failed"), "{stderr}");
    // Listed once for the run: the streams started beside the first do not try again. The
    // server and its message streams are asked side by side, each within the budget.
    assert_eq!(stderr.matches("Request failed; retrying. request=GET /server ").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("Request failed; retrying. request=GET /message-streams").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("Request failed; retrying.").count(), 4, "{stderr}");
    assert!(!stderr.lines().last().unwrap_or_default().contains("failed earlier"), "{stderr}");
}
