//! What analysts use: the models a sync creates as views (their figures against the fake's
//! ground truth), the same files run by dbt-duckdb, and stats read per tag.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use common::*;
use fake_postmark::generate;
use serde_json::json;

const RAW: &str = "messages_outbound,messages_opens,messages_clicks,bounces";

fn env() -> Env {
    let mut messages = Vec::new();
    for d in 1..=4 {
        let date = Utc::now().with_timezone(&New_York).date_naive() - chrono::Duration::days(d);
        messages.extend(generate::day(d as u64, "outbound", date, 300));
        messages.extend(generate::day(40 + d as u64, "broadcast", date, 60));
    }
    let env = Env::new(messages);
    env.fake.generate_events(11);
    env
}

fn eastern(t: DateTime<Utc>) -> String {
    t.with_timezone(&New_York).date_naive().to_string()
}

/// An empty tag is no tag, as the models count it.
fn tag(t: &Option<String>) -> String {
    t.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "-".to_string())
}

/// `key -> figures` rows of a query whose columns are text keys then integer figures.
fn table(db: &Path, sql: &str, keys: usize) -> BTreeMap<Vec<String>, Vec<i64>> {
    let conn = duckdb::Connection::open(db).expect("open");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let width = stmt.query([]).expect("query").as_ref().map_or(0, |s| s.column_count());
    let rows = stmt
        .query_map([], |r| {
            let key = (0..keys)
                .map(|i| r.get::<_, Option<String>>(i).map(|v| v.unwrap_or_else(|| "-".to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let values = (keys..width).map(|i| r.get::<_, i64>(i)).collect::<Result<Vec<_>, _>>()?;
            Ok((key, values))
        })
        .expect("rows");
    rows.map(|r| r.expect("row")).collect()
}

#[test]
fn models_match_the_fake_and_dbt_runs_the_same_files() {
    let env = env();
    let cfg = env.config(eastern_days_ago(5), json!({}));
    assert_ok(&env.sync_streams(&cfg, RAW, &[]));
    let db = env.path("postmark.duckdb");
    let truth = env.fake.visible(0);

    // Deliverability per day, stream and tag.
    let mut expected: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
    let mut add = |stream: &str, t: &Option<String>, day: String, i: usize, n: i64| {
        expected.entry(vec![stream.to_string(), tag(t), day]).or_insert_with(|| vec![0; 7])[i] += n;
    };
    for m in &truth.messages {
        add(&m.stream, &m.tag, eastern(m.received_at), 0, 1);
        add(&m.stream, &m.tag, eastern(m.received_at), 1, m.to.len() as i64);
    }
    // Events count on their message's send day, with its stream and tag.
    let sent_on: BTreeMap<&str, &fake_postmark::Message> = truth.messages.iter().map(|m| (m.id.as_str(), m)).collect();
    let cohort = |id: &str, stream: &str, t: &Option<String>, at: DateTime<Utc>| match sent_on.get(id) {
        Some(m) => (m.stream.clone(), m.tag.clone(), eastern(m.received_at)),
        None => (stream.to_string(), t.clone(), eastern(at)),
    };
    for b in &truth.bounces {
        let (stream, t, day) = cohort(&b.message_id, &b.stream, &b.tag, b.bounced_at);
        let i = match b.kind.as_str() {
            "HardBounce" => Some(3),
            "SoftBounce" | "Transient" => Some(4),
            "SpamComplaint" => Some(5),
            _ => None,
        };
        if b.kind != "SpamComplaint" {
            add(&stream, &t, day.clone(), 2, 1);
        }
        if let Some(i) = i {
            add(&stream, &t, day, i, 1);
        }
    }
    let mut first_open: BTreeMap<(&str, &str), &fake_postmark::Event> = BTreeMap::new();
    for e in &truth.opens {
        let slot = first_open.entry((e.message_id.as_str(), e.recipient.as_str())).or_insert(e);
        if e.received_at < slot.received_at {
            *slot = e;
        }
    }
    for e in first_open.values() {
        let (stream, t, day) = cohort(&e.message_id, &e.stream, &e.tag, e.received_at);
        add(&stream, &t, day, 6, 1);
    }
    let got = table(
        &db,
        "SELECT message_stream, tag, day::VARCHAR, messages, sent, bounced, hard_bounces, soft_bounces, spam_complaints, unique_opens FROM postmark_deliverability_daily",
        3,
    );
    assert_eq!(got, expected, "deliverability per day, stream and tag");
    let rates = table(
        &db,
        "SELECT 'all', round(1000 * sum(bounced) / sum(sent))::BIGINT, round(1000 * max(abs(bounce_rate - bounced / sent)))::BIGINT FROM postmark_deliverability_daily WHERE sent > 0",
        1,
    );
    assert_eq!(rates[&vec!["all".to_string()]][1], 0, "bounce_rate is bounced over sent");

    // Engagement per message.
    let mut per_message: BTreeMap<Vec<String>, Vec<i64>> = truth.messages.iter().map(|m| (vec![m.id.clone()], vec![0, 0, 0])).collect();
    for (events, i) in [(&truth.opens, 0), (&truth.clicks, 1)] {
        for e in events {
            if let Some(row) = per_message.get_mut(&vec![e.message_id.clone()]) {
                row[i] += 1;
            }
        }
    }
    for b in truth.bounces.iter().filter(|b| b.kind != "SpamComplaint") {
        if let Some(row) = per_message.get_mut(&vec![b.message_id.clone()]) {
            row[2] = 1;
        }
    }
    let got = table(&db, "SELECT message_id, opens, clicks, bounced::INTEGER FROM postmark_message_engagement", 1);
    assert_eq!(got, per_message, "engagement per message");

    // Bounce reasons and the client mix.
    let mut by_type: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
    for b in &truth.bounces {
        by_type.entry(vec![b.kind.clone()]).or_insert_with(|| vec![0])[0] += 1;
    }
    assert_eq!(
        table(&db, "SELECT type, sum(bounces)::BIGINT FROM postmark_bounce_reasons GROUP BY type", 1),
        by_type
    );
    let mut mix: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
    for (events, name) in [(&truth.opens, "open"), (&truth.clicks, "click")] {
        for e in events {
            mix.entry(vec![name.to_string(), e.platform.clone(), e.client_family.clone()])
                .or_insert_with(|| vec![0])[0] += 1;
        }
    }
    assert_eq!(
        table(
            &db,
            "SELECT event, platform, client_family, sum(events)::BIGINT FROM postmark_client_mix GROUP BY ALL",
            3
        ),
        mix
    );

    // dbt-duckdb runs the shipped files into another schema, with the same result.
    let project = env.path("dbt");
    std::fs::create_dir_all(project.join("models")).expect("mkdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/postmark");
    for file in std::fs::read_dir(&shipped).expect("models dir").flatten() {
        std::fs::copy(file.path(), project.join("models").join(file.file_name())).expect("copy model");
    }
    std::fs::write(
        project.join("dbt_project.yml"),
        "name: postmark_analytics\nversion: '1.0'\nprofile: postmark\nmodel-paths: [models]\nmodels:\n  postmark_analytics:\n    +materialized: table\n",
    )
    .expect("project");
    std::fs::write(
        project.join("profiles.yml"),
        format!(
            "postmark:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {}\n      schema: analytics\n      threads: 1\n",
            db.display()
        ),
    )
    .expect("profiles");
    let python = python_tool("dbt");
    let dbt = python.with_file_name("dbt");
    let out = Command::new(&dbt)
        .args(["run", "--profiles-dir", ".", "--project-dir", "."])
        .current_dir(&project)
        .env("DO_NOT_TRACK", "1")
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("run dbt (scripts/python-tools.sh dbt installs it)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("PASS=4"),
        "dbt run: {}",
        text(&out)
    );
    for model in postmark_elt::models::MODELS {
        let differ = scalar(
            &db,
            &format!(
                "SELECT count(*) FROM ((SELECT * FROM main.{m} EXCEPT ALL SELECT * FROM analytics.{m}) UNION ALL (SELECT * FROM analytics.{m} EXCEPT ALL SELECT * FROM main.{m}))",
                m = model.name
            ),
        );
        assert_eq!(differ, 0, "dbt's {} differs from the view", model.name);
        assert!(scalar(&db, &format!("SELECT count(*) FROM analytics.{}", model.name)) > 0);
    }
}

/// `stats_tags: "all"` reads every stats stream for the tags messages_outbound has seen, each
/// row keyed with its tag, the total with a null tag; a second run replaces rather than adds.
#[test]
fn stats_are_read_per_tag() {
    let env = env();
    let cfg = env.config(eastern_days_ago(5), json!({"stats_tags": "all"}));
    let streams = "messages_outbound,stats_outbound_sends,stats_outbound_overview";
    assert_ok(&env.sync_streams(&cfg, streams, &[]));
    let db = env.path("postmark.duckdb");
    let truth = env.fake.visible(0);
    let mut sent: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
    for m in &truth.messages {
        // Every message counts in the total (null tag), a tagged one also under its tag.
        let day = eastern(m.received_at);
        sent.entry(vec!["-".to_string(), day.clone()]).or_insert_with(|| vec![0])[0] += m.to.len() as i64;
        if let Some(t) = m.tag.clone().filter(|t| !t.is_empty()) {
            sent.entry(vec![t, day]).or_insert_with(|| vec![0])[0] += m.to.len() as i64;
        }
    }
    let query = "SELECT tag, date::VARCHAR, sum(sent)::BIGINT FROM stats_outbound_sends GROUP BY ALL HAVING sum(sent) > 0";
    assert_eq!(table(&db, query, 2), sent, "sent per tag and day, and in total");
    let tags: BTreeSet<String> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/stats/outbound/sends")
        .filter_map(|r| r.param("tag").map(str::to_string))
        .collect();
    assert_eq!(
        tags,
        ["password-reset", "receipt", "welcome"].map(String::from).into(),
        "one request per tag seen"
    );
    let overview = "SELECT count(*) FROM stats_outbound_overview";
    let rows = scalar(&db, overview);
    let days = scalar(&db, "SELECT count(DISTINCT (message_stream, date)) FROM stats_outbound_overview");
    assert_eq!(rows, 4 * days, "a total and three tags per day and message stream");

    // Again, with a listed tag: the totals and that tag are replaced, nothing is added.
    let listed = env.config(eastern_days_ago(5), json!({"stats_tags": ["welcome"]}));
    env.fake.clear_requests();
    assert_ok(&env.sync_streams(&listed, streams, &[]));
    assert_eq!(table(&db, query, 2), sent, "no row counted twice after a second run");
    assert_eq!(scalar(&db, overview), rows);
    let asked: BTreeSet<String> = env.fake.requests().iter().filter_map(|r| r.param("tag").map(str::to_string)).collect();
    assert_eq!(asked, BTreeSet::from(["welcome".to_string()]));
}

/// Two Postmark accounts share one DuckDB file, one `schema` each: tables, states and models
/// stay apart, and `query` and `report` read the schema they are given.
#[test]
fn accounts_share_one_file_by_schema() {
    let shop = Env::new(yesterday_messages(300));
    let blog = Env::new(yesterday_messages(120));
    let db = shop.path("shared.duckdb");
    for (env, schema) in [(&shop, "shop"), (&blog, "blog")] {
        let cfg = env.config(two_days_ago(), json!({"schema": schema}));
        assert_ok(&env.sync_streams(&cfg, RAW, &["--path", db.to_str().unwrap_or_default()]));
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM shop.messages_outbound"), 300);
    assert_eq!(scalar(&db, "SELECT count(*) FROM blog.messages_outbound"), 120);
    assert_eq!(scalar(&db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main'"), 0);
    let count = |schema: &str| {
        let out = shop.run(&[
            "query",
            "--path",
            db.to_str().unwrap_or_default(),
            "--schema",
            schema,
            "SELECT count(*) AS n FROM messages_outbound",
        ]);
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(count("shop").contains("| 300 |") && count("blog").contains("| 120 |"));
    // A second run of one account starts from the bookmark in its own schema's state.
    let state: serde_json::Value =
        serde_json::from_str(&rows(&db, "SELECT state FROM blog._postmark_elt_state").into_iter().next().expect("state")).expect("json");
    let bookmark = state["bookmarks"]["messages_outbound"]["outbound"]["replication_key_value"]
        .as_str()
        .expect("bookmark");
    let bookmark = DateTime::parse_from_rfc3339(bookmark).expect("time").with_timezone(&Utc);
    let cfg = blog.config(two_days_ago(), json!({"schema": "blog"}));
    blog.fake.clear_requests();
    assert_ok(&blog.sync_streams(&cfg, RAW, &["--path", db.to_str().unwrap_or_default()]));
    // The overlap (60 min) and the hour date-window reads start early.
    assert_first_fromdate(&blog, bookmark - chrono::Duration::minutes(120));
    let out = shop.run(&["report", "--path", db.to_str().unwrap_or_default(), "--schema", "blog", "--out", "blog.html"]);
    assert_ok(&out);
    let html = std::fs::read_to_string(shop.path("blog.html")).expect("report");
    assert!(html.contains("<b>120</b>"), "the blog's report counts the blog's messages");
}
