use super::*;
use chrono::Utc;

// Commits applied on their own thread.
mod background;

fn page(ids: &[&str]) -> String {
    let msgs: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"MessageID":"{id}","ReceivedAt":"2026-03-08T01:59:59.1234567-05:00","Tag":"","To":[{{"Email":"a@b","Name":""}}],"Metadata":{{"k":"v"}},"TrackOpens":false}}"#))
        .collect();
    format!(r#"{{"TotalCount":{},"Messages":[{}]}}"#, ids.len(), msgs.join(","))
}

fn count(path: &Path, sql: &str) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A sink whose durable commits are at least `interval` apart.
fn grouping_commits(path: &Path, interval: std::time::Duration) -> DuckdbSink {
    let options = SinkOptions {
        commit_interval: interval,
        ..SinkOptions::default()
    };
    DuckdbSink::open(path, options).unwrap()
}

/// Messages a and b written through the sink's thread, and a commit of them.
async fn commit_a_window(handle: &crate::sinks::SinkHandle, dec: &crate::streams::extract::PageDecoder) {
    let batch = dec.decode(page(&["a", "b"]).as_bytes(), &Default::default()).unwrap().batch;
    handle.write("messages_outbound", batch).await.unwrap();
    let mut state = State::default();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now());
    handle.commit("messages_outbound", state).await.unwrap();
}

/// The messages a read-only reader sees now, during a sync (0 while the file is held).
fn visible_messages(path: &Path) -> i64 {
    read_only(path, "main", std::time::Duration::from_secs(5))
        .ok()
        .and_then(|c| c.query_row("SELECT count(*) FROM messages_outbound", [], |r| r.get::<_, i64>(0)).ok())
        .unwrap_or(0)
}

/// Rows and state commit together; re-writing a key replaces the row; uncommitted rows vanish.
#[test]
fn merge_on_key_and_state_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let (info, dec) = crate::sinks::messages_for_tests();
    let mut state = State::default();
    {
        let mut sink = DuckdbSink::open(&path, SinkOptions::default()).unwrap();
        assert_eq!(sink.load_state().unwrap(), None);
        sink.begin_stream(&info).unwrap();
        sink.write(
            "messages_outbound",
            &dec.decode(page(&["a", "b"]).as_bytes(), &Default::default()).unwrap().batch,
        )
        .unwrap();
        // "b" twice in one commit (a shared window boundary) and again in the next commit.
        sink.write(
            "messages_outbound",
            &dec.decode(page(&["b", "c"]).as_bytes(), &Default::default()).unwrap().batch,
        )
        .unwrap();
        state.advance("messages_outbound", "outbound", "received_at", Utc::now());
        sink.commit(None, &state).unwrap();
        sink.write(
            "messages_outbound",
            &dec.decode(page(&["c", "d"]).as_bytes(), &Default::default()).unwrap().batch,
        )
        .unwrap();
        sink.commit(None, &state).unwrap();
        sink.write("messages_outbound", &dec.decode(page(&["e"]).as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        sink.finish().unwrap();
    }
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 4);
    assert_eq!(count(&path, "SELECT count(DISTINCT message_id) FROM messages_outbound"), 4);
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound WHERE tag = '' AND NOT track_opens"), 4);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM messages_outbound WHERE metadata['k'] = 'v' AND \"to\"[1].email = 'a@b'"
        ),
        4
    );
    assert_eq!(
        count(&path, "SELECT epoch(received_at)::BIGINT FROM messages_outbound LIMIT 1"),
        chrono::DateTime::parse_from_rfc3339("2026-03-08T06:59:59Z").unwrap().timestamp()
    );
    let mut again = DuckdbSink::open(&path, SinkOptions::default()).unwrap();
    assert_eq!(again.load_state().unwrap(), Some(state));
}

/// With a fixed cursor, older copies of a key are looked for only in the cursor range of
/// the rows merged (committed rows and those of the open transaction alike), and not at all
/// for rows after the latest one a first load committed; without one, anywhere.
#[test]
fn older_copies_are_looked_for_in_the_cursor_range() {
    let dir = tempfile::tempdir().unwrap();
    let (fixed, dec) = crate::sinks::messages_for_tests();
    assert!(fixed.cursor_fixed);
    let moving = StreamInfo {
        cursor_fixed: false,
        ..fixed.clone()
    };
    let at = |id: &str, when: &str, tag: &str| {
        let body = format!(r#"{{"TotalCount":1,"Messages":[{{"MessageID":"{id}","ReceivedAt":"{when}","Tag":"{tag}"}}]}}"#);
        dec.decode(body.as_bytes(), &Default::default()).unwrap().batch
    };
    for info in [&fixed, &moving] {
        let path = dir.path().join(format!("{}.duckdb", info.cursor_fixed));
        let run = |rows: &[(&str, &str, &str)]| {
            let mut sink = DuckdbSink::open(&path, SinkOptions::default()).unwrap();
            sink.begin_stream(info).unwrap();
            for (id, when, tag) in rows {
                sink.write("messages_outbound", &at(id, when, tag)).unwrap();
                sink.commit(None, &State::default()).unwrap();
            }
            sink.finish().unwrap();
        };
        // Into the empty table: "a" again after a later row (a re-read window).
        run(&[
            ("a", "2026-11-02T10:00:00Z", "1"),
            ("b", "2026-11-02T12:00:00Z", "1"),
            ("a", "2026-11-02T10:00:00Z", "1b"),
        ]);
        assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound WHERE message_id = 'a' AND tag = '1b'"), 1);
        assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 2);
        // A copy of "a" an hour earlier: what a fixed cursor promises never to happen.
        Connection::open(&path)
            .unwrap()
            .execute_batch("INSERT INTO messages_outbound (message_id, received_at, tag) VALUES ('a', TIMESTAMP '2026-11-02 09:00:00', 'planted')")
            .unwrap();
        // "b" twice within one transaction: the second delete finds the uncommitted copy.
        run(&[
            ("a", "2026-11-02T10:00:00Z", "2"),
            ("b", "2026-11-02T12:00:00Z", "2"),
            ("b", "2026-11-02T12:00:00Z", "3"),
        ]);
        let a = count(&path, "SELECT count(*) FROM messages_outbound WHERE message_id = 'a'");
        assert_eq!(a, if info.cursor_fixed { 2 } else { 1 }, "cursor_fixed {}", info.cursor_fixed);
        assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound WHERE message_id = 'a' AND tag = '2'"), 1);
        assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound WHERE message_id = 'b'"), 1);
        assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound WHERE message_id = 'b' AND tag = '3'"), 1);
    }
}

/// The configured memory cap and one thread reach DuckDB.
#[test]
fn options_reach_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let options = SinkOptions {
        duckdb_memory_limit_mb: 100,
        ..SinkOptions::default()
    };
    let mut sink = DuckdbSink::open(&dir.path().join("t.duckdb"), options).unwrap();
    let db = sink.db().unwrap();
    assert!(db.conn.is_none(), "the file is closed between commits");
    db.connect().unwrap();
    let setting = |name: &str| {
        db.conn()
            .unwrap()
            .query_row(&format!("SELECT current_setting('{name}')::VARCHAR"), [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    assert_eq!(setting("memory_limit"), "95.3 MiB");
    assert_eq!(setting("threads"), "1");
    assert_eq!(setting("disabled_compression_methods").to_lowercase(), "dictionary,fsst");
}

/// Streams run concurrently: a commit of one stream leaves another's staged rows staged,
/// and they vanish if the run ends before that stream commits.
#[test]
fn commit_covers_only_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let (info, dec) = crate::sinks::messages_for_tests();
    let other = StreamInfo {
        name: "other".to_string(),
        ..info.clone()
    };
    {
        let mut sink = DuckdbSink::open(&path, SinkOptions::default()).unwrap();
        sink.begin_stream(&info).unwrap();
        sink.begin_stream(&other).unwrap();
        sink.write("other", &dec.decode(page(&["x"]).as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        sink.write(
            "messages_outbound",
            &dec.decode(page(&["a", "b"]).as_bytes(), &Default::default()).unwrap().batch,
        )
        .unwrap();
        sink.replace("other", None).unwrap();
        sink.commit(Some("messages_outbound"), &State::default()).unwrap();
        sink.finish().unwrap();
    }
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM other"), 0);
}

/// Two accounts share one file, one schema each: their tables and states stay apart, and the
/// file is closed after every durable commit.
#[test]
fn schemas_keep_accounts_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let (info, dec) = crate::sinks::messages_for_tests();
    for (schema, ids) in [("shop", vec!["a", "b"]), ("blog", vec!["c"])] {
        let options = SinkOptions {
            duckdb_schema: schema.to_string(),
            ..SinkOptions::default()
        };
        let mut sink = DuckdbSink::open(&path, options).unwrap();
        assert_eq!(sink.load_state().unwrap(), None, "{schema} starts with no state");
        sink.begin_stream(&info).unwrap();
        sink.write("messages_outbound", &dec.decode(page(&ids).as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        let mut state = State::default();
        state.advance("messages_outbound", schema, "received_at", Utc::now());
        sink.commit(None, &state).unwrap();
        sink.flush().unwrap();
        assert!(sink.db().unwrap().conn.is_none(), "closed after a durable commit");
        sink.finish().unwrap();
    }
    assert_eq!(count(&path, "SELECT count(*) FROM shop.messages_outbound"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM blog.messages_outbound WHERE message_id = 'c'"), 1);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = 'messages_outbound'"
        ),
        0
    );
    let state = |schema: &str| {
        let c = Connection::open(&path).unwrap();
        c.query_row(&format!("SELECT state FROM {schema}.{STATE_TABLE}"), [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    assert!(state("shop").contains("\"shop\"") && !state("shop").contains("\"blog\""), "{}", state("shop"));
    assert!(state("blog").contains("\"blog\""), "{}", state("blog"));
}

/// The models' Eastern-day macro agrees with the time zone database on every 17th minute of
/// three years, the daylight-saving changes included.
#[test]
fn eastern_date_macro_matches_the_tz_database() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(&crate::models::eastern_date_macro("main")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT epoch_us(t), main.eastern_date(t)::VARCHAR FROM \
             (SELECT TIMESTAMP '2025-01-01' + to_minutes(i * 17) AS t FROM range(0, 92_000) r(i))",
        )
        .unwrap();
    let rows: Vec<(i64, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 92_000);
    for (micros, day) in rows {
        let t = DateTime::from_timestamp_micros(micros).unwrap();
        let expected = t.with_timezone(&chrono_tz::America::New_York).date_naive().to_string();
        assert_eq!(day, expected, "at {t}");
    }
}

/// A queued commit's rows wait in a spill file beside the database, not in memory; applying
/// the queue removes it, and a file a crashed run left is removed by the next sink.
#[test]
fn queued_rows_wait_on_disk_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let queue_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with(".t.duckdb.queue-"))
            .count()
    };
    std::fs::write(dir.path().join(".t.duckdb.queue-7.arrow"), b"left by a killed run").unwrap();
    let (info, dec) = crate::sinks::messages_for_tests();
    let mut sink = DuckdbSink::open(&path, SinkOptions::default()).unwrap();
    assert_eq!(queue_files(), 0, "a leftover spill file is removed at open");
    sink.begin_stream(&info).unwrap();
    let mut state = State::default();
    for (i, ids) in [["a", "b"], ["c", "d"]].iter().enumerate() {
        sink.write("messages_outbound", &dec.decode(page(ids).as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        state.advance("messages_outbound", "outbound", "received_at", Utc::now());
        sink.commit(None, &state).unwrap();
        assert_eq!(queue_files(), i + 1, "each queued commit's rows are in a file");
        assert!(sink.queued.iter().all(|q| !matches!(q, Queued::Replace(..))));
    }
    // Nothing is in the database before the durable commit.
    assert_eq!(
        Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM messages_outbound", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );
    sink.flush().unwrap();
    assert_eq!(queue_files(), 0, "applied spill files are removed");
    sink.finish().unwrap();
    drop(sink);
    assert_eq!(count(&path, "SELECT count(DISTINCT message_id) FROM messages_outbound"), 4);
}

/// A queued commit falls due `commit_interval` after the last durable one even when no further
/// command comes: a reader sees a window's rows while the sync is still on a longer next one.
#[tokio::test]
async fn a_queued_commit_is_applied_when_it_falls_due_without_another_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let interval = std::time::Duration::from_secs(2);
    let opened = Instant::now();
    let sink = grouping_commits(&path, interval);
    let (info, dec) = crate::sinks::messages_for_tests();
    let handle = crate::sinks::SinkHandle::spawn(Box::new(sink));
    handle.begin_stream(info).await.unwrap();
    commit_a_window(&handle, &dec).await;
    let visible = || visible_messages(&path);
    if opened.elapsed() < interval / 2 {
        assert_eq!(visible(), 0, "the commit came before the interval since the open, so it was queued");
    }
    // Nothing more is sent; the queued commit must still land.
    let deadline = Instant::now() + interval + std::time::Duration::from_secs(20);
    while visible() < 2 {
        assert!(Instant::now() < deadline, "the queued commit was not applied when it fell due");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(opened.elapsed() >= interval, "applied before it fell due");
    handle.finish().unwrap();
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 2);
}

/// A queued commit falls due also while the sink is kept busy: with the channel never empty
/// (the next window's rows keep coming faster than they are staged), the window before is
/// still applied within `commit_interval`, not when the sender pauses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_commit_is_applied_when_it_falls_due_while_rows_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let interval = std::time::Duration::from_secs(1);
    let sink = grouping_commits(&path, interval);
    let (info, dec) = crate::sinks::messages_for_tests();
    let handle = std::sync::Arc::new(crate::sinks::SinkHandle::spawn(Box::new(sink)));
    handle.begin_stream(info).await.unwrap();
    commit_a_window(&handle, &dec).await;
    // The next window's rows, sent back to back until the reader has seen the first window.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Large enough that staging it (keys encoded and looked up) takes longer than sending it.
    let ids: Vec<String> = (0..2_000).map(|i| format!("c{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let next = dec.decode(page(&ids).as_bytes(), &Default::default()).unwrap().batch;
    let sender = {
        let (handle, seen) = (handle.clone(), seen.clone());
        tokio::spawn(async move {
            let until = Instant::now() + interval * 15;
            let mut writes = 0u64;
            while !seen.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                handle.write("messages_outbound", next.clone()).await.unwrap();
                writes += 1;
            }
            writes
        })
    };
    let reader_path = path.clone();
    let visible = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let rows = visible_messages(&reader_path);
            if rows == 2 || started.elapsed() > interval * 12 {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                return rows;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let writes = sender.await.unwrap();
    assert_eq!(visible, 2, "the queued commit was not applied while rows kept coming ({writes} writes)");
    assert!(writes > 100, "the sink was not kept busy: {writes} writes");
    let Ok(handle) = std::sync::Arc::try_unwrap(handle) else {
        panic!("the sender still holds the sink")
    };
    handle.finish().unwrap();
    // The next window was never committed: its rows are dropped.
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 2);
}
