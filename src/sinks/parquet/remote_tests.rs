//! The object-storage publishing of the Parquet sink, on a `file://` store (the same code path
//! as S3 past `object_store`; tests/object_storage.rs runs the binary against a real S3 server).

use super::*;
use chrono::Utc;

fn batch(dec: &crate::streams::extract::PageDecoder, ids: std::ops::Range<usize>, tag: &str) -> RecordBatch {
    let msgs: Vec<String> = ids
        .map(|i| format!(r#"{{"MessageID":"m{i}","ReceivedAt":"2026-11-01T10:00:00-05:00","Tag":"{tag}"}}"#))
        .collect();
    dec.decode(format!(r#"{{"TotalCount":0,"Messages":[{}]}}"#, msgs.join(",")).as_bytes(), &Default::default())
        .unwrap()
        .batch
}

fn manifest(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(MANIFEST_FILE)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

/// Every `.parquet` file under `root`, relative, sorted.
fn stored(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// (message_id, tag) of the manifest's files, sorted.
fn rows(root: &Path) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = manifest(root).into_iter().flat_map(|file| super::tests::file_rows(&root.join(file))).collect();
    rows.sort();
    rows
}

/// A flush publishes new files, then the manifest, then the state; re-sent keys go to a file
/// under a new name and the replaced one is deleted; the next open reads the state back, and
/// a file no manifest lists (a crash before its manifest) is deleted at the next publish.
#[test]
fn flushes_publish_new_names_then_manifest_then_state() {
    let root = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(root.path()).unwrap().to_string();
    let (info, dec) = crate::sinks::messages_for_tests();
    let mut state = State::default();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now());

    let mut sink = ParquetSink::open_url(&url).unwrap();
    assert_eq!(sink.load_state().unwrap(), None);
    assert!(stored(root.path()).is_empty(), "opening wrote files");
    sink.begin_stream(&info).unwrap();
    sink.write("messages_outbound", &batch(&dec, 0..3, "a")).unwrap();
    sink.commit(None, &state).unwrap();
    sink.flush().unwrap();
    let first = manifest(root.path());
    assert_eq!(first, vec!["messages_outbound/date=2026-11-01/part-000001.parquet".to_string()]);
    assert_eq!(stored(root.path()), first);
    assert!(root.path().join(STATE_FILE).exists());

    // m1 and m2 again, re-tagged, and a new m3: one file under the next name, the old one gone.
    sink.write("messages_outbound", &batch(&dec, 1..4, "b")).unwrap();
    sink.commit(None, &state).unwrap();
    sink.finish().unwrap();
    let second = manifest(root.path());
    assert_eq!(second, vec!["messages_outbound/date=2026-11-01/part-000002.parquet".to_string()]);
    assert_eq!(stored(root.path()), second, "the replaced file was not deleted");
    let expected: Vec<(String, String)> = [("m0", "a"), ("m1", "b"), ("m2", "b"), ("m3", "b")]
        .iter()
        .map(|(i, t)| (i.to_string(), t.to_string()))
        .collect();
    assert_eq!(rows(root.path()), expected);
    drop(sink);

    // A crash after a PUT and before its manifest leaves a file no manifest lists.
    let orphan = root.path().join("messages_outbound/date=2026-11-02/part-000009.parquet");
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::copy(root.path().join(&second[0]), &orphan).unwrap();
    let mut sink = ParquetSink::open_url(&url).unwrap();
    assert_eq!(sink.load_state().unwrap(), Some(state.clone()));
    assert!(orphan.exists(), "opening deleted a file (open writes nothing)");
    sink.begin_stream(&info).unwrap();
    sink.commit(None, &state).unwrap();
    sink.finish().unwrap();
    assert!(!orphan.exists(), "the orphan was not deleted");
    assert_eq!(stored(root.path()), second);
    assert_eq!(rows(root.path()), expected);
}

/// Parquet files under a prefix without a manifest were not written there by this destination:
/// the sink refuses them rather than deleting them as orphans.
#[test]
fn a_prefix_with_foreign_files_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let foreign = root.path().join("messages_outbound/date=2026-11-01/part-000001.parquet");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, b"PAR1").unwrap();
    let url = url::Url::from_directory_path(root.path()).unwrap().to_string();
    assert!(matches!(ParquetSink::open_url(&url), Err(SinkError::NotOurs { .. })));
    assert!(foreign.exists());
}
