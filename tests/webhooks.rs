//! The webhook receiver, run as the real binary: every type lands typed and once, credentials and
//! limits are enforced, a kill -9 loses no acknowledged event, it shares the DuckDB file with
//! `sync`, and `webhooks install` registers it idempotently.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::receiver::{SECRET, post, runtime, start, write_config};
use common::{BIN, Env, assert_ok, dump_all, scalar, text};
use serde_json::{Value, json};

/// One payload of every type, composed from the reference (section 10).
fn payloads() -> Vec<(&'static str, Value)> {
    let md = json!({"order_id": "5521"});
    vec![
        (
            "webhook_bounces",
            json!({"RecordType": "Bounce", "MessageStream": "outbound", "ID": 4012295881i64, "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "receipt", "MessageID": "5f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d1", "Metadata": md, "ServerID": 118822, "Description": "Permanent failure", "Details": "smtp;550 5.1.1 user unknown", "Email": "gone@example.com", "From": "orders@shop.example", "BouncedAt": "2025-05-29T02:41:05.2230000Z", "DumpAvailable": true, "Inactive": true, "CanActivate": true, "Subject": "Your receipt #5521"}),
        ),
        (
            "webhook_spam_complaints",
            json!({"RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 4012295882i64, "Type": "SpamComplaint", "TypeCode": 100001, "Name": "Spam complaint", "MessageID": "6f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d2", "Metadata": {}, "ServerID": 118822, "Email": "angry@example.com", "BouncedAt": "2025-05-29T03:00:00.0000000Z", "Inactive": true, "CanActivate": false, "Subject": "News"}),
        ),
        (
            "webhook_smtp_api_errors",
            json!({"RecordType": "Bounce", "MessageStream": "outbound", "ID": 4012295883i64, "Type": "SMTPApiError", "TypeCode": 100007, "Name": "SMTP API error", "MessageID": "7f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d3", "Metadata": {}, "ServerID": 118822, "Email": "suppressed@example.com", "BouncedAt": "2025-05-29T04:00:00.0000000Z", "Inactive": false, "CanActivate": true}),
        ),
        (
            "webhook_deliveries",
            json!({"RecordType": "Delivery", "MessageStream": "outbound", "ServerID": 118822, "MessageID": "8f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d4", "Recipient": "ana@example.net", "Tag": "", "DeliveredAt": "2025-06-03T13:14:09.1200000Z", "Details": "250 2.0.0 OK", "Metadata": md}),
        ),
        (
            "webhook_opens",
            json!({"RecordType": "Open", "MessageStream": "outbound", "FirstOpen": false, "Client": {"Name": "Gmail", "Company": "Google", "Family": "Gmail"}, "OS": {"Name": "iOS 17", "Company": "Apple", "Family": "iOS"}, "Platform": "Mobile", "UserAgent": "Mozilla/5.0", "ReadSeconds": 0, "Geo": {}, "MessageID": "8f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d4", "Metadata": md, "ReceivedAt": "2025-06-03T14:02:44.0000000Z", "Tag": "receipt", "Recipient": "ana@example.net"}),
        ),
        (
            "webhook_clicks",
            json!({"RecordType": "Click", "MessageStream": "outbound", "ClickLocation": "HTML", "Client": {"Name": "Chrome 126", "Company": "Google", "Family": "Chrome"}, "OS": {"Name": "Windows 11", "Company": "Microsoft", "Family": "Windows"}, "Platform": "Desktop", "UserAgent": "Mozilla/5.0", "OriginalLink": "https://shop.example/orders/5521", "Geo": {"Country": "Portugal"}, "MessageID": "8f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d4", "Metadata": md, "ReceivedAt": "2025-06-03T14:03:10.1234567Z", "Tag": "receipt", "Recipient": "ana@example.net"}),
        ),
        (
            "webhook_subscription_changes",
            json!({"RecordType": "SubscriptionChange", "MessageID": null, "ServerID": 118822, "MessageStream": "broadcast", "ChangedAt": "2025-06-04T14:00:12.0000000Z", "Recipient": "li@example.org", "Origin": "Customer", "SuppressSending": false, "SuppressionReason": null, "Tag": null, "Metadata": {}}),
        ),
        (
            "webhook_inbound",
            json!({"FromName": "Li", "MessageStream": "inbound", "From": "li@example.org", "FromFull": {"Email": "li@example.org", "Name": "Li", "MailboxHash": ""}, "To": "support@inbound.postmarkapp.com", "ToFull": [{"Email": "support@inbound.postmarkapp.com", "Name": "", "MailboxHash": "ticket42"}], "Cc": "", "CcFull": [], "Bcc": "", "BccFull": [], "OriginalRecipient": "support@inbound.postmarkapp.com", "Subject": "Help", "MessageID": "9f1c2e0a-7a43-4c2b-9f0e-2d61b0a4c9d5", "ReplyTo": "", "MailboxHash": "ticket42", "Date": "Thu, 5 Nov 2026 16:33:54 -0500", "TextBody": "Hi", "HtmlBody": "<p>Hi</p>", "StrippedTextReply": "Hi", "Tag": "", "Headers": [{"Name": "X-Spam-Score", "Value": "0"}], "Attachments": [{"Name": "a.txt", "Content": "aGVsbG8=", "ContentType": "text/plain", "ContentLength": 5}]}),
        ),
    ]
}

/// Every type lands in its table, typed, once (each is posted twice); 401 without the secret,
/// 400 for malformed or unknown bodies, 413 above the size limit; the secret is stored nowhere.
#[test]
fn every_event_type_lands_once_and_bad_requests_are_refused() {
    let env = Env::new(Vec::new());
    let config = write_config(&env, json!({"webhook_max_body_bytes": 4096}));
    let receiver = start(&env, &config);
    let rt = runtime();
    let client = reqwest::Client::new();
    rt.block_on(async {
        for (_, body) in payloads() {
            for _ in 0..2 {
                assert_eq!(post(&client, &receiver.url, body.to_string(), Some(SECRET)).await, Ok(200), "{body}");
            }
        }
        let (_, open) = &payloads()[4];
        assert_eq!(post(&client, &receiver.url, open.to_string(), None).await, Ok(401));
        assert_eq!(post(&client, &receiver.url, open.to_string(), Some("wrong-secret-wrong-secret")).await, Ok(401));
        assert_eq!(post(&client, &receiver.url, "{not json".to_string(), Some(SECRET)).await, Ok(400));
        assert_eq!(
            post(&client, &receiver.url, json!({"RecordType": "Nope"}).to_string(), Some(SECRET)).await,
            Ok(400)
        );
        assert_eq!(
            post(
                &client,
                &receiver.url,
                json!({"RecordType": "Open", "MessageID": "x"}).to_string(),
                Some(SECRET)
            )
            .await,
            Ok(400)
        );
        let big = json!({"RecordType": "Open", "Pad": "x".repeat(8192)}).to_string();
        assert_eq!(post(&client, &receiver.url, big, Some(SECRET)).await, Ok(413));
    });
    receiver.stop();
    let db = env.path("hooks.duckdb");
    for (table, _) in payloads() {
        assert_eq!(
            scalar(&db, &format!("SELECT count(*) FROM {table} WHERE webhook_received_at IS NOT NULL")),
            1,
            "{table}"
        );
    }
    assert_eq!(scalar(&db, "SELECT read_seconds FROM webhook_opens"), 0);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM webhook_clicks WHERE client.family = 'Chrome' AND metadata['order_id'] = '5521'"
        ),
        1
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM webhook_subscription_changes WHERE NOT suppress_sending AND message_id IS NULL"
        ),
        1
    );
    assert!(!dump_all(&db).contains(SECRET));
    assert!(common::rows(&db, "SELECT a.name FROM (SELECT unnest(attachments) AS a FROM webhook_inbound)").contains("a.txt"));
}

/// kill -9 in the middle of a burst from concurrent clients; after a restart every event that
/// got a 200 is in the table exactly once.
#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_event() {
    let env = Env::new(Vec::new());
    let config = write_config(&env, json!({}));
    let mut receiver = start(&env, &config);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let rt = runtime();
    let url = receiver.url.clone();
    let burst = {
        let acked = acked.clone();
        rt.spawn(async move {
            let client = reqwest::Client::new();
            let mut tasks = Vec::new();
            for worker in 0..8 {
                let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
                tasks.push(tokio::spawn(async move {
                    let started = Instant::now();
                    for i in 0..2_000 {
                        if started.elapsed() > Duration::from_secs(20) {
                            break;
                        }
                        let at = format!("2025-06-03T14:{:02}:{:02}.{:07}Z", worker, i % 60, i);
                        let body = json!({"RecordType": "Open", "MessageID": format!("m-{worker}"), "Recipient": "r@example.net", "ReceivedAt": at, "MessageStream": "outbound"});
                        match post(&client, &url, body.to_string(), Some(SECRET)).await {
                            Ok(200) => {
                                acked.lock().unwrap().insert(format!("m-{worker}|{at}"));
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.ok();
            }
        })
    };
    // Kill once a good part of the burst is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 1_500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    receiver.child.kill().unwrap();
    receiver.child.wait().unwrap();
    rt.block_on(burst).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 1_500, "only {} events acknowledged before the kill", acked.len());

    let receiver = start(&env, &config);
    receiver.stop();
    let db = env.path("hooks.duckdb");
    let loaded = common::rows(&db, "SELECT message_id, strftime(received_at, '%Y-%m-%dT%H:%M:%S.%f') FROM webhook_opens");
    let dupes = scalar(&db, "SELECT count(*) - count(DISTINCT (message_id, recipient, received_at)) FROM webhook_opens");
    assert_eq!(dupes, 0);
    let normalise = |k: &String| {
        k.split('.').next().unwrap_or_default().trim_end_matches('Z').to_string() + &k[k.find('.').unwrap_or(0)..].chars().take(7).collect::<String>()
    };
    let loaded_keys: HashSet<String> = loaded.iter().map(normalise).collect();
    let missing: Vec<&String> = acked.iter().filter(|k| !loaded_keys.contains(&normalise(k))).take(3).collect();
    assert!(
        missing.is_empty(),
        "acknowledged events lost: {missing:?} ({} acked, {} loaded)",
        acked.len(),
        loaded.len()
    );
}

/// The receiver and `sync` share one DuckDB file: while a sync holds it, events stay spooled,
/// and they are merged once it is free.
#[test]
fn receiver_and_sync_share_the_database() {
    let env = Env::with_config(
        fake_postmark::FakeConfig {
            latency: Duration::from_millis(40),
            ..fake_postmark::FakeConfig::default()
        },
        // A day wholly in the past in US-Eastern time, whatever the time of day.
        fake_postmark::generate::day(5, "outbound", Utc::now().date_naive() - chrono::Duration::days(2), 4_000),
    );
    let start_date = (Utc::now() - chrono::Duration::days(4)).to_rfc3339();
    let config = write_config(&env, json!({"message_streams": ["outbound"], "max_concurrency": 1, "start_date": start_date}));
    let receiver = start(&env, &config);
    let mut sync = Command::new(BIN)
        .args([
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--path",
            "hooks.duckdb",
            "--streams",
            "messages_outbound",
        ])
        .current_dir(env.dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = runtime();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for (_, body) in payloads() {
            assert_eq!(post(&client, &receiver.url, body.to_string(), Some(SECRET)).await, Ok(200));
        }
    });
    assert!(sync.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(2_500));
    receiver.stop();
    let db = env.path("hooks.duckdb");
    assert_eq!(scalar(&db, "SELECT count(*) FROM messages_outbound"), 4_000);
    assert_eq!(scalar(&db, "SELECT count(*) FROM webhook_deliveries"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM webhook_inbound"), 1);
}

/// `webhooks install` creates the webhook with every trigger and the secret as basic-auth
/// password, then updates it (never a second one); `webhooks list` shows it.
#[test]
fn install_is_idempotent_and_list_shows_it() {
    let env = Env::new(Vec::new());
    let config = write_config(&env, json!({}));
    let url = "https://hooks.example.org/postmark";
    let out = env.run(&["webhooks", "install", "--config", config.to_str().unwrap(), "--url", url]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"), "{}", text(&out));
    let out = env.run(&["webhooks", "install", "--config", config.to_str().unwrap(), "--url", url]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("updated"), "{}", text(&out));
    let mut hooks = Vec::new();
    env.fake.with_data(0, |d| hooks = d.webhooks());
    let ours: Vec<&Value> = hooks.iter().filter(|w| w["Url"] == url).collect();
    assert_eq!(ours.len(), 1);
    let w = ours[0];
    assert_eq!(w["HttpAuth"]["Password"], SECRET);
    assert_eq!(w["MessageStream"], "outbound");
    for t in ["Open", "Click", "Delivery", "Bounce", "SpamComplaint", "SubscriptionChange"] {
        assert_eq!(w["Triggers"][t]["Enabled"], true, "{t}");
    }
    let out = env.run(&["webhooks", "list", "--config", config.to_str().unwrap()]);
    assert_ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(url) && listed.contains("Delivery"), "{listed}");
    assert!(!text(&out).contains(SECRET) && !text(&out).contains(fake_postmark::WEBHOOK_PASSWORD));
}
