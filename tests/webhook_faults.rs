//! The webhook receiver when things go wrong: a full disk under the spool, an event that does
//! not fit its table, and clients that send their requests slowly or never.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::receiver::{SECRET, post, runtime, start, start_with, write_config};
use common::{Env, rows, scalar};
use serde_json::json;

/// A small tmpfs, unmounted when dropped. Mounting needs root (CI runs as root); the test fails
/// naming that rather than skipping.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill a disk and needs root for it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(&self.0).status().ok();
    }
}

fn open_event(id: &str, padding: usize) -> String {
    json!({"RecordType": "Open", "MessageID": id, "Recipient": "r@example.net", "ReceivedAt": "2026-11-30T10:00:00Z",
        "MessageStream": "outbound", "UserAgent": "x".repeat(padding)})
    .to_string()
}

/// With the spool on a disk that fills up, events get 503 (Postmark retries them) and a write
/// breaks off mid-line; once space is free again (here: a file the test removes, before any
/// rotation), every event answered 200 is loaded, once.
#[test]
fn a_full_disk_loses_no_acknowledged_event() {
    let env = Env::new(Vec::new());
    let disk = SmallDisk::mount(&env.path("spool"), "256k");
    // No rotation while the test runs: the file that broke off is the one written next.
    let config = write_config(&env, json!({"webhook_merge_interval_seconds": 3600}));
    let receiver = start_with(&env, &config, &["--spool", disk.0.to_str().unwrap_or_default()]);
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 200 * 1024]).expect("fill most of the disk");
    let url = receiver.url.clone();
    let (acked, refused) = runtime().block_on(async {
        let client = reqwest::Client::new();
        let (mut acked, mut refused) = (HashSet::new(), 0);
        for n in 0..60 {
            if refused > 0 && ballast.exists() {
                // Space comes back (another file goes) while the spool file holds a broken line.
                std::fs::remove_file(&ballast).expect("free the disk");
            }
            let id = format!("m-{n}");
            match post(&client, &url, open_event(&id, 7_000), Some(SECRET)).await {
                Ok(200) => {
                    acked.insert(id);
                }
                Ok(503) => refused += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        (acked, refused)
    });
    receiver.stop();
    assert!(refused >= 1, "the disk never filled");
    assert!(!ballast.exists() && acked.len() > 20, "{} acknowledged", acked.len());
    let loaded = rows(&env.path("hooks.duckdb"), "SELECT message_id FROM webhook_opens");
    let lost: Vec<&String> = acked.iter().filter(|id| !loaded.contains(*id)).take(3).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?} of {}", acked.len());
    assert_eq!(
        scalar(&env.path("hooks.duckdb"), "SELECT count(*) - count(DISTINCT message_id) FROM webhook_opens"),
        0
    );
}

/// An event that is JSON but does not fit its table is set aside with its error in
/// `<spool>/failed/`; the events around it, and every later merge, load.
#[test]
fn an_event_that_does_not_fit_is_set_aside() {
    let env = Env::new(Vec::new());
    let config = write_config(&env, json!({"webhook_merge_interval_seconds": 1}));
    let receiver = start(&env, &config);
    let bad = json!({"RecordType": "Open", "MessageID": "bad-1", "Recipient": "r@example.net", "ReceivedAt": "2026-11-30T10:00:00Z",
        "MessageStream": "outbound", "ReadSeconds": "a while"});
    runtime().block_on(async {
        let client = reqwest::Client::new();
        for i in 0..5 {
            assert_eq!(post(&client, &receiver.url, open_event(&format!("good-{i}"), 10), Some(SECRET)).await, Ok(200));
        }
        assert_eq!(post(&client, &receiver.url, bad.to_string(), Some(SECRET)).await, Ok(200));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // A later merge is not blocked.
        for i in 5..8 {
            assert_eq!(post(&client, &receiver.url, open_event(&format!("good-{i}"), 10), Some(SECRET)).await, Ok(200));
        }
    });
    receiver.stop();
    let loaded = rows(&env.path("hooks.duckdb"), "SELECT message_id FROM webhook_opens");
    let expected: HashSet<String> = (0..8).map(|i| format!("good-{i}")).collect();
    assert_eq!(loaded, expected);
    let failed: Vec<PathBuf> = std::fs::read_dir(env.path("hooks.duckdb.webhook-spool/failed"))
        .expect("failed folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let kept = std::fs::read_to_string(&failed[0]).expect("read set-aside file");
    assert!(kept.contains("bad-1") && kept.contains("ReadSeconds"), "{kept}");
}

/// Clients that dribble their headers are cut off after `webhook_read_timeout_seconds`, and
/// never hold more than `webhook_max_connections`: 300 of them do not stop a real delivery.
#[test]
fn slow_clients_cannot_exhaust_the_receiver() {
    let env = Env::new(Vec::new());
    let config = write_config(&env, json!({"webhook_read_timeout_seconds": 2, "webhook_max_connections": 100}));
    let receiver = start(&env, &config);
    let addr = receiver.url.trim_start_matches("http://").to_string();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").expect("half a request");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let mut still_open = 0;
    for s in slow.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(20))).ok();
        let mut byte = [0u8; 1];
        let waiting = matches!(s.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
        still_open += usize::from(waiting);
    }
    assert_eq!(still_open, 0, "{still_open} of 300 slow connections still open after 10 s");
    let status = runtime().block_on(async { post(&reqwest::Client::new(), &receiver.url, open_event("after", 10), Some(SECRET)).await });
    assert_eq!(status, Ok(200));
    receiver.stop();
}
