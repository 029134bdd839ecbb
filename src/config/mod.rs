//! The config file: parsed, then validated into typed values, before anything else runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::Value;
use url::Url;

use crate::secret::Secret;
use crate::sinks::columns::{ColumnPolicy, ColumnRules};

pub mod keys;
#[cfg(test)]
mod tests;
mod values;

use keys::Key;
pub use keys::spec;
use values::*;

pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
pub const TOKEN_ENV: &str = "POSTMARK_SERVER_TOKEN";
/// Where the salt of hashed columns may come from instead of the config file.
pub const HASH_SALT_ENV: &str = "POSTMARK_ELT_HASH_SALT";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check the path passed to --config")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid JSON ({source}); fix the syntax at that line")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("config file {path} must hold a JSON object of settings, e.g. {{\"server_token\": \"...\", \"start_date\": \"2026-01-01\"}}")]
    NotAnObject { path: PathBuf },
    #[error("config key `{key}` is missing: {fix}")]
    Missing { key: &'static str, fix: String },
    #[error("config key `{key}` {problem}: {fix}")]
    Invalid { key: &'static str, problem: String, fix: String },
}

/// Which servers to sync through the account API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSelection {
    /// Every server of the account.
    All,
    /// Servers by name or by numeric ID.
    Listed(Vec<String>),
}

/// Which tags the stats streams are also read for (`stats_tags`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsTags {
    /// The tags seen in messages_outbound (kept in the state).
    All,
    Listed(Vec<String>),
}

/// A validated config. Nothing after [`Config::from_map`] looks at raw strings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server token; `None` only when `servers` picks servers through the account token.
    pub server_token: Option<Secret>,
    pub account_token: Option<Secret>,
    /// `servers`: sync these servers with the tokens the account API returns.
    pub servers: Option<ServerSelection>,
    /// First instant to sync. A plain date means midnight US-Eastern, the API's calendar.
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub base_url: Url,
    /// Message streams to sync; `None` means every stream of the server.
    pub message_streams: Option<Vec<String>>,
    pub lookback_days: u32,
    /// How far before the bookmark an incremental run starts again (late indexing, clock skew).
    pub overlap: chrono::Duration,
    /// How far behind Postmark's clock a run's reads end (the newest window must have settled).
    pub settle: chrono::Duration,
    /// A host clock further off Postmark's than this is logged.
    pub clock_skew_warn: chrono::Duration,
    pub page_size: u32,
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connect_retries: u32,
    pub max_retries: u32,
    pub retry_initial_delay: Duration,
    /// Shared secret of the webhook receiver (basic-auth password or `X-Webhook-Secret`).
    pub webhook_secret: Option<Secret>,
    pub webhook_max_body_bytes: usize,
    pub webhook_merge_interval: Duration,
    pub webhook_max_connections: usize,
    pub webhook_read_timeout: Duration,
    /// How the destination is opened (DuckDB's commit interval and memory cap).
    pub sink: crate::sinks::SinkOptions,
    /// Stats streams are also read per tag; `None`: only the total over all mail.
    pub stats_tags: Option<StatsTags>,
}

/// A config and the warnings found while reading it (unknown keys).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let Value::Object(map) = value else {
            return Err(ConfigError::NotAnObject { path: path.to_path_buf() });
        };
        let env_token = std::env::var(TOKEN_ENV).ok();
        let mut loaded = Self::from_map(&map.into_iter().collect(), env_token, Utc::now())?;
        loaded.warnings.extend(permission_warning(path));
        Ok(loaded)
    }

    /// Validates a parsed config. `env_token` is the value of POSTMARK_SERVER_TOKEN, `now` the
    /// time of the run (a start in the future is an error).
    pub fn from_map(map: &BTreeMap<String, Value>, env_token: Option<String>, now: DateTime<Utc>) -> Result<Loaded, ConfigError> {
        let warnings = map
            .keys()
            .filter(|k| !keys::KEYS.iter().any(|key| key.name == k.as_str()))
            .map(|k| match keys::did_you_mean(k) {
                Some(near) => format!("Unknown config key `{k}` is ignored; did you mean `{near}`?"),
                None => format!("Unknown config key `{k}` is ignored; see `postmark-elt spec` for the accepted keys."),
            })
            .collect();

        let account_token = opt_string(map, "account_token")?
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()));
        let servers = parse_servers(map)?;
        if servers.is_some() && account_token.is_none() {
            return Err(invalid(
                "servers",
                "needs `account_token`",
                "add the account API token (Postmark: Account > API Tokens), or remove `servers`",
            ));
        }
        let token = opt_string(map, "server_token")?
            .or(opt_string(map, "postmark_server_token")?)
            .or(env_token.filter(|t| !t.trim().is_empty()));
        if token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(
                "server_token",
                "is empty",
                "paste the server API token from the server's API Tokens tab in Postmark",
            ));
        }
        if token.is_none() && servers.is_none() {
            return Err(ConfigError::Missing {
                key: "server_token",
                fix: format!("add \"server_token\": \"<your Postmark server API token>\" to the config file, or set {TOKEN_ENV}"),
            });
        }

        let min_secret = keys::WEBHOOK_SECRET.min_len();
        let webhook_secret = match opt_string(map, "webhook_secret")? {
            Some(s) if s.trim().len() < min_secret => {
                return Err(invalid(
                    "webhook_secret",
                    &format!("is shorter than {min_secret} characters"),
                    "use a long random string, e.g. the output of `openssl rand -hex 24`",
                ));
            }
            other => other.map(|s| Secret::new(s.trim())),
        };
        let start_raw = opt_string(map, "start_date")?.ok_or_else(|| ConfigError::Missing {
            key: "start_date",
            fix: match map.keys().find(|k| keys::did_you_mean(k) == Some("start_date")) {
                Some(typo) => format!("the config has `{typo}`: did you mean `start_date`? Rename it"),
                None => "add \"start_date\": \"YYYY-MM-DD\" (the first day to sync) to the config file".to_string(),
            },
        })?;
        let start = parse_instant("start_date", &start_raw)?;
        if start > now {
            return Err(invalid(
                "start_date",
                &format!("is in the future ({start_raw})"),
                "use a date in the past; Postmark keeps messages for your retention period (45 days by default)",
            ));
        }
        let end = match opt_string(map, "end_date")? {
            Some(raw) => {
                let end = parse_instant("end_date", &raw)?;
                if end <= start {
                    return Err(invalid(
                        "end_date",
                        &format!("({raw}) is not after start_date ({start_raw})"),
                        "set end_date later than start_date, or remove it to sync up to now",
                    ));
                }
                Some(end)
            }
            None => None,
        };

        let base_raw = opt_string(map, "base_url")?.unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let base_url = Url::parse(&base_raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                invalid(
                    "base_url",
                    &format!("is not an http(s) URL ({base_raw:?})"),
                    &format!("use a URL such as {DEFAULT_BASE_URL}"),
                )
            })?;

        let message_streams = match map.get("message_streams") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str().map(str::trim) {
                        Some(s) if !s.is_empty() => ids.push(s.to_string()),
                        _ => {
                            return Err(invalid(
                                "message_streams",
                                &format!("holds {item}, which is not a stream ID"),
                                "list stream IDs as strings, e.g. [\"outbound\", \"broadcast\"]",
                            ));
                        }
                    }
                }
                if ids.is_empty() {
                    return Err(invalid(
                        "message_streams",
                        "is an empty list",
                        "remove the key to sync every stream, or list stream IDs",
                    ));
                }
                Some(ids)
            }
            Some(other) => {
                return Err(invalid(
                    "message_streams",
                    &format!("must be a list of stream IDs, not {other}"),
                    "write it as [\"outbound\", \"broadcast\"]",
                ));
            }
        };

        Ok(Loaded {
            config: Config {
                server_token: token.map(|t| Secret::new(t.trim())),
                account_token,
                servers,
                start,
                end,
                base_url,
                message_streams,
                lookback_days: int_in(map, &keys::LOOKBACK_DAYS)? as u32,
                overlap: chrono::Duration::minutes(int_in(map, &keys::OVERLAP_MINUTES)?),
                settle: chrono::Duration::seconds(int_in(map, &keys::SETTLE_SECONDS)?),
                clock_skew_warn: chrono::Duration::seconds(int_in(map, &keys::CLOCK_SKEW_WARN_SECONDS)?),
                page_size: int_in(map, &keys::PAGE_SIZE)? as u32,
                max_concurrency: int_in(map, &keys::MAX_CONCURRENCY)? as usize,
                request_timeout: Duration::from_secs(int_in(map, &keys::REQUEST_TIMEOUT_SECONDS)? as u64),
                connect_timeout: Duration::from_secs(int_in(map, &keys::CONNECT_TIMEOUT_SECONDS)? as u64),
                max_connect_retries: int_in(map, &keys::MAX_CONNECT_RETRIES)? as u32,
                max_retries: int_in(map, &keys::MAX_RETRIES)? as u32,
                retry_initial_delay: Duration::from_millis(int_in(map, &keys::RETRY_INITIAL_DELAY_MS)? as u64),
                webhook_secret,
                webhook_max_body_bytes: int_in(map, &keys::WEBHOOK_MAX_BODY_BYTES)? as usize,
                webhook_merge_interval: Duration::from_secs(int_in(map, &keys::WEBHOOK_MERGE_INTERVAL_SECONDS)? as u64),
                webhook_max_connections: int_in(map, &keys::WEBHOOK_MAX_CONNECTIONS)? as usize,
                webhook_read_timeout: Duration::from_secs(int_in(map, &keys::WEBHOOK_READ_TIMEOUT_SECONDS)? as u64),
                sink: crate::sinks::SinkOptions {
                    commit_interval: Duration::from_secs(int_in(map, &keys::COMMIT_INTERVAL_SECONDS)? as u64),
                    duckdb_memory_limit_mb: int_in(map, &keys::DUCKDB_MEMORY_LIMIT_MB)? as u32,
                    lock_timeout: Duration::from_secs(int_in(map, &keys::LOCK_TIMEOUT_SECONDS)? as u64),
                    duckdb_schema: parse_name(map, &keys::SCHEMA)?,
                    columns: parse_columns(map)?,
                },
                stats_tags: parse_stats_tags(map)?,
            },
            warnings,
        })
    }

    /// The end of the range a run may read: `end_date`, else `now`.
    pub fn end_or(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.end.map_or(now, |e| e.min(now))
    }
}
