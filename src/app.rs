//! One function per verb; the only place that wires config, client, streams and sinks together.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog;
use crate::cli::{Cli, Command, SyncArgs, WebhooksCommand};
use crate::webhooks::install::Installed;
use crate::webhooks::server::ServeOptions;
use crate::client::{Auth, BodyError, PostmarkClient};
use crate::config::{self, Config};
use crate::error::Error;
use crate::sinks::{self, DestKind, SinkHandle};
use crate::state::State;
use crate::streams::runner::Extractor;
use crate::streams::summary::PartitionReport;
use crate::streams::{STREAMS, StreamDef};

pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Spec) => print_json(&config::spec()),
        Some(Command::Check { config }) => check(&config).await,
        Some(Command::Discover { config }) => discover(&config),
        Some(Command::Sync(mut args)) => {
            args.live_progress = !cli.quiet && cli.log_format == crate::cli::LogFormat::Text;
            sync(args).await
        }
        Some(Command::Webhooks(cmd)) => webhooks(cmd).await,
        Some(Command::Docs) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(catalog::columns_markdown()?.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Stdout(e)),
                _ => Ok(()),
            }
        }
        #[cfg(feature = "duckdb")]
        Some(Command::Report { path, out }) => {
            let html = crate::report::render(&path)?;
            std::fs::write(&out, html).map_err(|source| Error::Sink(sinks::SinkError::Io { path: out.clone(), source }))?;
            println!("OK: wrote {}", out.display());
            Ok(())
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "postmark-elt", &mut std::io::stdout());
            Ok(())
        }
        #[cfg(feature = "duckdb")]
        Some(Command::Query { path, sql }) => {
            let table = sinks::duckdb::query(&path, &sql)?;
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{table}") {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Stdout(e)),
                _ => Ok(()),
            }
        }
        None => {
            // The Singer tap invocation.
            let Some(config) = cli.singer.config else {
                return Err(Error::Config(config::ConfigError::Missing {
                    key: "--config",
                    fix: "run `postmark-elt --help`; e.g. `postmark-elt sync --config config.json`".to_string(),
                }));
            };
            if cli.singer.discover {
                return discover(&config);
            }
            sync(SyncArgs {
                config,
                catalog: cli.singer.catalog,
                state: cli.singer.state,
                dest: DestKind::Singer,
                path: None,
                streams: None,
                summary_json: None,
                progress_seconds: 10,
                dry_run: false,
                live_progress: false,
            })
            .await
        }
    }
}

/// Prints JSON on stdout; a closed pipe (`| head`) is not an error.
fn print_json(value: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Stdout(e)),
        _ => Ok(()),
    }
}

fn load_config(path: &Path) -> Result<Config, Error> {
    let loaded = Config::load(path)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}

async fn check(path: &Path) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Server {
        #[serde(rename = "Name")]
        name: String,
    }
    #[derive(Deserialize)]
    struct Servers {
        #[serde(rename = "TotalCount")]
        total: u64,
    }
    let config = load_config(path)?;
    let client = PostmarkClient::new(&config)?;
    if let Some(token) = &config.server_token {
        let server: Server = client
            .get(Auth::Server(token), "/server", &[], |body| {
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
            })
            .await?;
        println!("OK: server {}", server.name);
    }
    if config.account_token.is_some() {
        let servers: Servers = client
            .get(Auth::Account, "/servers", &[("count", "1".to_string()), ("offset", "0".to_string())], |body| {
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
            })
            .await?;
        println!("OK: account with {} servers", servers.total);
    }
    Ok(())
}

fn discover(path: &Path) -> Result<(), Error> {
    load_config(path)?;
    print_json(&catalog::discover()?)
}

fn webhook_secret(config: &Config) -> Result<crate::secret::Secret, Error> {
    config.webhook_secret.clone().ok_or_else(|| {
        Error::Config(config::ConfigError::Missing {
            key: "webhook_secret",
            fix: "add \"webhook_secret\": \"<a long random string>\" to the config file (e.g. from `openssl rand -hex 24`)".to_string(),
        })
    })
}

fn server_token(config: &Config) -> Result<&crate::secret::Secret, Error> {
    config.server_token.as_ref().ok_or_else(|| {
        Error::Config(config::ConfigError::Missing {
            key: "server_token",
            fix: "webhooks belong to one server: add its \"server_token\" to the config file".to_string(),
        })
    })
}

async fn webhooks(cmd: WebhooksCommand) -> Result<(), Error> {
    match cmd {
        WebhooksCommand::Serve { config, listen, dest, path, spool } => {
            let config = load_config(&config)?;
            if dest == DestKind::Singer {
                return Err(Error::Config(config::ConfigError::Invalid {
                    key: "--dest",
                    problem: "singer cannot hold webhook events".to_string(),
                    fix: "use --dest duckdb or --dest parquet".to_string(),
                }));
            }
            let path = path.unwrap_or_else(|| default_path(dest));
            let spool = spool.unwrap_or_else(|| {
                let mut p = path.clone().into_os_string();
                p.push(".webhook-spool");
                PathBuf::from(p)
            });
            let opts = ServeOptions {
                listen,
                dest,
                path,
                spool,
                secret: webhook_secret(&config)?,
                max_body_bytes: config.webhook_max_body_bytes,
                merge_every: config.webhook_merge_interval,
                sink: config.sink,
            };
            crate::webhooks::server::serve(opts).await.map_err(Error::Serve)
        }
        WebhooksCommand::Install { config, url, message_stream } => {
            let config = load_config(&config)?;
            let secret = webhook_secret(&config)?;
            let client = PostmarkClient::new(&config)?;
            match crate::webhooks::install::install(&client, server_token(&config)?, &url, &message_stream, &secret).await? {
                Installed::Created(id) => println!("OK: webhook {id} created for {url} on message stream {message_stream}, every trigger on"),
                Installed::Updated(id) => println!("OK: webhook {id} for {url} on message stream {message_stream} updated, every trigger on"),
            }
            Ok(())
        }
        WebhooksCommand::List { config } => {
            let config = load_config(&config)?;
            let client = PostmarkClient::new(&config)?;
            let hooks = crate::webhooks::install::list(&client, server_token(&config)?, None).await?;
            for w in hooks {
                let on: Vec<&str> = w["Triggers"]
                    .as_object()
                    .map(|t| t.iter().filter(|(_, v)| v["Enabled"] == true).map(|(k, _)| k.as_str()).collect())
                    .unwrap_or_default();
                println!("{}\t{}\t{}\t{}", w["ID"], w["MessageStream"].as_str().unwrap_or("-"), w["Url"].as_str().unwrap_or("-"), on.join(","));
            }
            Ok(())
        }
    }
}

fn default_path(dest: DestKind) -> PathBuf {
    match dest {
        DestKind::Parquet => PathBuf::from("postmark-parquet"),
        _ => PathBuf::from("postmark.duckdb"),
    }
}

async fn sync(args: SyncArgs) -> Result<(), Error> {
    let started = Instant::now();
    let now = Utc::now();
    let mut reports: Vec<PartitionReport> = Vec::new();
    let mut stats = (0, 0);
    let result = run_sync(&args, now, started, &mut reports, &mut stats).await;
    if let Some(path) = &args.summary_json {
        let summary = json!({
            "status": if result.is_ok() { "ok" } else { "failed" },
            "exit_code": result.as_ref().err().map_or(0, |e| e.kind().exit_code()),
            "error": result.as_ref().err().map(|e| e.to_string()),
            "started_at": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "elapsed_seconds": started.elapsed().as_secs_f64(),
            "records": reports.iter().map(|r| r.records).sum::<u64>(),
            "requests": stats.0,
            "retries": stats.1,
            "streams": reports,
        });
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            tracing::error!(path = %path.display(), error = %e, "Cannot write the summary file.");
        }
    }
    result
}

/// Streams read at the same time (at most `max_concurrency`): enough to hide one stream's
/// sequential round trips behind another's pages, few enough to keep memory small.
const STREAMS_AT_ONCE: usize = 4;

async fn run_sync(args: &SyncArgs, now: chrono::DateTime<Utc>, started: Instant, reports: &mut Vec<PartitionReport>, stats: &mut (u64, u64)) -> Result<(), Error> {
    let config = load_config(&args.config)?;
    let selected: Vec<&'static StreamDef> = match (&args.catalog, &args.streams) {
        (Some(path), _) => catalog::selected_streams(path)?,
        (None, Some(names)) => catalog::named_streams(names)?,
        (None, None) => STREAMS.iter().filter(|d| d.default_selected).collect(),
    };
    let override_state = args.state.as_deref().map(State::load_file).transpose()?;
    let client = PostmarkClient::new(&config)?;
    let path = args.path.clone().unwrap_or_else(|| default_path(args.dest));
    if args.dry_run {
        // Reads the stored state if there is one; creates nothing.
        let state = match override_state {
            Some(s) => s,
            None if path.exists() => sinks::open(args.dest, &path, config.sink)?.load_state()?.unwrap_or_default(),
            None => State::default(),
        };
        return dry_run(&client, &config, state, now, &selected).await;
    }
    let mut sink = sinks::open(args.dest, &path, config.sink)?;
    let state = match override_state {
        Some(s) => s,
        None => sink.load_state()?.unwrap_or_default(),
    };
    let handle = SinkHandle::spawn(sink);
    let extractor = Extractor::new(&client, &config, &handle, state, now);
    // Progress: on a terminal a live line (indicatif); otherwise (cron, CI, --quiet, JSON logs)
    // a log line every --progress-seconds.
    let current: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>> = Default::default();
    let live = args.live_progress && std::io::stderr().is_terminal();
    let progress = {
        let (rows, stats, current) = (handle.rows_sent.clone(), client.stats.clone(), current.clone());
        let every = if live { std::time::Duration::from_millis(200) } else { std::time::Duration::from_secs(args.progress_seconds) };
        tokio::spawn(async move {
            let bar = live.then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
                bar
            });
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let stream = current.lock().map(|s| s.join("+")).unwrap_or_default();
                let (rows, requests, retries) = (rows.load(Ordering::Relaxed), stats.requests.load(Ordering::Relaxed), stats.retries.load(Ordering::Relaxed));
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
    let failed = std::sync::atomic::AtomicBool::new(false);
    let outcomes: Vec<_> = futures::stream::iter(selected)
        .map(|def| {
            let (extractor, current, failed) = (&extractor, &current, &failed);
            async move {
                if failed.load(Ordering::Relaxed) {
                    return None;
                }
                if let Ok(mut c) = current.lock() {
                    c.push(def.name);
                }
                let outcome = extractor.sync_stream(def).await;
                if let Ok(mut c) = current.lock() {
                    c.retain(|n| *n != def.name);
                }
                failed.fetch_or(outcome.is_err(), Ordering::Relaxed);
                Some(outcome)
            }
        })
        .buffered(config.max_concurrency.clamp(1, STREAMS_AT_ONCE))
        .collect()
        .await;
    let mut failure = None;
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Ok(r) => reports.extend(r),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    progress.abort();
    drop(extractor);
    // The sink's own error explains a stopped sink better than the extractor's.
    let sink_result = handle.finish();
    print_summary(reports, &client, started);
    *stats = (client.stats.requests.load(Ordering::Relaxed), client.stats.retries.load(Ordering::Relaxed));
    sink_result?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

async fn dry_run(client: &PostmarkClient, config: &Config, state: State, now: chrono::DateTime<Utc>, selected: &[&'static StreamDef]) -> Result<(), Error> {
    // Nothing is sent to this sink: it exists because the extractor needs one.
    let idle = SinkHandle::spawn(Box::new(sinks::singer::SingerSink::new(std::io::sink())));
    let extractor = Extractor::new(client, config, &idle, state, now);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<32} {:>9} {:<12} {:<20} {:<20} first request, then", "stream", "server", "partition", "from", "to");
    for def in selected {
        for p in extractor.plan(def).await? {
            let _ = writeln!(
                out,
                "{:<32} {:>9} {:<12} {:<20} {:<20} {}  ({})",
                p.stream,
                fmt_server(p.server),
                p.partition,
                fmt_time(p.from),
                fmt_time(p.to),
                p.first_request,
                p.then
            );
        }
    }
    drop(extractor);
    idle.finish()?;
    Ok(())
}

fn fmt_server(id: Option<i64>) -> String {
    id.map_or("-".to_string(), |s| s.to_string())
}

fn fmt_time(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map_or("-".to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn print_summary(reports: &[PartitionReport], client: &PostmarkClient, started: Instant) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{:<32} {:>9} {:<14} {:>10} {:>7} {:>6}  bookmark",
        "stream", "server", "partition", "records", "windows", "splits"
    );
    for r in reports {
        let _ = writeln!(
            err,
            "{:<32} {:>9} {:<14} {:>10} {:>7} {:>6}  {} -> {}",
            r.stream,
            fmt_server(r.server),
            r.partition,
            r.records,
            r.windows,
            r.splits,
            fmt_time(r.bookmark_before),
            fmt_time(r.bookmark_after)
        );
        if let Some(note) = &r.note {
            let _ = writeln!(err, "{:<32} note: {note}", "");
        }
    }
    let _ = writeln!(
        err,
        "records: {}, requests: {}, retries: {}, elapsed: {:.1} s",
        reports.iter().map(|r| r.records).sum::<u64>(),
        client.stats.requests.load(Ordering::Relaxed),
        client.stats.retries.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
