//! Groups of commits applied on a thread of their own (`DbSlot`).

use super::*;

/// A durable commit runs on a thread of its own: `commit` returns while its group is being
/// applied, the sink takes the next rows meanwhile, and `flush` waits for both groups.
#[test]
fn a_group_is_applied_while_the_sink_takes_the_next_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let (info, dec) = crate::sinks::messages_for_tests();
    let batch = |ids: &[&str]| dec.decode(page(ids).as_bytes(), &Default::default()).unwrap().batch;
    // Every commit falls due at once.
    let mut sink = grouping_commits(&path, std::time::Duration::ZERO);
    sink.begin_stream(&info).unwrap();
    let (open_gate, gate) = std::sync::mpsc::channel();
    let DbSlot::Idle(db) = &mut sink.db else { panic!("no group applied yet") };
    db.gate = Some(gate);
    sink.write("messages_outbound", &batch(&["a", "b"])).unwrap();
    let mut state = State::default();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now());
    sink.commit(None, &state).unwrap();
    assert!(matches!(sink.db, DbSlot::Applying(_)), "commit returned while its group is held");
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 0, "not durable yet");
    sink.write("messages_outbound", &batch(&["late"])).unwrap();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now() + chrono::Duration::seconds(5));
    open_gate.send(()).unwrap();
    sink.commit(None, &state).unwrap();
    sink.flush().unwrap();
    assert!(matches!(sink.db, DbSlot::Idle(_)), "flush returns once every group is durable");
    assert_eq!(count(&path, "SELECT count(*) FROM messages_outbound"), 3);
    let saved: String = Connection::open(&path)
        .unwrap()
        .query_row(&format!("SELECT state FROM {STATE_TABLE}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(State::from_stored(&saved).unwrap(), state, "the state of the last commit");
}

/// A group that fails on its thread fails the sink's next call, and no state is saved for it.
#[test]
fn a_group_that_fails_on_its_thread_fails_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.duckdb");
    let (info, dec) = crate::sinks::messages_for_tests();
    let mut sink = grouping_commits(&path, std::time::Duration::ZERO);
    sink.begin_stream(&info).unwrap();
    // The group's append will find no table.
    Connection::open(&path).unwrap().execute_batch("DROP TABLE messages_outbound").unwrap();
    sink.write("messages_outbound", &dec.decode(page(&["a"]).as_bytes(), &Default::default()).unwrap().batch)
        .unwrap();
    let mut state = State::default();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now());
    let committed = sink.commit(None, &state);
    let Err(e) = committed.and_then(|()| sink.flush()) else {
        panic!("the failed group went unreported")
    };
    assert!(e.to_string().contains("messages_outbound"), "{e}");
    assert_eq!(count(&path, &format!("SELECT count(*) FROM {STATE_TABLE}")), 0);
}
