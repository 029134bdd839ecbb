//! Command-line conventions: global flags before or after the subcommand, help without
//! arguments, JSON on every stderr line with `--log-format json`, a closed stdout ending
//! quietly, and command-line mistakes as usage errors (exit 2).

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let env = Env::new(yesterday_messages(300));
    let cfg = env.config(two_days_ago(), json!({}));
    let cfg = cfg.to_str().expect("path");
    for args in [
        vec!["-q", "sync", "--config", cfg, "--streams", "messages_outbound"],
        vec!["sync", "--config", cfg, "--streams", "messages_outbound", "-q"],
    ] {
        let out = env.run(&args);
        assert_ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("INFO"), "-q leaves info lines out ({args:?}): {stderr}");
    }
    let out = env.run(&["--log-format", "json", "spec"]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"properties\""));
}

#[test]
fn no_arguments_print_help_and_mistakes_are_usage_errors() {
    let env = Env::new(Vec::new());
    let out = env.run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stderr);
    assert!(help.contains("Usage:") && help.contains("sync") && help.contains("airbyte"), "{help}");

    let cfg = env.config(two_days_ago(), json!({}));
    let out = env.run(&["sync", "--config", cfg.to_str().expect("path"), "--streams", "messages_outbound,mesages_opens"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mesages_opens") && stderr.contains("messages_opens"),
        "names the mistake and the streams: {stderr}"
    );
    assert!(env.fake.requests().is_empty(), "nothing is read after a usage error");

    let out = env.run(&["--config", "c.json", "sync", "--config", "c.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Every stderr line is a JSON object with `--log-format json`: the progress, the summary and
/// the final error.
#[test]
fn json_logs_make_every_stderr_line_json() {
    let env = Env::new(yesterday_messages(400));
    let cfg = env.config(two_days_ago(), json!({}));
    let json_lines = |stderr: &[u8]| -> Vec<Value> {
        String::from_utf8_lossy(stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let out = env.run(&[
        "--log-format",
        "json",
        "sync",
        "--config",
        cfg.to_str().expect("path"),
        "--streams",
        "messages_outbound,bounces",
    ]);
    assert_ok(&out);
    let lines = json_lines(&out.stderr);
    let synced: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "Stream synced.").collect();
    assert!(
        synced
            .iter()
            .any(|l| l["fields"]["stream"] == "messages_outbound" && l["fields"]["records"] == 400),
        "{lines:?}"
    );
    let summary = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Sync summary.")
        .expect("the run's summary line");
    assert_eq!(
        summary["fields"]["records"].as_u64(),
        Some(
            400 + synced
                .iter()
                .filter(|l| l["fields"]["stream"] == "bounces")
                .map(|l| l["fields"]["records"].as_u64().unwrap_or(0))
                .sum::<u64>()
        )
    );

    let out = env.run(&["sync", "--config", "missing.json", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let lines = json_lines(&out.stderr);
    let error = lines.last().expect("the error line");
    assert_eq!((error["level"].as_str(), error["fields"]["exit_code"].as_u64()), (Some("ERROR"), Some(3)));
    assert!(error["fields"]["message"].as_str().is_some_and(|m| m.contains("missing.json")), "{error}");
}

/// A reader that has gone (`| head`) ends the command quietly with exit 0, not a panic.
#[test]
fn closed_stdout_ends_quietly() {
    let env = Env::new(Vec::new());
    let cfg = env.config(two_days_ago(), json!({}));
    let cfg = cfg.to_str().expect("path");
    for args in [
        vec!["completions", "bash"],
        vec!["discover", "--config", cfg],
        vec!["docs"],
        vec!["spec"],
        vec!["--about"],
        vec!["airbyte", "spec"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Closed before the command writes: its first write fails with EPIPE.
        drop(reader);
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(env.dir.path())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{args:?}: {stderr}");
    }
}
