//! What the README and `--dry-run` tell a user holds: the README's SQL runs, its tables list every
//! stream and config key, and the plan touches nothing.

mod common;

use common::{BIN, Env, assert_ok, text, two_days_ago, yesterday_messages};
use serde_json::{Value, json};

/// Every SQL block in the README runs on a synced database, and the README's config table lists
/// every key of `spec`: the docs cannot drift from the code.
#[test]
fn readme_sql_runs_and_config_table_is_complete() {
    let readme = include_str!("../README.md");
    let env = Env::new(yesterday_messages(300));
    env.fake.generate_events(1);
    let cfg = env.config(two_days_ago(), json!({}));
    assert_ok(&env.run(&["sync", "--config", cfg.to_str().unwrap()]));
    let blocks: Vec<&str> = readme.split("```sql").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert!(!blocks.is_empty());
    for sql in blocks {
        let out = env.run(&["query", sql]);
        assert_ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("+--"), "{}", text(&out));
    }
    let spec: Value = serde_json::from_slice(&std::process::Command::new(BIN).arg("spec").output().unwrap().stdout).unwrap();
    for key in spec["properties"].as_object().unwrap().keys() {
        assert!(readme.contains(&format!("| `{key}` |")), "README config table lacks `{key}`");
    }
}

/// The README's stream table lists every stream with its primary key.
#[test]
fn readme_lists_every_stream() {
    let readme = include_str!("../README.md");
    for def in postmark_elt::streams::STREAMS {
        let row = format!("| `{}` |", def.name);
        let line = readme
            .lines()
            .find(|l| l.starts_with(&row) && l.contains("GET "))
            .unwrap_or_else(|| panic!("README lacks a row for {}", def.name));
        assert!(
            line.contains(&format!("| `{}` |", def.primary_key.join(", "))),
            "README key of {} is stale: {line}",
            def.name
        );
    }
}

/// `--dry-run` prints each stream partition's range and first request, and reads and writes
/// nothing else: only /server and /message-streams are called, no database is created.
#[test]
fn dry_run_shows_the_plan_and_touches_nothing() {
    let env = Env::new(yesterday_messages(100));
    let cfg = env.config(two_days_ago(), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().unwrap(), "--dry-run"]);
    assert_ok(&out);
    let plan = String::from_utf8_lossy(&out.stdout);
    let line = plan
        .lines()
        .find(|l| l.starts_with("messages_outbound") && l.contains("outbound "))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(
        line.contains("GET /messages/outbound?count=500&offset=0&fromdate=") && line.contains("messagestream=outbound"),
        "{line}"
    );
    assert!(
        plan.lines()
            .any(|l| l.starts_with("stats_outbound_sends") && l.contains("/stats/outbound/sends?fromdate=")),
        "{plan}"
    );
    let paths: std::collections::HashSet<String> = env.fake.requests().into_iter().map(|r| r.path).collect();
    let expected: std::collections::HashSet<String> = ["/server", "/message-streams"].iter().map(|s| s.to_string()).collect();
    assert_eq!(paths, expected);
    assert!(!env.path("postmark.duckdb").exists());
}

/// The plan is what runs: every first request `--dry-run` prints is a request the sync then
/// sends (the same path and parameters; `todate` moves on with the clock), for every stream.
#[test]
fn dry_run_plans_the_requests_the_sync_sends() {
    let env = Env::new(yesterday_messages(300));
    env.fake.generate_events(3);
    let start = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    let cfg = env.config(two_days_ago(), json!({"start_date": start}));
    let catalog = env.path("all.json");
    let out = env.run(&["discover", "--config", cfg.to_str().unwrap()]);
    let mut cat: Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in cat["streams"].as_array_mut().unwrap() {
        s["metadata"][0]["metadata"]["selected"] = json!(true);
    }
    std::fs::write(&catalog, cat.to_string()).unwrap();
    let args = ["sync", "--config", cfg.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()];
    let plan = env.run(&[&args[..], &["--dry-run"]].concat());
    assert_ok(&plan);
    let planned: Vec<String> = String::from_utf8_lossy(&plan.stdout)
        .lines()
        .filter_map(|l| l.split("GET ").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string))
        .collect();
    assert!(planned.len() >= 30, "{planned:?}");
    env.fake.clear_requests();
    assert_ok(&env.run(&args));
    let sent = env.fake.requests();
    for request in &planned {
        let (path, query) = request.split_once('?').unwrap_or((request, ""));
        let wanted: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("todate="))
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        let found = sent.iter().any(|r| {
            r.path.eq_ignore_ascii_case(path)
                && wanted.iter().all(|w| r.query.contains(w))
                && r.query.len() == wanted.len() + usize::from(query.contains("todate="))
        });
        assert!(found, "planned `GET {request}` was never sent");
    }
}

/// The packaging files name this version: the Airbyte image's label (the platform reads it),
/// the wheel's (maturin takes it from Cargo.toml), and `--about`.
#[test]
fn packaging_carries_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let dockerfile = include_str!("../airbyte/Dockerfile");
    assert!(
        dockerfile.contains(&format!("LABEL io.airbyte.version={version}\n")),
        "airbyte/Dockerfile's io.airbyte.version is not {version}"
    );
    let pyproject = include_str!("../pyproject.toml");
    assert!(
        pyproject.contains("dynamic = [\"version\"]") && pyproject.contains("bindings = \"bin\""),
        "{pyproject}"
    );
    let about = std::process::Command::new(common::BIN).arg("--about").output().expect("run --about");
    let about: serde_json::Value = serde_json::from_slice(&about.stdout).expect("--about is JSON");
    assert_eq!(about["version"], version);
}
