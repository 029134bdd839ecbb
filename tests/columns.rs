//! The config's `columns` rules keep addresses out of every destination: dropped columns are
//! gone, hashed values are salted SHA-256 everywhere they sit (inside lists of structs too), the
//! salt is never written, and hashed recipients still join across tables.

mod common;

use std::path::Path;

use common::*;
use fake_postmark::generate;
use serde_json::{Value, json};

const SALT: &str = "salt-for-tests-0123456789";
/// Every recipient the fake generates has an address at this domain.
const RECIPIENT_DOMAIN: &str = "@example.net";
const STREAMS: &str = "messages_outbound,messages_opens,messages_clicks,bounces";

fn rules() -> Value {
    json!({
        "columns": {
            "messages_outbound": {"drop": ["subject", "to[].name", "cc", "bcc"], "hash": ["to[].email", "recipients"]},
            "messages_opens": {"hash": ["recipient"]},
            "messages_clicks": {"hash": ["recipient"]},
            "bounces": {"hash": ["email"]},
        },
        "column_hash_salt": SALT,
    })
}

fn env() -> Env {
    let mut messages = Vec::new();
    for d in 1..=3 {
        let date = chrono::Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive() - chrono::Duration::days(d);
        messages.extend(generate::day(d as u64, "outbound", date, 400));
    }
    let env = Env::new(messages);
    env.fake.generate_events(5);
    env
}

/// Every value of every Parquet file under `dir`, as text.
fn parquet_dump(dir: &Path) -> String {
    let mut out = String::new();
    for path in parquet_files(dir) {
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("footer")
            .build()
            .expect("reader");
        let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
        out.push_str(&arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string());
    }
    out
}

/// Raw bytes of every file under `dir` (compressed or not), lossily as text.
fn raw_dump(dir: &Path) -> String {
    let mut out = String::new();
    for entry in walk(dir) {
        out.push_str(&String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()));
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// Opens joined to their messages' recipients: by `recipients`, and by `to[].email`.
const JOINS: [&str; 2] = [
    "SELECT count(*) FROM messages_opens o JOIN (SELECT message_id, unnest(recipients) AS r FROM messages_outbound) m ON o.message_id = m.message_id AND o.recipient = m.r",
    "SELECT count(*) FROM messages_clicks c JOIN (SELECT message_id, unnest(\"to\") AS t FROM messages_outbound) m ON c.message_id = m.message_id AND c.recipient = m.t.email",
];

#[test]
fn no_address_reaches_any_destination_and_hashes_still_join() {
    let env = env();
    let start = eastern_days_ago(4);
    // The same data without rules: addresses are there, and the joins' figures.
    let clear_cfg = env.config(start, json!({}));
    assert_ok(&env.sync_streams(&clear_cfg, STREAMS, &["--path", "clear.duckdb"]));
    let clear = env.path("clear.duckdb");
    assert!(dump_all(&clear).contains(RECIPIENT_DOMAIN), "the fake's addresses reach a sync without rules");

    let cfg = env.config(start, rules());
    let out = env.sync_streams(&cfg, STREAMS, &[]);
    assert_ok(&out);
    let db = env.path("postmark.duckdb");
    let dumped = dump_all(&db);
    assert!(!dumped.contains(RECIPIENT_DOMAIN), "an address in the DuckDB tables");
    let raw = String::from_utf8_lossy(&std::fs::read(&db).expect("read db")).into_owned();
    assert!(
        !raw.contains(RECIPIENT_DOMAIN) && !raw.contains(SALT),
        "an address or the salt in the DuckDB file's bytes"
    );
    for join in JOINS {
        let (hashed, plain) = (scalar(&db, join), scalar(&clear, join));
        assert!(plain > 0, "the join finds rows: {join}");
        assert_eq!(hashed, plain, "hashed recipients join as clear ones do: {join}");
    }
    assert_eq!(
        scalar(&db, "SELECT count(DISTINCT recipient) FROM messages_opens"),
        scalar(&clear, "SELECT count(DISTINCT recipient) FROM messages_opens"),
        "one hash per address"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM messages_opens WHERE NOT regexp_full_match(recipient, '[0-9a-f]{64}')"
        ),
        0
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM (SELECT unnest(\"to\") AS t FROM messages_outbound) WHERE t.name IS NOT NULL"
        ),
        0
    );
    let columns = rows(&db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages_outbound'");
    assert!(
        columns.contains("to") && !columns.contains("subject") && !columns.contains("cc") && !columns.contains("bcc"),
        "{columns:?}"
    );
    assert_eq!(duckdb_ids(&db).2, env.truth(), "every message still arrives once");

    // Parquet: the decoded values and the files' bytes.
    assert_ok(&env.sync_streams(&cfg, STREAMS, &["--dest", "parquet", "--path", "pq"]));
    let pq = env.path("pq");
    let decoded = parquet_dump(&pq);
    assert!(
        decoded.contains("message_id") && !decoded.contains(RECIPIENT_DOMAIN),
        "an address in the Parquet files"
    );
    assert!(!raw_dump(&pq).contains(SALT));
    assert_eq!(
        parquet_strings(&pq, "messages_opens", "recipient").len() as i64,
        scalar(&db, "SELECT count(*) FROM messages_opens")
    );

    // Singer on stdout, and the logs of every run.
    let singer = env.sync_streams(&cfg, STREAMS, &["--dest", "singer"]);
    assert_ok(&singer);
    let stdout = String::from_utf8_lossy(&singer.stdout);
    assert!(
        stdout.contains("\"RECORD\"") && !stdout.contains(RECIPIENT_DOMAIN),
        "an address in the Singer output"
    );
    for run in [&out, &singer] {
        let logs = text(run);
        assert!(!logs.contains(SALT), "the salt in a run's output: {logs}");
    }
}

/// Rules are checked before anything runs: a misspelt field, a key dropped, a hash without a
/// salt each fail with exit 3 and a one-line error naming the fix.
#[test]
fn bad_rules_fail_before_the_run() {
    let env = Env::new(yesterday_messages(10));
    let cases = [
        (
            json!({"columns": {"messages_outbound": {"hash": ["to.mail"]}}, "column_hash_salt": SALT}),
            "no field `mail`",
        ),
        (json!({"columns": {"messages_outbound": {"drop": ["message_id"]}}}), "hash it instead"),
        (json!({"columns": {"messages_outbound": {"hash": ["recipients"]}}}), "POSTMARK_ELT_HASH_SALT"),
        (json!({"columns": {"messages_outbnd": {"drop": ["subject"]}}}), "not a stream"),
        (
            json!({"columns": {"messages_outbound": {"drop": ["subject"]}}, "column_hash_salt": "short"}),
            "shorter than 16",
        ),
    ];
    for (extra, expected) in cases {
        let cfg = env.config(two_days_ago(), extra.clone());
        let out = env.sync_streams(&cfg, "messages_outbound", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{extra}: {}", text(&out));
        assert!(stderr.contains(expected), "{extra}: {stderr}");
        assert!(!stderr.contains("short\""), "the salt is never echoed: {stderr}");
        assert!(env.fake.requests().is_empty(), "nothing was requested before the config was valid");
    }
}
