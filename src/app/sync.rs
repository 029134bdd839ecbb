//! The `sync` verb: open the destination, run the selected streams side by side, report what they did (or, with `--dry-run`, what they would read).

use super::*;

pub(super) fn default_path(dest: DestKind) -> PathBuf {
    match dest {
        DestKind::Parquet => PathBuf::from("postmark-parquet"),
        _ => PathBuf::from("postmark.duckdb"),
    }
}

pub(super) async fn run(args: SyncArgs) -> Result<(), Error> {
    run_reporting(args).await.0
}

/// The sync, and what each partition it completed did.
pub(super) async fn run_reporting(args: SyncArgs) -> (Result<(), Error>, Vec<PartitionReport>) {
    let started = Instant::now();
    let now = Utc::now();
    let mut reports: Vec<PartitionReport> = Vec::new();
    let mut stats = RunCounters::default();
    let result = run_sync(&args, now, started, &mut reports, &mut stats).await;
    if let Some(path) = &args.summary_json {
        let summary = json!({
            "status": match &result {
                Ok(()) => "ok",
                Err(e) if e.kind() == crate::error::ErrorKind::Interrupted => "interrupted",
                Err(_) => "failed",
            },
            "exit_code": result.as_ref().err().map_or(0, |e| e.kind().exit_code()),
            "error": result.as_ref().err().map(|e| e.to_string()),
            "started_at": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "elapsed_seconds": started.elapsed().as_secs_f64(),
            "records": reports.iter().map(|r| r.records).sum::<u64>(),
            "requests": stats.requests,
            "retries": stats.retries,
            "clock_offset_seconds": stats.clock_offset_seconds,
            "streams": reports,
        });
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            tracing::error!(path = %path.display(), error = %e, "Cannot write the summary file.");
        }
    }
    (result, reports)
}

/// What the summary file reports of the client: requests, retries, and how far Postmark's
/// clock was ahead of the host's (negative: behind), from its `Date` headers.
#[derive(Default)]
struct RunCounters {
    requests: u64,
    retries: u64,
    clock_offset_seconds: Option<f64>,
}

/// Streams read at the same time (at most `max_concurrency`): enough to hide one stream's
/// sequential round trips behind another's pages, few enough to keep memory small.
pub(super) const STREAMS_AT_ONCE: usize = 8;

async fn run_sync(
    args: &SyncArgs,
    now: chrono::DateTime<Utc>,
    started: Instant,
    reports: &mut Vec<PartitionReport>,
    stats: &mut RunCounters,
) -> Result<(), Error> {
    let config = load_config(&args.config)?;
    let selection = match (&args.selection, &args.catalog, &args.streams) {
        (Some(selection), _, _) => selection.clone(),
        (None, Some(path), _) => catalog::selected_streams(path)?,
        (None, None, Some(names)) => catalog::Selection::of(catalog::named_streams(names)?),
        (None, None, None) => catalog::Selection::of(STREAMS.iter().filter(|d| d.default_selected).collect()),
    };
    let mut selected = selection.streams;
    // In declaration order: messages_outbound starts before the stats streams that may wait
    // for its tags.
    selected.sort_by_key(|def| STREAMS.iter().position(|d| d.name == def.name));
    let override_state = match &args.state_given {
        Some(state) => Some(state.clone()),
        None => args.state.as_deref().map(State::load_file).transpose()?,
    };
    let client = PostmarkClient::new(&config)?;
    let path = args.path.clone().unwrap_or_else(|| default_path(args.dest));
    sinks::check_path(args.dest, &path)?;
    if args.dry_run {
        // Reads the stored state if there is one; creates nothing.
        let state = match override_state {
            Some(s) => s,
            None if path.exists() || sinks::url_scheme(&path).is_some() => {
                sinks::open(args.dest, &path, config.sink.clone())?.load_state()?.unwrap_or_default()
            }
            None => State::default(),
        };
        return dry_run(&client, &config, state, now, &selected).await;
    }
    let mut sink = sinks::open(args.dest, &path, config.sink.clone())?;
    let mut state = match override_state {
        Some(s) => s,
        None => sink.load_state()?.unwrap_or_default(),
    };
    for stream in &selection.full_refresh {
        state.bookmarks.remove(stream);
    }
    let handle = SinkHandle::spawn(sinks::projection::Projected::wrap(sink, selection.deselected, config.sink.columns.clone()));
    let extractor = Extractor::new(&client, &config, &handle, state, now);
    if selected.iter().any(|d| d.name == crate::streams::TAGGED_STREAM) {
        extractor.expect_tags();
    }
    // Progress: on a terminal a live line (indicatif); otherwise (cron, CI, --quiet, JSON logs)
    // a log line every --progress-seconds.
    let current: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>> = Default::default();
    let live = args.live_progress && std::io::stderr().is_terminal();
    let progress = {
        let (rows, stats, current) = (handle.rows_sent.clone(), client.stats.clone(), current.clone());
        let every = if live {
            std::time::Duration::from_millis(200)
        } else {
            std::time::Duration::from_secs(args.progress_seconds)
        };
        tokio::spawn(async move {
            let bar = live.then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar
            });
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let stream = current.lock().map(|s| s.join("+")).unwrap_or_default();
                let (rows, requests, retries) = (
                    rows.load(Ordering::Relaxed),
                    stats.requests.load(Ordering::Relaxed),
                    stats.retries.load(Ordering::Relaxed),
                );
                match &bar {
                    Some(bar) => bar.set_message(format!("{stream}: {rows} rows, {requests} requests, {retries} retries")),
                    None => tracing::info!(stream, rows, requests, retries, elapsed_s = started.elapsed().as_secs(), "Progress."),
                }
            }
        })
    };
    // Streams run side by side, sharing the client's request limit, so that one stream's
    // sequential steps (listing, probing windows) overlap another's pages. After a failure no
    // further stream starts; those running finish, and the first failure is reported.
    // On SIGTERM/SIGINT the streams being read stop where they are (what they committed
    // stays: every complete window, with its bookmark) and no further stream starts.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let interrupted: std::sync::Mutex<Option<&'static str>> = Default::default();
    let outcomes: Vec<_> = futures::stream::iter(selected)
        .map(|def| {
            let (extractor, current, failed, interrupted) = (&extractor, &current, &failed, &interrupted);
            async move {
                if failed.load(Ordering::Relaxed) {
                    return None;
                }
                if let Ok(mut c) = current.lock() {
                    c.push(def.name);
                }
                let outcome = tokio::select! {
                    outcome = extractor.sync_stream(def) => Some(outcome),
                    signal = crate::signals::first() => {
                        if let Ok(mut i) = interrupted.lock() {
                            i.get_or_insert(signal);
                        }
                        None
                    }
                };
                if let Ok(mut c) = current.lock() {
                    c.retain(|n| *n != def.name);
                }
                failed.fetch_or(outcome.as_ref().is_none_or(Result::is_err), Ordering::Relaxed);
                outcome
            }
        })
        .buffered(config.max_concurrency.clamp(1, STREAMS_AT_ONCE))
        .collect()
        .await;
    let mut failure = None;
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Ok(r) => reports.extend(r),
            // The failure itself, not a stream that only saw a shared listing fail.
            Err(e) => match failure {
                None | Some(crate::streams::error::SyncError::ListingFailedEarlier { .. }) => failure = Some(e),
                Some(_) => {}
            },
        }
    }
    progress.abort();
    drop(extractor);
    // The sink's own error explains a stopped sink better than the extractor's.
    let sink_result = handle.finish();
    print_summary(reports, &client, started, args.json_logs);
    *stats = RunCounters {
        requests: client.stats.requests.load(Ordering::Relaxed),
        retries: client.stats.retries.load(Ordering::Relaxed),
        clock_offset_seconds: client.clock.offset().map(|o| o.num_milliseconds() as f64 / 1000.0),
    };
    sink_result?;
    let interrupted = interrupted.lock().ok().and_then(|i| *i);
    match (failure, interrupted) {
        (Some(e), _) => Err(e.into()),
        (None, Some(signal)) => Err(Error::Interrupted { signal }),
        (None, None) => Ok(()),
    }
}

async fn dry_run(client: &PostmarkClient, config: &Config, state: State, now: chrono::DateTime<Utc>, selected: &[&'static StreamDef]) -> Result<(), Error> {
    // Nothing is sent to this sink: it exists because the extractor needs one.
    let idle = SinkHandle::spawn(Box::new(sinks::singer::SingerSink::new(std::io::sink())));
    let extractor = Extractor::new(client, config, &idle, state, now);
    let mut table = plain_table(&["stream", "server", "partition", "from", "to", "first request, then"]);
    for def in selected {
        for p in extractor.plan(def).await? {
            table.add_row(vec![
                p.stream.to_string(),
                fmt_server(p.server),
                p.partition,
                fmt_time(p.from),
                fmt_time(p.to),
                format!("{}  ({})", p.first_request, p.then),
            ]);
        }
    }
    drop(extractor);
    print(&format!("{}\n", table.trim_fmt()))?;
    idle.finish()?;
    Ok(())
}

pub(super) fn fmt_server(id: Option<i64>) -> String {
    id.map_or("-".to_string(), |s| s.to_string())
}

pub(super) fn fmt_time(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map_or("-".to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// A table without borders, columns aligned (counts to the right), for terminals and logs alike.
pub(super) fn plain_table(header: &[&str]) -> comfy_table::Table {
    const COUNTS: &[&str] = &["server", "records", "windows", "splits", "skipped"];
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING).set_header(header.iter().copied());
    for (index, name) in header.iter().enumerate() {
        if let Some(column) = table.column_mut(index) {
            // Lines start with the stream name, as scripts that grep them expect.
            column.set_padding((0, 2));
            if COUNTS.contains(name) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
    }
    table
}

/// The run's summary on stderr: a table, or with JSON logs one log line per partition and one
/// for the run (every stderr line is then JSON).
pub(super) fn print_summary(reports: &[PartitionReport], client: &PostmarkClient, started: Instant, json_logs: bool) {
    let (records, requests, retries) = (
        reports.iter().map(|r| r.records).sum::<u64>(),
        client.stats.requests.load(Ordering::Relaxed),
        client.stats.retries.load(Ordering::Relaxed),
    );
    let elapsed_s = started.elapsed().as_secs_f64();
    if json_logs {
        for r in reports {
            tracing::info!(
                stream = r.stream,
                server = r.server,
                partition = r.partition,
                records = r.records,
                windows = r.windows,
                splits = r.splits,
                skipped = r.skipped,
                bookmark_before = fmt_time(r.bookmark_before),
                bookmark_after = fmt_time(r.bookmark_after),
                note = r.note,
                "Stream synced."
            );
        }
        tracing::info!(records, requests, retries, elapsed_s, "Sync summary.");
        return;
    }
    let mut table = plain_table(&["stream", "server", "partition", "records", "windows", "splits", "skipped", "bookmark", "note"]);
    for r in reports {
        table.add_row(vec![
            r.stream.to_string(),
            fmt_server(r.server),
            r.partition.clone(),
            r.records.to_string(),
            r.windows.to_string(),
            r.splits.to_string(),
            r.skipped.to_string(),
            format!("{} -> {}", fmt_time(r.bookmark_before), fmt_time(r.bookmark_after)),
            r.note.clone().unwrap_or_default(),
        ]);
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", table.trim_fmt());
    let _ = writeln!(err, "records: {records}, requests: {requests}, retries: {retries}, elapsed: {elapsed_s:.1} s");
}
