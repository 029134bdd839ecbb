//! Helpers for tests that run the real binary against the fake Postmark server.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use chrono::{DateTime, Utc};
use fake_postmark::{FakeConfig, FakePostmark, Message, default_streams};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_postmark-elt");

pub struct Env {
    pub dir: TempDir,
    pub fake: FakePostmark,
}

impl Env {
    pub fn new(messages: Vec<Message>) -> Env {
        Self::with_config(FakeConfig::default(), messages)
    }

    pub fn with_config(config: FakeConfig, messages: Vec<Message>) -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            fake: FakePostmark::start(config, default_streams(), messages),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config (mode 600) for the fake, with fast retries; `extra` overrides keys.
    pub fn config(&self, start: DateTime<Utc>, extra: Value) -> PathBuf {
        let mut cfg = json!({
            "server_token": self.fake.token(),
            "base_url": self.fake.base_url(),
            "start_date": start.to_rfc3339(),
            "retry_initial_delay_ms": 5,
            "request_timeout_seconds": 10,
        });
        if let (Some(base), Some(more)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                base.insert(k.clone(), v.clone());
            }
        }
        let path = self.path("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&cfg).expect("json")).expect("write config");
        set_private(&path);
        path
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("POSTMARK_SERVER_TOKEN")
            .env_remove("RUST_LOG")
            .output()
            .expect("run postmark-elt")
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("POSTMARK_SERVER_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postmark-elt")
    }

    /// IDs of every message the API holds, the ground truth.
    pub fn truth(&self) -> HashSet<String> {
        self.fake.visible_messages().into_iter().map(|m| m.id).collect()
    }
}

#[cfg(unix)]
pub fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

pub fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
}

/// (rows, distinct message ids, the ids) of messages_outbound in a DuckDB file.
pub fn duckdb_ids(path: &Path) -> (i64, i64, HashSet<String>) {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let (rows, distinct): (i64, i64) = conn
        .query_row("SELECT count(*), count(DISTINCT message_id) FROM messages_outbound", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("count");
    let mut stmt = conn.prepare("SELECT message_id FROM messages_outbound").expect("prepare");
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    (rows, distinct, ids)
}

pub fn duckdb_state(path: &Path) -> Value {
    let conn = duckdb::Connection::open(path).expect("open duckdb");
    let text: String = conn
        .query_row("SELECT state FROM _postmark_elt_state WHERE id = 1", [], |r| r.get(0))
        .expect("state row");
    serde_json::from_str(&text).expect("state json")
}
