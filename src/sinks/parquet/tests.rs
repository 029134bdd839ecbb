use super::*;
use chrono::Utc;

fn page(ids: &[(&str, &str)]) -> String {
    let msgs: Vec<String> = ids
        .iter()
        .map(|(id, at)| format!(r#"{{"MessageID":"{id}","ReceivedAt":"{at}","Tag":""}}"#))
        .collect();
    format!(r#"{{"TotalCount":{},"Messages":[{}]}}"#, ids.len(), msgs.join(","))
}

/// (message_id, tag) of every row of a Parquet file of messages.
pub(super) fn file_rows(path: &Path) -> Vec<(String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    let mut rows = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let ids = crate::streams::extract::string_column(&b, "message_id").unwrap();
        let tags = crate::streams::extract::string_column(&b, "tag").unwrap();
        rows.extend((0..b.num_rows()).map(|i| (ids.value(i).to_string(), tags.value(i).to_string())));
    }
    rows
}

/// (message_id, tag) of every row of every file of a partition folder, sorted.
fn rows_in(folder: &Path) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = files_in(folder).into_iter().flat_map(|file| file_rows(&folder.join(file))).collect();
    rows.sort();
    rows
}

/// The names of the Parquet files in a folder, sorted.
fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    names.sort();
    names
}

fn read_all(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for day in fs::read_dir(dir.join("messages_outbound")).unwrap() {
        ids.extend(rows_in(&day.unwrap().path()).into_iter().map(|(id, _)| id));
    }
    ids.sort();
    ids
}

/// Messages `m{from}..m{to}` received at `at`, tagged `tag`.
fn tagged(dec: &crate::streams::extract::PageDecoder, ids: std::ops::Range<usize>, at: &str, tag: &str) -> RecordBatch {
    let msgs: Vec<String> = ids.map(|i| format!(r#"{{"MessageID":"m{i}","ReceivedAt":"{at}","Tag":"{tag}"}}"#)).collect();
    dec.decode(format!(r#"{{"TotalCount":0,"Messages":[{}]}}"#, msgs.join(",")).as_bytes(), &Default::default())
        .unwrap()
        .batch
}

fn flush(sink: &mut ParquetSink, batch: RecordBatch) {
    sink.write("messages_outbound", &batch).unwrap();
    sink.commit(None, &State::default()).unwrap();
    sink.flush().unwrap();
}

/// Rows land in date partitions, re-sent keys replace old rows, state follows the files,
/// and a second open of the directory is refused while the first holds it.
#[test]
fn partitions_merge_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let (info, dec) = crate::sinks::messages_for_tests();
    let mut state = State::default();
    state.advance("messages_outbound", "outbound", "received_at", Utc::now());
    for round in 0..2 {
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        if round == 0 {
            assert!(matches!(ParquetSink::open(dir.path()), Err(SinkError::Locked { .. })));
        }
        sink.begin_stream(&info).unwrap();
        let body = page(&[
            ("a", "2026-11-01T23:30:00-05:00"),
            ("b", "2026-11-02T10:00:00Z"),
            ("a", "2026-11-01T23:30:00-05:00"),
        ]);
        sink.write("messages_outbound", &dec.decode(body.as_bytes(), &Default::default()).unwrap().batch)
            .unwrap();
        sink.commit(None, &state).unwrap();
        // Staged but never committed: must not appear.
        sink.write(
            "messages_outbound",
            &dec.decode(page(&[("zz", "2026-11-02T10:00:00Z")]).as_bytes(), &Default::default())
                .unwrap()
                .batch,
        )
        .unwrap();
        sink.finish().unwrap();
    }
    assert_eq!(read_all(dir.path()), vec!["a", "b"]);
    // 23:30 EST on Nov 1 is 04:30 UTC on Nov 2: both rows in one UTC-date partition.
    assert_eq!(files_in(&dir.path().join("messages_outbound/date=2026-11-02")), vec![part_name(1)]);
    let mut sink = ParquetSink::open(dir.path()).unwrap();
    assert_eq!(sink.load_state().unwrap(), Some(state));
}

/// A partition larger than a row group, rewritten with overlapping keys: several row
/// groups, each key once, and the newest row of a key wins (also between batches).
#[test]
fn large_partition_rewrites_in_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (info, dec) = crate::sinks::messages_for_tests();
    let tagged = |from: usize, to: usize, tag: &str| {
        let msgs: Vec<String> = (from..to)
            .map(|i| format!(r#"{{"MessageID":"m{i}","ReceivedAt":"2026-11-02T10:00:00Z","Tag":"{tag}"}}"#))
            .collect();
        dec.decode(format!(r#"{{"TotalCount":0,"Messages":[{}]}}"#, msgs.join(",")).as_bytes(), &Default::default())
            .unwrap()
            .batch
    };
    let mut sink = ParquetSink::open(dir.path()).unwrap();
    sink.begin_stream(&info).unwrap();
    sink.write("messages_outbound", &tagged(0, 30_000, "first")).unwrap();
    sink.commit(None, &State::default()).unwrap();
    sink.flush().unwrap();
    sink.write("messages_outbound", &tagged(20_000, 25_000, "old")).unwrap();
    sink.write("messages_outbound", &tagged(20_000, 40_000, "second")).unwrap();
    sink.commit(None, &State::default()).unwrap();
    sink.finish().unwrap();

    let folder = dir.path().join("messages_outbound/date=2026-11-02");
    assert_eq!(files_in(&folder), vec![part_name(1)], "the second flush merged into the small first file");
    let file = File::open(folder.join(part_name(1))).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert!(
        builder.metadata().num_row_groups() >= 40_000 / ROW_GROUP_ROWS,
        "{} row groups",
        builder.metadata().num_row_groups()
    );
    // Unique ids outgrow the dictionary limit and fall back to plain encoding, so no row
    // group holds (or was written holding) a dictionary of every id.
    for group in builder.metadata().row_groups() {
        let ids = group.columns().iter().find(|c| c.column_path().string() == "message_id").unwrap();
        // The encodings of data pages: a plain page is one written after the fallback.
        let pages = ids.page_encoding_stats_mask().expect("page encoding statistics");
        assert!(
            pages.is_set(parquet::basic::Encoding::PLAIN),
            "no plain fallback: {:?}",
            pages.encodings().collect::<Vec<_>>()
        );
    }
    let mut tags: HashMap<String, String> = HashMap::new();
    let mut rows = 0;
    for b in builder.build().unwrap() {
        let b = b.unwrap();
        let ids = crate::streams::extract::string_column(&b, "message_id").unwrap();
        let tag = crate::streams::extract::string_column(&b, "tag").unwrap();
        for i in 0..b.num_rows() {
            rows += 1;
            tags.insert(ids.value(i).to_string(), tag.value(i).to_string());
        }
    }
    assert_eq!((rows, tags.len()), (40_000, 40_000));
    assert_eq!(tags["m0"], "first");
    assert_eq!(tags["m20000"], "second");
    assert_eq!(tags["m39999"], "second");
}

/// Streams run concurrently: a commit of one stream leaves another's staged rows staged,
/// and they vanish if the run ends before that stream commits.
#[test]
fn commit_covers_only_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (info, dec) = crate::sinks::messages_for_tests();
    let other = StreamInfo {
        name: "other".to_string(),
        ..info.clone()
    };
    let mut sink = ParquetSink::open(dir.path()).unwrap();
    sink.begin_stream(&info).unwrap();
    sink.begin_stream(&other).unwrap();
    let rows = |id| dec.decode(page(&[(id, "2026-11-02T10:00:00Z")]).as_bytes(), &Default::default()).unwrap().batch;
    sink.write("other", &rows("x")).unwrap();
    sink.write("messages_outbound", &rows("a")).unwrap();
    sink.commit(Some("messages_outbound"), &State::default()).unwrap();
    sink.finish().unwrap();
    assert_eq!(read_all(dir.path()), vec!["a"]);
    assert_eq!(fs::read_dir(dir.path().join("other")).unwrap().count(), 0);
}

/// A flush whose keys are new adds a file and leaves the large ones untouched; a small last
/// file takes the rows; keys held by several files replace their old copies in all of them
/// at once, through the staging folder, and the files not concerned stay (linked).
/// The same where folders cannot be exchanged (the merged file replaces the newest old one,
/// then the others are deleted): the same files and rows in the end.
#[test]
fn files_are_added_merged_and_replaced_together() {
    for exchange_folders in [true, false] {
        added_merged_and_replaced(exchange_folders);
    }
}

fn added_merged_and_replaced(exchange_folders: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (info, dec) = crate::sinks::messages_for_tests();
    let day = "2026-11-02T10:00:00Z";
    let folder = dir.path().join("messages_outbound/date=2026-11-02");
    let mut sink = ParquetSink::open(dir.path()).unwrap();
    sink.compact_rows = 100;
    sink.exchange_folders = exchange_folders;
    sink.begin_stream(&info).unwrap();
    flush(&mut sink, tagged(&dec, 0..300, day, "a"));
    let first = fs::read(folder.join(part_name(1))).unwrap();
    flush(&mut sink, tagged(&dec, 300..600, day, "b"));
    assert_eq!(files_in(&folder), vec![part_name(1), part_name(2)]);
    assert_eq!(
        fs::read(folder.join(part_name(1))).unwrap(),
        first,
        "a large file with none of the keys is not rewritten"
    );
    flush(&mut sink, tagged(&dec, 600..650, day, "c"));
    flush(&mut sink, tagged(&dec, 650..700, day, "d"));
    assert_eq!(
        files_in(&folder),
        vec![part_name(1), part_name(2), part_name(3)],
        "a small last file takes new rows"
    );
    let third = fs::read(folder.join(part_name(3))).unwrap();
    // Keys in files 1 and 2 (and not 3): both are replaced by one file, named as the newest.
    flush(&mut sink, tagged(&dec, 250..350, day, "e"));
    sink.finish().unwrap();
    assert_eq!(files_in(&folder), vec![part_name(2), part_name(3)]);
    assert_eq!(fs::read(folder.join(part_name(3))).unwrap(), third);
    assert!(!dir.path().join(STAGING_DIR).exists());
    let rows = rows_in(&folder);
    assert_eq!(rows.len(), 700, "each key once");
    let tag = |id: &str| rows.iter().find(|(i, _)| i == id).map(|(_, t)| t.as_str());
    assert_eq!(
        (tag("m0"), tag("m250"), tag("m349"), tag("m350"), tag("m620"), tag("m699")),
        (Some("a"), Some("e"), Some("e"), Some("b"), Some("c"), Some("d"))
    );
}

/// With a fixed cursor, only files whose cursor range meets the new rows' are searched for
/// old copies: a re-read at the same time replaces its old copy, and a copy planted at
/// another time (which a fixed cursor rules out) is left; without a fixed cursor every file
/// is searched. A file written before parts (`data.parquet`) is read as the oldest part.
#[test]
fn old_copies_are_looked_for_where_the_cursor_allows() {
    for fixed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (mut info, dec) = crate::sinks::messages_for_tests();
        info.cursor_fixed = fixed;
        let folder = dir.path().join("messages_outbound/date=2026-11-02");
        let mut sink = ParquetSink::open(dir.path()).unwrap();
        sink.compact_rows = 10;
        sink.begin_stream(&info).unwrap();
        flush(&mut sink, tagged(&dec, 0..20, "2026-11-02T10:00:00Z", "early"));
        fs::rename(folder.join(part_name(1)), folder.join(LEGACY_FILE)).unwrap();
        flush(&mut sink, tagged(&dec, 20..40, "2026-11-02T12:00:00Z", "late"));
        assert_eq!(files_in(&folder), vec![LEGACY_FILE.to_string(), part_name(1)]);
        // m5 re-read at its own time; m25 "re-read" at 10:00, outside the 12:00 file's range.
        let mut batch = tagged(&dec, 5..6, "2026-11-02T10:00:00Z", "again");
        batch = arrow::compute::concat_batches(&batch.schema(), [&batch, &tagged(&dec, 25..26, "2026-11-02T10:00:00Z", "again")]).unwrap();
        flush(&mut sink, batch);
        sink.finish().unwrap();
        let rows = rows_in(&folder);
        let copies = |id: &str| rows.iter().filter(|(i, _)| i == id).map(|(_, t)| t.clone()).collect::<Vec<_>>();
        assert_eq!(copies("m5"), vec!["again"], "fixed: {fixed}");
        if fixed {
            assert_eq!(copies("m25"), vec!["again", "late"], "the 12:00 file is not searched for a 10:00 key");
        } else {
            assert_eq!(copies("m25"), vec!["again"]);
        }
        assert_eq!(rows.len(), if fixed { 41 } else { 40 });
    }
}

/// A staging folder left by a crash is removed when the directory is opened again.
#[test]
fn staging_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join(STAGING_DIR).join("messages_outbound~date=2026-11-02");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join(part_name(1)), b"partial").unwrap();
    drop(ParquetSink::open(dir.path()).unwrap());
    assert!(!dir.path().join(STAGING_DIR).exists());
}
