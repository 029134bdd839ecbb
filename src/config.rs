//! The config file: parsed, then validated into typed values, before anything else runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::{Value, json};
use url::Url;

use crate::secret::Secret;

pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
pub const TOKEN_ENV: &str = "POSTMARK_SERVER_TOKEN";
/// Postmark's largest page.
pub const MAX_PAGE_SIZE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; check the path passed to --config")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON ({source}); fix the syntax at that line")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config file {path} must hold a JSON object of settings, e.g. {{\"server_token\": \"...\", \"start_date\": \"2026-01-01\"}}")]
    NotAnObject { path: PathBuf },
    #[error("config key `{key}` is missing: {fix}")]
    Missing { key: &'static str, fix: String },
    #[error("config key `{key}` {problem}: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: String,
    },
}

/// A validated config. Nothing after [`Config::from_value`] looks at raw strings.
/// Which servers to sync through the account API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSelection {
    /// Every server of the account.
    All,
    /// Servers by name or by numeric ID.
    Listed(Vec<String>),
}

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
    pub page_size: u32,
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub retry_initial_delay: Duration,
    /// Shared secret of the webhook receiver (basic-auth password or `X-Webhook-Secret`).
    pub webhook_secret: Option<Secret>,
    pub webhook_max_body_bytes: usize,
    pub webhook_merge_interval: Duration,
    /// How the destination is opened (DuckDB's commit interval and memory cap).
    pub sink: crate::sinks::SinkOptions,
}

/// Every key the config accepts, with its JSON Schema: the single source for `spec` and for the
/// unknown-key warning.
pub fn spec() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "postmark-elt config",
        "type": "object",
        "required": ["start_date"],
        "properties": {
            "server_token": {"type": "string", "secret": true, "airbyte_secret": true,
                "description": format!("Postmark server API token (header X-Postmark-Server-Token). Alias: postmark_server_token. When absent, read from the {TOKEN_ENV} environment variable.")},
            "postmark_server_token": {"type": "string", "secret": true, "airbyte_secret": true,
                "description": "Alias of server_token."},
            "account_token": {"type": "string", "secret": true, "airbyte_secret": true,
                "description": "Postmark account API token (optional): adds the servers, domains and sender_signatures streams, and lets `servers` sync several servers."},
            "servers": {"oneOf": [{"const": "all"}, {"type": "array", "items": {"type": ["string", "integer"]}}],
                "description": "With account_token: \"all\" or a list of server names or IDs. Every per-server stream then runs for each of them, with the server tokens the account API returns."},
            "start_date": {"type": "string", "examples": ["2026-10-01", "2026-10-01T00:00:00Z"],
                "description": "Sync data from this point on: YYYY-MM-DD (midnight US-Eastern, the API's calendar) or an RFC 3339 date-time."},
            "end_date": {"type": "string",
                "description": "Optional end (exclusive), same formats as start_date. Default: the time the sync starts."},
            "base_url": {"type": "string", "format": "uri", "default": DEFAULT_BASE_URL,
                "description": "API root; point it at a proxy or a test server."},
            "message_streams": {"type": "array", "items": {"type": "string"},
                "description": "Message stream IDs to sync. Default: every stream from GET /message-streams."},
            "lookback_days": {"type": "integer", "minimum": 0, "maximum": 365, "default": 7,
                "description": "How many days back event streams (opens, clicks, stats) are re-read each run, because events arrive after the send."},
            "overlap_minutes": {"type": "integer", "minimum": 0, "maximum": 10080, "default": 60,
                "description": "How far before the saved bookmark an incremental run starts again; rows read twice are de-duplicated on the primary key."},
            "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": MAX_PAGE_SIZE,
                "description": "Records per request (Postmark allows at most 500)."},
            "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4,
                "description": "Requests in flight at once."},
            "request_timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 60,
                "description": "Timeout of one HTTP request."},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 8,
                "description": "Retries of one request on 429, 5xx, timeouts and connection errors."},
            "retry_initial_delay_ms": {"type": "integer", "minimum": 1, "maximum": 600000, "default": 500,
                "description": "First retry delay; it doubles (with jitter) up to 60 s, or follows Retry-After."},
            "webhook_secret": {"type": "string", "secret": true, "airbyte_secret": true, "minLength": 16,
                "description": "For `webhooks serve` and `webhooks install`: the shared secret Postmark sends as the basic-auth password (or in an X-Webhook-Secret header)."},
            "webhook_max_body_bytes": {"type": "integer", "minimum": 1024, "maximum": 104857600, "default": 52428800,
                "description": "Largest webhook body accepted (inbound mail with attachments is the largest); bigger gets HTTP 413."},
            "webhook_merge_interval_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 5,
                "description": "How often spooled webhook events are merged into the destination."},
            "commit_interval_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": crate::sinks::SinkOptions::default().commit_interval.as_secs(),
                "description": "DuckDB: the longest time between durable commits during a sync (also every 491,520 rows, and at the end). A crash loses at most this much work, rows and bookmarks together; the next run reads it again."},
            "duckdb_memory_limit_mb": {"type": "integer", "minimum": 32, "maximum": 1048576, "default": crate::sinks::SinkOptions::default().duckdb_memory_limit_mb,
                "description": "DuckDB: cap of its buffer pool in MB; beyond it, data spills to <path>.tmp. Raise it for unusually wide rows if DuckDB reports it cannot allocate memory."}
        }
    })
}

fn known_keys() -> Vec<String> {
    spec()["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
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
            return Err(ConfigError::NotAnObject {
                path: path.to_path_buf(),
            });
        };
        let env_token = std::env::var(TOKEN_ENV).ok();
        let mut loaded = Self::from_map(&map.into_iter().collect(), env_token, Utc::now())?;
        loaded.warnings.extend(permission_warning(path));
        Ok(loaded)
    }

    /// Validates a parsed config. `env_token` is the value of POSTMARK_SERVER_TOKEN, `now` the
    /// time of the run (a start in the future is an error).
    pub fn from_map(
        map: &BTreeMap<String, Value>,
        env_token: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Loaded, ConfigError> {
        let known = known_keys();
        let warnings = map
            .keys()
            .filter(|k| !known.contains(k))
            .map(|k| format!("Unknown config key `{k}` is ignored; see `postmark-elt spec` for the accepted keys."))
            .collect();

        let account_token = opt_string(map, "account_token")?
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()));
        let servers = parse_servers(map)?;
        if servers.is_some() && account_token.is_none() {
            return Err(invalid("servers", "needs `account_token`", "add the account API token (Postmark: Account > API Tokens), or remove `servers`"));
        }
        let token = opt_string(map, "server_token")?
            .or(opt_string(map, "postmark_server_token")?)
            .or(env_token.filter(|t| !t.trim().is_empty()));
        if token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("server_token", "is empty", "paste the server API token from the server's API Tokens tab in Postmark"));
        }
        if token.is_none() && servers.is_none() {
            return Err(ConfigError::Missing {
                key: "server_token",
                fix: format!("add \"server_token\": \"<your Postmark server API token>\" to the config file, or set {TOKEN_ENV}"),
            });
        }

        let webhook_secret = match opt_string(map, "webhook_secret")? {
            Some(s) if s.trim().len() < 16 => {
                return Err(invalid("webhook_secret", "is shorter than 16 characters", "use a long random string, e.g. the output of `openssl rand -hex 24`"));
            }
            other => other.map(|s| Secret::new(s.trim())),
        };
        let start_raw = opt_string(map, "start_date")?.ok_or_else(|| ConfigError::Missing {
            key: "start_date",
            fix: "add \"start_date\": \"YYYY-MM-DD\" (the first day to sync) to the config file".to_string(),
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
                    return Err(invalid("message_streams", "is an empty list", "remove the key to sync every stream, or list stream IDs"));
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

        let defaults = crate::sinks::SinkOptions::default();
        Ok(Loaded {
            config: Config {
                server_token: token.map(|t| Secret::new(t.trim())),
                account_token,
                servers,
                start,
                end,
                base_url,
                message_streams,
                lookback_days: int_in(map, "lookback_days", 0, 365, 7)? as u32,
                overlap: chrono::Duration::minutes(int_in(map, "overlap_minutes", 0, 10_080, 60)?),
                page_size: int_in(map, "page_size", 1, MAX_PAGE_SIZE.into(), MAX_PAGE_SIZE.into())? as u32,
                max_concurrency: int_in(map, "max_concurrency", 1, 64, 4)? as usize,
                request_timeout: Duration::from_secs(int_in(map, "request_timeout_seconds", 1, 3600, 60)? as u64),
                max_retries: int_in(map, "max_retries", 0, 100, 8)? as u32,
                retry_initial_delay: Duration::from_millis(int_in(map, "retry_initial_delay_ms", 1, 600_000, 500)? as u64),
                webhook_secret,
                webhook_max_body_bytes: int_in(map, "webhook_max_body_bytes", 1024, 104_857_600, 52_428_800)? as usize,
                webhook_merge_interval: Duration::from_secs(int_in(map, "webhook_merge_interval_seconds", 1, 3600, 5)? as u64),
                sink: crate::sinks::SinkOptions {
                    commit_interval: Duration::from_secs(int_in(map, "commit_interval_seconds", 1, 3600, defaults.commit_interval.as_secs() as i64)? as u64),
                    duckdb_memory_limit_mb: int_in(map, "duckdb_memory_limit_mb", 32, 1_048_576, i64::from(defaults.duckdb_memory_limit_mb))? as u32,
                },
            },
            warnings,
        })
    }

    /// The end of the range a run may read: `end_date`, else `now`.
    pub fn end_or(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.end.map_or(now, |e| e.min(now))
    }
}

fn parse_servers(map: &BTreeMap<String, Value>) -> Result<Option<ServerSelection>, ConfigError> {
    let fix = "write \"all\" or a list of server names or IDs, e.g. [\"Shop Production\", 118822]";
    match map.get("servers") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("all") => Ok(Some(ServerSelection::All)),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut listed = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.trim().is_empty() => listed.push(s.trim().to_string()),
                    Value::Number(n) if n.is_u64() => listed.push(n.to_string()),
                    other => return Err(invalid("servers", &format!("holds {other}, which is not a server name or ID"), fix)),
                }
            }
            Ok(Some(ServerSelection::Listed(listed)))
        }
        Some(other) => Err(invalid("servers", &format!("is {other}"), fix)),
    }
}

fn invalid(key: &'static str, problem: &str, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.to_string(),
        fix: fix.to_string(),
    }
}

fn opt_string(map: &BTreeMap<String, Value>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Never echo the value: this may be a token.
        Some(other) => Err(invalid(
            key,
            &format!("must be a string, not a JSON {}", json_kind(other)),
            "put the value in double quotes",
        )),
    }
}

fn int_in(map: &BTreeMap<String, Value>, key: &'static str, min: i64, max: i64, default: i64) -> Result<i64, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(invalid(
                key,
                &format!("is {n}, outside {min}..={max}"),
                &format!("use a whole number from {min} to {max} (default {default})"),
            )),
        },
        Some(other) => Err(invalid(
            key,
            &format!("must be a whole number, not {other}"),
            &format!("write it without quotes, e.g. \"{key}\": {default}"),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `YYYY-MM-DD` (midnight US-Eastern) or RFC 3339.
fn parse_instant(key: &'static str, raw: &str) -> Result<DateTime<Utc>, ConfigError> {
    let raw = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        // Midnight always exists in New York (DST changes at 02:00).
        if let Some(t) = New_York.from_local_datetime(&midnight).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                key,
                &format!("is not a date ({raw:?})"),
                "write YYYY-MM-DD (e.g. \"2026-10-01\") or an RFC 3339 date-time (e.g. \"2026-10-01T00:00:00Z\")",
            )
        })
}

/// Tokens in a file others can read are worth a warning.
#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "Config file {} is readable by other users and may hold API tokens; run `chmod 600 {}`.",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Loaded, ConfigError> {
        let map: BTreeMap<String, Value> = v.as_object().unwrap().clone().into_iter().collect();
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Utc);
        Config::from_map(&map, None, now)
    }

    /// Table of invalid configs with the fragment their error must contain.
    #[test]
    fn invalid_configs_name_the_key_and_the_fix() {
        let cases = [
            (json!({"start_date": "2026-01-01"}), "`server_token` is missing"),
            (json!({"server_token": "t"}), "`start_date` is missing"),
            (json!({"server_token": "t", "start_date": "yesterday"}), "write YYYY-MM-DD"),
            (json!({"server_token": "t", "start_date": "2027-01-01"}), "is in the future"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "end_date": "2025-01-01"}), "not after start_date"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "page_size": 501}), "outside 1..=500"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "page_size": "100"}), "must be a whole number"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "commit_interval_seconds": 0}), "`commit_interval_seconds` is 0, outside 1..=3600"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "duckdb_memory_limit_mb": 16}), "`duckdb_memory_limit_mb` is 16, outside 32..=1048576"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "base_url": "not a url"}), "`base_url` is not an http(s) URL"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "base_url": "ftp://x"}), "`base_url`"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "message_streams": "outbound"}), "list of stream IDs"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "max_concurrency": 0}), "`max_concurrency`"),
            (json!({"server_token": 12345, "start_date": "2026-01-01"}), "must be a string"),
            (json!({"server_token": "t", "start_date": "2026-01-01", "servers": "all"}), "needs `account_token`"),
            (json!({"account_token": "a", "start_date": "2026-01-01", "servers": [true]}), "not a server name or ID"),
            (json!({"account_token": "a", "start_date": "2026-01-01"}), "`server_token` is missing"),
        ];
        for (cfg, want) in cases {
            let err = parse(cfg.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{cfg}: {err}");
        }
    }

    /// A numeric token is refused without echoing it.
    #[test]
    fn wrong_typed_token_is_not_echoed() {
        let err = parse(json!({"server_token": 987654321, "start_date": "2026-01-01"})).unwrap_err().to_string();
        assert!(!err.contains("987654321"), "{err}");
    }

    /// A plain date is midnight in New York, with daylight saving.
    #[test]
    fn dates_are_us_eastern_midnight() {
        let summer = parse(json!({"server_token": "t", "start_date": "2026-07-01"})).unwrap().config;
        assert_eq!(summer.start.to_rfc3339(), "2026-07-01T04:00:00+00:00");
        let winter = parse(json!({"server_token": "t", "start_date": "2026-01-15"})).unwrap().config;
        assert_eq!(winter.start.to_rfc3339(), "2026-01-15T05:00:00+00:00");
        let exact = parse(json!({"server_token": "t", "start_date": "2026-01-15T10:00:00+01:00"})).unwrap().config;
        assert_eq!(exact.start.to_rfc3339(), "2026-01-15T09:00:00+00:00");
    }

    /// The alias, the defaults and the unknown-key warning.
    #[test]
    fn alias_defaults_and_unknown_keys() {
        let l = parse(json!({"postmark_server_token": "abc", "start_date": "2026-01-01", "colour": "blue"})).unwrap();
        assert_eq!(l.config.server_token.as_ref().unwrap().expose(), "abc");
        assert_eq!(l.config.page_size, 500);
        assert_eq!(l.config.max_concurrency, 4);
        assert_eq!(l.config.base_url.as_str(), "https://api.postmarkapp.com/");
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("`colour`"));
    }

    /// With `servers`, the account token is enough.
    #[test]
    fn servers_select_through_the_account() {
        let l = parse(json!({"account_token": "a", "start_date": "2026-01-01", "servers": ["Shop", 42]})).unwrap();
        assert_eq!(l.config.servers, Some(ServerSelection::Listed(vec!["Shop".into(), "42".into()])));
        assert!(l.config.server_token.is_none());
        let l = parse(json!({"account_token": "a", "start_date": "2026-01-01", "servers": "ALL"})).unwrap();
        assert_eq!(l.config.servers, Some(ServerSelection::All));
    }

    /// The environment variable is used only when the file has no token.
    #[test]
    fn env_token_is_a_fallback() {
        let map: BTreeMap<String, Value> = [("start_date".to_string(), json!("2026-01-01"))].into();
        let l = Config::from_map(&map, Some("from-env".into()), Utc::now()).unwrap();
        assert_eq!(l.config.server_token.as_ref().unwrap().expose(), "from-env");
    }

    /// Debug output of a config never shows a token.
    #[test]
    fn debug_masks_tokens() {
        let l = parse(json!({"server_token": "s3cr3t-token", "account_token": "acc-s3cr3t", "start_date": "2026-01-01"})).unwrap();
        let dbg = format!("{:?}", l.config);
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }
}
