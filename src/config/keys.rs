//! Every config key, declared once: its shape (type, range, default), and its description. The
//! validator reads ranges and defaults from here, and `spec` (JSON Schema), the README's config
//! table and the Meltano settings are generated from it (tests keep the README in step).

use serde_json::{Map, Value, json};

use super::DEFAULT_BASE_URL;

/// What a key's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A token or shared secret: never printed or echoed in errors.
    Secret { min_len: usize },
    /// `YYYY-MM-DD` (midnight US-Eastern) or an RFC 3339 date-time.
    Instant,
    /// An http(s) URL.
    Url { default: &'static str },
    /// A whole number in `min..=max`.
    Int { min: i64, max: i64, default: i64 },
    /// A non-empty list of strings.
    List,
    /// `"all"` or a list of server names or IDs.
    Servers,
    /// `"all"` or a list of strings.
    AllOrList,
    /// An SQL identifier (letters, digits, `_`; not starting with a digit).
    Name,
    /// Per stream, the columns to drop and to hash: `{"stream": {"drop": [...], "hash": [...]}}`.
    Columns,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub shape: Shape,
    /// The default as the docs say it (ints show their number).
    pub default: &'static str,
    pub description: &'static str,
    pub required: bool,
}

impl Key {
    const fn new(name: &'static str, shape: Shape, default: &'static str, description: &'static str) -> Key {
        Key {
            name,
            shape,
            default,
            description,
            required: false,
        }
    }

    const fn int(name: &'static str, min: i64, max: i64, default: i64, description: &'static str) -> Key {
        Key::new(name, Shape::Int { min, max, default }, "", description)
    }

    /// The default of an integer key (0 for other keys, which have none).
    pub const fn default_int(&self) -> i64 {
        match self.shape {
            Shape::Int { default, .. } => default,
            _ => 0,
        }
    }

    /// The default as the docs show it.
    pub fn default_text(&self) -> String {
        match self.shape {
            Shape::Int { default, .. } => default.to_string(),
            Shape::Url { default } => format!("`{default}`"),
            _ => self.default.to_string(),
        }
    }

    /// The shortest value a secret key accepts (0 for other keys).
    pub const fn min_len(&self) -> usize {
        match self.shape {
            Shape::Secret { min_len } => min_len,
            _ => 0,
        }
    }

    /// This key's JSON Schema.
    fn schema(&self) -> Value {
        let mut s = match self.shape {
            Shape::Secret { min_len } => {
                let mut s = json!({"type": "string", "secret": true, "airbyte_secret": true});
                if min_len > 0 {
                    s["minLength"] = json!(min_len);
                }
                s
            }
            Shape::Instant => json!({"type": "string", "examples": ["2026-10-01", "2026-10-01T00:00:00Z"]}),
            Shape::Url { default } => json!({"type": "string", "format": "uri", "default": default}),
            Shape::Int { min, max, default } => json!({"type": "integer", "minimum": min, "maximum": max, "default": default}),
            Shape::List => json!({"type": "array", "items": {"type": "string"}, "minItems": 1}),
            Shape::Servers => json!({"oneOf": [{"const": "all"}, {"type": "array", "items": {"type": ["string", "integer"]}}]}),
            Shape::AllOrList => json!({"oneOf": [{"const": "all"}, {"type": "array", "items": {"type": "string"}}]}),
            Shape::Name => json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "default": self.default}),
            Shape::Columns => json!({
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "drop": {"type": "array", "items": {"type": "string"}},
                        "hash": {"type": "array", "items": {"type": "string"}},
                    },
                    "additionalProperties": false,
                },
            }),
        };
        s["description"] = json!(self.description);
        s
    }

    /// Meltano's setting kind.
    fn meltano_kind(&self) -> Option<&'static str> {
        match self.shape {
            Shape::Secret { .. } => Some("password"),
            Shape::Int { .. } => Some("integer"),
            Shape::List | Shape::Servers | Shape::AllOrList => Some("array"),
            Shape::Instant => Some("date_iso8601"),
            Shape::Url { .. } | Shape::Name => Some("string"),
            Shape::Columns => Some("object"),
        }
    }
}

pub const SERVER_TOKEN: Key = Key::new(
    "server_token",
    Shape::Secret { min_len: 0 },
    "env `POSTMARK_SERVER_TOKEN`",
    "server API token (`X-Postmark-Server-Token`); alias `postmark_server_token`; when absent, read from the `POSTMARK_SERVER_TOKEN` environment variable",
);
pub const POSTMARK_SERVER_TOKEN: Key = Key::new("postmark_server_token", Shape::Secret { min_len: 0 }, "", "alias of `server_token`");
pub const ACCOUNT_TOKEN: Key = Key::new(
    "account_token",
    Shape::Secret { min_len: 0 },
    "none",
    "account API token: adds the `servers`, `domains` and `sender_signatures` streams, and lets `servers` sync several servers",
);
pub const SERVERS: Key = Key::new(
    "servers",
    Shape::Servers,
    "the token's server",
    "with `account_token`: `\"all\"` or a list of server names or IDs; every per-server stream then runs for each, with the server tokens the account API returns (then `server_token` is optional)",
);
pub const START_DATE: Key = Key {
    required: true,
    ..Key::new(
        "start_date",
        Shape::Instant,
        "required",
        "first point to sync: `YYYY-MM-DD` (midnight US-Eastern, the API's calendar) or RFC 3339",
    )
};
pub const END_DATE: Key = Key::new("end_date", Shape::Instant, "now", "optional end (exclusive), same formats as `start_date`");
pub const BASE_URL: Key = Key::new("base_url", Shape::Url { default: DEFAULT_BASE_URL }, "", "API root: a proxy, or a test server");
pub const MESSAGE_STREAMS: Key = Key::new(
    "message_streams",
    Shape::List,
    "all of the server's",
    "message stream IDs to sync, e.g. `[\"outbound\", \"broadcast\"]`; an ID the server does not have is an error",
);
pub const LOOKBACK_DAYS: Key = Key::int(
    "lookback_days",
    0,
    365,
    7,
    "days the event streams (opens, clicks, per-record streams, stats) re-read each run, because events arrive after the send",
);
pub const OVERLAP_MINUTES: Key = Key::int(
    "overlap_minutes",
    0,
    10_080,
    60,
    "how far before the bookmark an incremental run starts again; rows read twice are merged on the key",
);
pub const SETTLE_SECONDS: Key = Key::int(
    "settle_seconds",
    0,
    3600,
    60,
    "a run reads up to Postmark's clock (its `Date` header) minus this margin, so the newest window is not still filling while it is read; the rest comes next run",
);
pub const CLOCK_SKEW_WARN_SECONDS: Key = Key::int(
    "clock_skew_warn_seconds",
    1,
    86_400,
    30,
    "a host clock further than this from Postmark's is logged with its size (windows follow Postmark's clock either way)",
);
pub const PAGE_SIZE: Key = Key::int("page_size", 1, 500, 500, "records per request (Postmark allows at most 500)");
pub const MAX_CONCURRENCY: Key = Key::int("max_concurrency", 1, 64, 4, "requests in flight at once");
pub const REQUEST_TIMEOUT_SECONDS: Key = Key::int("request_timeout_seconds", 1, 3600, 60, "timeout of one request");
pub const CONNECT_TIMEOUT_SECONDS: Key = Key::int("connect_timeout_seconds", 1, 600, 5, "timeout of opening a connection");
pub const MAX_CONNECT_RETRIES: Key = Key::int(
    "max_connect_retries",
    0,
    100,
    3,
    "retries of a request whose connection cannot be opened (host unreachable, DNS, refused), 1 s apart and doubling",
);
pub const MAX_RETRIES: Key = Key::int(
    "max_retries",
    0,
    100,
    8,
    "retries of one request on 429, 5xx, timeouts, broken connections and cut-off bodies",
);
pub const RETRY_INITIAL_DELAY_MS: Key = Key::int(
    "retry_initial_delay_ms",
    1,
    600_000,
    500,
    "first retry delay; doubles with jitter up to 60 s, or follows `Retry-After` (also capped at 60 s)",
);
pub const WEBHOOK_SECRET: Key = Key::new(
    "webhook_secret",
    Shape::Secret { min_len: 16 },
    "none",
    "for `webhooks serve`/`install`: shared secret (16+ characters) Postmark sends as basic-auth password (or in an `X-Webhook-Secret` header)",
);
pub const WEBHOOK_MAX_BODY_BYTES: Key = Key::int(
    "webhook_max_body_bytes",
    1024,
    104_857_600,
    52_428_800,
    "largest webhook body accepted (inbound mail with attachments is the largest); bigger gets HTTP 413",
);
pub const WEBHOOK_MERGE_INTERVAL_SECONDS: Key = Key::int(
    "webhook_merge_interval_seconds",
    1,
    3600,
    5,
    "how often spooled webhook events are merged into the destination",
);
pub const WEBHOOK_MAX_CONNECTIONS: Key = Key::int(
    "webhook_max_connections",
    1,
    100_000,
    256,
    "connections the webhook receiver serves at once; more wait to be accepted",
);
pub const WEBHOOK_READ_TIMEOUT_SECONDS: Key = Key::int(
    "webhook_read_timeout_seconds",
    1,
    3600,
    20,
    "a webhook client must send its request headers, and then its body, each within this time, or the connection is closed",
);
pub const DUCKDB_MEMORY_LIMIT_MB: Key = Key::int(
    "duckdb_memory_limit_mb",
    32,
    1_048_576,
    64,
    "DuckDB: cap of its buffer pool in MB; beyond it data spills to `<path>.tmp`; raise it if DuckDB reports it cannot allocate memory",
);
pub const COMMIT_INTERVAL_SECONDS: Key = Key::int(
    "commit_interval_seconds",
    1,
    3600,
    10,
    "DuckDB: longest time between durable commits during a sync (also every 491,520 rows, and at the end); a crash loses at most this much work, which the next run reads again",
);
pub const LOCK_TIMEOUT_SECONDS: Key = Key::int(
    "lock_timeout_seconds",
    0,
    86_400,
    120,
    "DuckDB: how long a commit waits for another program (a notebook, the DuckDB CLI) to close the file before the sync fails with exit 8; the file is open only while a commit runs, so readers can query between commits",
);
pub const SCHEMA: Key = Key::new(
    "schema",
    Shape::Name,
    "main",
    "DuckDB: the schema the tables, the state and the models go in; give each Postmark account its own to share one file",
);
pub const STATS_TAGS: Key = Key::new(
    "stats_tags",
    Shape::AllOrList,
    "",
    "also read every stats stream per tag: a list of tags, or \"all\" for the tags seen in messages_outbound; rows get the `tag` (null for the total over all tags)",
);
pub const COLUMNS: Key = Key::new(
    "columns",
    Shape::Columns,
    "",
    "per stream, columns to `drop` and to `hash` (salted SHA-256, hex), in every destination, e.g. {\"messages_outbound\": {\"drop\": [\"subject\"], \"hash\": [\"to.email\", \"recipients\"]}}; `a.b` is field `b` of the structs in `a`",
);
pub const COLUMN_HASH_SALT: Key = Key::new(
    "column_hash_salt",
    Shape::Secret { min_len: 16 },
    "",
    "the salt of `hash` columns (or set POSTMARK_ELT_HASH_SALT); keep it secret and unchanged, or hashes stop joining with older rows",
);

/// Every key, in the order the docs list them.
pub const KEYS: &[Key] = &[
    SERVER_TOKEN,
    POSTMARK_SERVER_TOKEN,
    ACCOUNT_TOKEN,
    SERVERS,
    START_DATE,
    END_DATE,
    BASE_URL,
    MESSAGE_STREAMS,
    LOOKBACK_DAYS,
    OVERLAP_MINUTES,
    SETTLE_SECONDS,
    CLOCK_SKEW_WARN_SECONDS,
    PAGE_SIZE,
    MAX_CONCURRENCY,
    REQUEST_TIMEOUT_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    MAX_CONNECT_RETRIES,
    MAX_RETRIES,
    RETRY_INITIAL_DELAY_MS,
    WEBHOOK_SECRET,
    WEBHOOK_MAX_BODY_BYTES,
    WEBHOOK_MERGE_INTERVAL_SECONDS,
    WEBHOOK_MAX_CONNECTIONS,
    WEBHOOK_READ_TIMEOUT_SECONDS,
    DUCKDB_MEMORY_LIMIT_MB,
    COMMIT_INTERVAL_SECONDS,
    LOCK_TIMEOUT_SECONDS,
    SCHEMA,
    STATS_TAGS,
    COLUMNS,
    COLUMN_HASH_SALT,
];

/// The config's JSON Schema (`postmark-elt spec`).
pub fn spec() -> Value {
    let properties: Map<String, Value> = KEYS.iter().map(|k| (k.name.to_string(), k.schema())).collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "postmark-elt config",
        "type": "object",
        "required": KEYS.iter().filter(|k| k.required).map(|k| k.name).collect::<Vec<_>>(),
        "properties": properties,
    })
}

/// The README's config table.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | default | meaning |\n| --- | --- | --- |\n");
    for k in KEYS {
        out.push_str(&format!("| `{}` | {} | {} |\n", k.name, k.default_text(), k.description));
    }
    out
}

/// The `settings:` of a Meltano extractor definition (README, "Singer").
pub fn meltano_settings(indent: &str) -> String {
    let mut out = format!("{indent}settings:\n");
    for k in KEYS {
        match k.meltano_kind() {
            Some(kind) => out.push_str(&format!("{indent}  - {{name: {}, kind: {kind}}}\n", k.name)),
            None => out.push_str(&format!("{indent}  - {{name: {}}}\n", k.name)),
        }
    }
    out
}

/// The known key closest to an unknown one, when it is likely a typo of it.
pub fn did_you_mean(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::jaro_winkler(unknown, k.name), k.name))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's config table and Meltano settings are what the key table generates.
    #[test]
    fn readme_is_generated_from_the_keys() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(readme.contains(&table), "README config table is stale; replace it with:\n{table}");
        let settings = meltano_settings("        ");
        assert!(readme.contains(&settings), "README Meltano settings are stale; replace them with:\n{settings}");
    }

    #[test]
    fn typos_find_the_key() {
        assert_eq!(did_you_mean("start_dat"), Some("start_date"));
        assert_eq!(did_you_mean("lookback_day"), Some("lookback_days"));
        assert_eq!(did_you_mean("max_concurency"), Some("max_concurrency"));
        assert_eq!(did_you_mean("colour"), None);
    }

    #[test]
    fn names_are_unique_and_spec_lists_them_all() {
        let spec = spec();
        let props = spec["properties"].as_object().unwrap();
        assert_eq!(props.len(), KEYS.len());
        assert_eq!(spec["required"], json!(["start_date"]));
        assert_eq!(props["page_size"]["maximum"], 500);
        assert_eq!(props["webhook_secret"]["minLength"], 16);
        assert_eq!(props["server_token"]["airbyte_secret"], true);
    }
}
