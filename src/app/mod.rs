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
use crate::cli::{Cli, Command, ConfigFile, SyncArgs, WebhooksCommand};
use crate::client::{Auth, BodyError, PostmarkClient};
use crate::config::{self, Config};
use crate::error::Error;
use crate::sinks::{self, DestKind, SinkHandle};
use crate::state::State;
use crate::streams::runner::Extractor;
use crate::streams::summary::PartitionReport;
use crate::streams::{STREAMS, StreamDef};
use crate::webhooks::install::Installed;
use crate::webhooks::server::ServeOptions;

mod about;
mod airbyte;
mod sync;

use sync::default_path;

pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Some(Command::Spec) => print_json(&config::spec()),
        Some(Command::Check(ConfigFile { config })) => check(&config).await,
        Some(Command::Discover(ConfigFile { config })) => discover(&config),
        Some(Command::Sync(mut args)) => {
            args.live_progress = !cli.quiet && cli.log_format == crate::cli::LogFormat::Text;
            args.json_logs = cli.log_format == crate::cli::LogFormat::Json;
            sync::run(args).await
        }
        Some(Command::Webhooks(cmd)) => webhooks(cmd, cli.log_format == crate::cli::LogFormat::Text).await,
        Some(Command::Docs) => print(&catalog::columns_markdown()?),
        #[cfg(feature = "duckdb")]
        Some(Command::Report { db, out }) => {
            let html = crate::report::render(&db)?;
            std::fs::write(&out, html).map_err(|source| Error::Sink(sinks::SinkError::Io { path: out.clone(), source }))?;
            print(&format!("OK: wrote {}\n", out.display()))
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            // Generated into memory: clap_complete panics on a failed write, and a closed pipe
            // must end quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "postmark-elt", &mut script);
            print(&String::from_utf8_lossy(&script))
        }
        #[cfg(feature = "duckdb")]
        Some(Command::Query { db, sql }) => print(&format!("{}\n", sinks::duckdb::query(&db.path, &db.schema, db.lock_timeout(), &sql)?)),
        Some(Command::Airbyte(cmd)) => airbyte::run(cmd).await,
        None if cli.singer.about => print(&about::render(cli.singer.format)),
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
            sync::run(SyncArgs {
                catalog: cli.singer.catalog,
                state: cli.singer.state,
                json_logs: cli.log_format == crate::cli::LogFormat::Json,
                ..SyncArgs::new(config, DestKind::Singer)
            })
            .await
        }
    }
}

/// Writes `text` on stdout. A failed write is `Error::Stdout`; `main` ends quietly when the
/// reader has gone (`| head`).
pub(crate) fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(Error::Stdout)
}

/// Prints JSON on stdout, pretty.
fn print_json(value: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Stdout(e.into()))?;
    print(&format!("{text}\n"))
}

fn load_config(path: &Path) -> Result<Config, Error> {
    let loaded = Config::load(path)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}

async fn check(path: &Path) -> Result<(), Error> {
    for line in check_connection(path).await? {
        print(&format!("{line}\n"))?;
    }
    Ok(())
}

/// What `check` finds: a line per token that Postmark accepted.
async fn check_connection(path: &Path) -> Result<Vec<String>, Error> {
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
    let mut found = Vec::new();
    if let Some(token) = &config.server_token {
        let server: Server = client
            .get(Auth::Server(token), "/server", &[], |body| {
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
            })
            .await?;
        found.push(format!("OK: server {}", server.name));
    }
    if config.account_token.is_some() {
        let servers: Servers = client
            .get(Auth::Account, "/servers", &[("count", "1".to_string()), ("offset", "0".to_string())], |body| {
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
            })
            .await?;
        found.push(format!("OK: account with {} servers", servers.total));
    }
    Ok(found)
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

async fn webhooks(cmd: WebhooksCommand, text_logs: bool) -> Result<(), Error> {
    match cmd {
        WebhooksCommand::Serve {
            config,
            listen,
            dest,
            path,
            spool,
        } => {
            let config = load_config(&config)?;
            if matches!(dest, DestKind::Singer | DestKind::Airbyte | DestKind::Discard) {
                return Err(Error::Config(config::ConfigError::Invalid {
                    key: "--dest",
                    problem: "webhook events need a destination that keeps them".to_string(),
                    fix: "use --dest duckdb or --dest parquet".to_string(),
                }));
            }
            let path = path.unwrap_or_else(|| default_path(dest));
            sinks::check_path(dest, &path)?;
            if spool.is_none() && sinks::url_scheme(&path).is_some() {
                return Err(Error::Config(config::ConfigError::Invalid {
                    key: "--spool",
                    problem: format!("--path {} is a URL, and the spool of received events is a local directory", path.display()),
                    fix: "give --spool DIR on a persistent local disk".to_string(),
                }));
            }
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
                max_connections: config.webhook_max_connections,
                read_timeout: config.webhook_read_timeout,
                sink: config.sink.clone(),
                print_address: text_logs,
            };
            crate::webhooks::server::serve(opts).await.map_err(Error::Serve)
        }
        WebhooksCommand::Install { config, url, message_stream } => {
            let config = load_config(&config)?;
            let secret = webhook_secret(&config)?;
            let client = PostmarkClient::new(&config)?;
            print(
                &match crate::webhooks::install::install(&client, server_token(&config)?, &url, &message_stream, &secret).await? {
                    Installed::Created(id) => format!("OK: webhook {id} created for {url} on message stream {message_stream}, every trigger on\n"),
                    Installed::Updated(id) => format!("OK: webhook {id} for {url} on message stream {message_stream} updated, every trigger on\n"),
                },
            )
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
                print(&format!(
                    "{}\t{}\t{}\t{}\n",
                    w["ID"],
                    w["MessageStream"].as_str().unwrap_or("-"),
                    w["Url"].as_str().unwrap_or("-"),
                    on.join(",")
                ))?;
            }
            Ok(())
        }
    }
}
