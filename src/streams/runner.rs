//! The sync loops, one per [`Kind`], shared by every stream of that kind.
//!
//! Postmark lists newest first and refuses `count + offset > 10,000`. A date window is read only
//! when its `TotalCount` fits under that reach; otherwise it is split (recursively, down to one
//! second) before any of its rows are used. A window is committed only when every row its
//! `TotalCount` promised has arrived, so a shifted page can never leave a silent gap. Bookmarks
//! move only when the sink commits the rows they cover.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::row::OwnedRow;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use futures::future::{self, BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::client::{Auth, BodyError, ClientError, PostmarkClient, TokenKind};
use crate::config::{Config, ServerSelection};
use crate::schema::SchemaError;
use crate::secret::Secret;
use crate::sinks::{KeyEncoder, LoadMode, SinkHandle, StreamInfo};
use crate::state::State;
use crate::streams::extract::{Page, PageDecoder, Scope, string_column};
use crate::streams::window::{CannotSplit, Window};
use crate::streams::{Kind, MAX_PAGE_SIZE, MAX_REACH, Partition, StatsShape, StreamDef};

/// Attempts at reading a window whose pages disagree with its TotalCount.
const WINDOW_ATTEMPTS: u32 = 3;
/// Rows staged between commits on reads whose bookmark moves only at the end.
const STAGE_COMMIT_ROWS: u64 = 20_000;
/// Partition label of streams that are not split by message stream.
const NO_PARTITION: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("stream `{stream}`, {at}: {source}")]
    Request {
        stream: &'static str,
        /// Where: server, message stream, window.
        at: String,
        #[source]
        source: ClientError,
    },
    #[error("listing {what}: {source}")]
    Listing {
        what: &'static str,
        #[source]
        source: ClientError,
    },
    #[error(
        "stream `{stream}`, {at}: {total} records in {source}, more than Postmark's API can page (10,000 per query); \
         rows before this point were loaded and the bookmark stops here"
    )]
    TooDense {
        stream: &'static str,
        at: String,
        total: u64,
        #[source]
        source: CannotSplit,
    },
    #[error("stream `{stream}`, {at}: {total} records, more than Postmark's API can page (10,000); nothing of this stream was replaced")]
    TooManyRows { stream: &'static str, at: String, total: u64 },
    #[error(
        "stream `{stream}`, {at}: the API reported {total} records but {seen} distinct ones arrived, \
         {WINDOW_ATTEMPTS} times; nothing from this window was committed, run the sync again"
    )]
    Unstable {
        stream: &'static str,
        at: String,
        total: u64,
        seen: u64,
    },
    #[error("message stream `{wanted}` from config `message_streams` is not on server {server} (it has: {available}); fix the list or remove it")]
    UnknownMessageStream {
        wanted: String,
        server: String,
        available: String,
    },
    #[error("config `servers` names {wanted}, which the account does not have (it has: {available})")]
    UnknownServer { wanted: String, available: String },
    #[error("server `{0}` has no API token in the account API's answer; create one in Postmark")]
    ServerWithoutToken(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the destination stopped while stream `{0}` was being written")]
    SinkStopped(&'static str),
}

impl SyncError {
    pub fn is_auth(&self) -> bool {
        match self {
            SyncError::Request { source, .. } | SyncError::Listing { source, .. } => source.is_auth(),
            _ => false,
        }
    }
}

/// What a sync would read for one stream partition (`--dry-run`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedRead {
    pub stream: &'static str,
    pub server: Option<i64>,
    pub partition: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub first_request: String,
    pub then: &'static str,
}

/// What one stream partition did, for the run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionReport {
    pub stream: &'static str,
    #[serde(rename = "server_id")]
    pub server: Option<i64>,
    pub partition: String,
    pub records: u64,
    pub windows: u64,
    pub splits: u64,
    pub bookmark_before: Option<DateTime<Utc>>,
    pub bookmark_after: Option<DateTime<Utc>>,
    /// Anything the operator should know (a fallback used, a stream skipped).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct MessageStreamItem {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MessageStreamType")]
    kind: String,
}

#[derive(Deserialize)]
struct MessageStreamList {
    #[serde(rename = "MessageStreams")]
    message_streams: Vec<MessageStreamItem>,
}

#[derive(Deserialize)]
struct ServerItem {
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ApiTokens", default)]
    api_tokens: Vec<String>,
}

#[derive(Deserialize)]
struct ServerList {
    #[serde(rename = "TotalCount")]
    total: u64,
    #[serde(rename = "Servers")]
    servers: Vec<ServerItem>,
}

/// A server to sync and the token that reads it.
pub struct ServerScope {
    pub id: Option<i64>,
    pub name: String,
    token: Secret,
    /// Reached through the account API: bookmarks are keyed by server too.
    via_account: bool,
}

/// One call family within a server: a message stream, a status, or nothing.
#[derive(Debug, Clone)]
struct PartitionValue {
    /// Message stream ID for the scope column.
    message_stream: Option<String>,
    /// Query parameter to send.
    param: Option<(&'static str, String)>,
    /// Replaces `{stream}` in the path.
    path_stream: Option<String>,
    label: String,
}

/// A window that fits under the offset limit, with its first page.
struct Leaf {
    window: Window,
    first: Page,
    /// Splits made on the way to it.
    splits: u64,
}

/// What [`Extractor::read_windows`] hands its caller, in order.
enum WindowPart {
    /// Rows of the window being read, as its pages arrive (not yet known to be complete).
    Rows(RecordBatch),
    /// Every row the window's TotalCount promised has arrived (in the `Rows` before this).
    Complete { window: Window, rows: u64, splits: u64 },
}

/// One page of a leaf window, and where it sits in it.
struct LeafPage {
    window: Window,
    /// The window's TotalCount, from its first page.
    total: u64,
    /// Splits made on the way to the window.
    splits: u64,
    index: usize,
    pages: usize,
    page: Page,
}

/// Everything a stream's loop needs to know about where it is.
struct Ctx<'c> {
    def: &'static StreamDef,
    decoder: &'c PageDecoder,
    server: &'c ServerScope,
    partition: &'c PartitionValue,
    scope: Scope,
    state_key: String,
}

impl<'c> Ctx<'c> {
    fn new(def: &'static StreamDef, decoder: &'c PageDecoder, server: &'c ServerScope, partition: &'c PartitionValue) -> Self {
        Ctx {
            def,
            decoder,
            server,
            partition,
            scope: Scope {
                server_id: server.id,
                message_stream: partition.message_stream.clone(),
            },
            // Bookmarks of servers reached through the account are kept per server.
            state_key: match server.id {
                Some(id) if server.via_account => format!("{id}/{}", partition.label),
                _ => partition.label.clone(),
            },
        }
    }

    fn auth(&self) -> Auth<'_> {
        match self.def.token {
            TokenKind::Server => Auth::Server(&self.server.token),
            TokenKind::Account => Auth::Account,
        }
    }

    fn at(&self, window: Option<Window>) -> String {
        let mut at = String::new();
        if self.server.via_account {
            at.push_str(&format!("server `{}`, ", self.server.name));
        }
        match (&self.partition.message_stream, &self.partition.param) {
            (Some(ms), _) => at.push_str(&format!("message stream `{ms}`")),
            (None, Some((k, v))) => at.push_str(&format!("{k} `{v}`")),
            (None, None) => at.push_str("all rows"),
        }
        if let Some(w) = window {
            at.push_str(&format!(", window {}", window_label(w)));
        }
        at
    }

    fn path(&self, id: Option<&str>) -> String {
        let mut path = self.def.path.to_string();
        if let Some(s) = &self.partition.path_stream {
            path = path.replace("{stream}", &urlencode(s));
        }
        if let Some(id) = id {
            path = path.replace("{id}", &urlencode(id));
        }
        path
    }

    fn query(&self, extra: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut q = extra;
        if let Some((k, v)) = &self.partition.param {
            q.push((k, v.clone()));
        }
        q.extend(self.def.params.iter().map(|(k, v)| (*k, v.to_string())));
        q
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub struct Extractor<'a> {
    pub client: &'a PostmarkClient,
    pub config: &'a Config,
    pub sink: &'a SinkHandle,
    /// The state as committed so far (a lock, so that commits can happen while pages of the
    /// next windows are in flight).
    state: std::sync::Mutex<State>,
    /// Start of this run: windows never reach past it, and rows carry it as `_synced_at`.
    pub now: DateTime<Utc>,
    /// Listed once per run, whichever stream asks first (streams run concurrently).
    servers: tokio::sync::OnceCell<Vec<ServerScope>>,
    message_streams: tokio::sync::Mutex<HashMap<Option<i64>, Vec<MessageStreamItem>>>,
    /// Held from a bookmark's move until its commit is queued, so the sink receives states in
    /// the order they were taken: a later state never reaches it before the rows of an
    /// earlier one.
    commit_order: tokio::sync::Mutex<()>,
}

impl<'a> Extractor<'a> {
    pub fn new(client: &'a PostmarkClient, config: &'a Config, sink: &'a SinkHandle, state: State, now: DateTime<Utc>) -> Self {
        Extractor {
            client,
            config,
            sink,
            state: std::sync::Mutex::new(state),
            now,
            servers: tokio::sync::OnceCell::new(),
            message_streams: tokio::sync::Mutex::new(HashMap::new()),
            commit_order: tokio::sync::Mutex::new(()),
        }
    }

    fn end(&self) -> DateTime<Utc> {
        self.config.end_or(self.now)
    }

    /// Syncs one stream for every server and partition, and returns what it did.
    pub async fn sync_stream(&self, def: &'static StreamDef) -> Result<Vec<PartitionReport>, SyncError> {
        let schema = def.schema()?;
        let decoder = PageDecoder::new(&schema, def.records, self.now);
        let info = StreamInfo {
            name: def.name.to_string(),
            arrow: decoder.output_schema(),
            schema,
            primary_key: def.primary_key.iter().map(|k| k.to_string()).collect(),
            cursor_field: def.cursor_field.map(str::to_string),
            cursor_fixed: def.cursor_fixed,
            mode: if def.is_incremental() { LoadMode::Merge } else { LoadMode::Replace },
        };
        if def.token == TokenKind::Account && self.config.account_token.is_none() {
            return Ok(vec![PartitionReport {
                note: Some("skipped: needs account_token".to_string()),
                ..empty_report(def, None, NO_PARTITION)
            }]);
        }
        self.sink.begin_stream(info).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        if def.token == TokenKind::Account {
            let account = ServerScope {
                id: None,
                name: "account".to_string(),
                token: Secret::new(""),
                via_account: false,
            };
            return self.sync_server(def, &decoder, &account).await;
        }
        let mut reports = Vec::new();
        for server in self.servers().await? {
            reports.extend(self.sync_server(def, &decoder, server).await?);
        }
        Ok(reports)
    }

    async fn sync_server(&self, def: &'static StreamDef, decoder: &PageDecoder, server: &ServerScope) -> Result<Vec<PartitionReport>, SyncError> {
        let partitions = self.partitions(def, server).await?;
        let mut reports = Vec::new();
        if let Kind::FullTable { paged } = def.kind {
            reports.push(self.full_table(def, decoder, server, &partitions, paged).await?);
            return Ok(reports);
        }
        for partition in &partitions {
            let ctx = Ctx::new(def, decoder, server, partition);
            let report = match def.kind {
                Kind::DateWindows => self.date_windows(&ctx).await?,
                Kind::EventFeed { per_message_path, tracked_by } => self.event_feed(&ctx, per_message_path, tracked_by).await?,
                Kind::DailyStats(shape) => self.daily_stats(&ctx, shape).await?,
                Kind::MessageDetails => self.message_details(&ctx).await?,
                Kind::FullTable { .. } => unreachable!("handled above"),
            };
            reports.push(report);
        }
        Ok(reports)
    }

    /// The servers to sync: the token's own server, or those `servers` picks via the account.
    async fn servers(&self) -> Result<&[ServerScope], SyncError> {
        self.servers.get_or_try_init(|| self.list_servers()).await.map(Vec::as_slice)
    }

    async fn list_servers(&self) -> Result<Vec<ServerScope>, SyncError> {
        match (&self.config.servers, &self.config.server_token) {
            (Some(selection), _) => self.account_servers(selection).await,
            (None, Some(token)) => {
                #[derive(Deserialize)]
                struct Server {
                    #[serde(rename = "ID")]
                    id: i64,
                    #[serde(rename = "Name")]
                    name: String,
                }
                let server: Server = self
                    .client
                    .get(Auth::Server(token), "/server", &[], |b| serde_json::from_slice(b).map_err(|e| BodyError::Malformed(e.to_string())))
                    .await
                    .map_err(|source| SyncError::Listing { what: "the server (GET /server)", source })?;
                Ok(vec![ServerScope {
                    id: Some(server.id),
                    name: server.name,
                    token: token.clone(),
                    via_account: false,
                }])
            }
            (None, None) => Ok(Vec::new()),
        }
    }

    async fn account_servers(&self, selection: &ServerSelection) -> Result<Vec<ServerScope>, SyncError> {
        let mut all: Vec<ServerItem> = Vec::new();
        loop {
            let offset = all.len() as u64;
            let page: ServerList = self
                .client
                .get(Auth::Account, "/servers", &[("count", MAX_PAGE_SIZE.to_string()), ("offset", offset.to_string())], |b| {
                    serde_json::from_slice(b).map_err(|e| BodyError::Malformed(e.to_string()))
                })
                .await
                .map_err(|source| SyncError::Listing { what: "servers (GET /servers)", source })?;
            let got = page.servers.len();
            all.extend(page.servers);
            if got == 0 || all.len() as u64 >= page.total || all.len() as u64 + MAX_PAGE_SIZE > MAX_REACH {
                break;
            }
        }
        let wanted: Vec<ServerItem> = match selection {
            ServerSelection::All => all,
            ServerSelection::Listed(names) => {
                let mut picked = Vec::new();
                for name in names {
                    let pos = all.iter().position(|s| s.id.to_string() == *name || s.name.eq_ignore_ascii_case(name));
                    match pos {
                        Some(p) => picked.push(all.swap_remove(p)),
                        None if picked.iter().any(|s: &ServerItem| s.id.to_string() == *name || s.name.eq_ignore_ascii_case(name)) => {}
                        None => {
                            return Err(SyncError::UnknownServer {
                                wanted: format!("`{name}`"),
                                available: all.iter().chain(picked.iter()).map(|s| format!("{} ({})", s.name, s.id)).collect::<Vec<_>>().join(", "),
                            });
                        }
                    }
                }
                picked
            }
        };
        wanted
            .into_iter()
            .map(|s| match s.api_tokens.into_iter().next() {
                Some(t) => Ok(ServerScope {
                    id: Some(s.id),
                    name: s.name,
                    token: Secret::new(t),
                    via_account: true,
                }),
                None => Err(SyncError::ServerWithoutToken(s.name)),
            })
            .collect()
    }

    async fn partitions(&self, def: &StreamDef, server: &ServerScope) -> Result<Vec<PartitionValue>, SyncError> {
        let (types, param) = match def.partition {
            Partition::None => {
                return Ok(vec![PartitionValue {
                    message_stream: None,
                    param: None,
                    path_stream: None,
                    label: NO_PARTITION.to_string(),
                }]);
            }
            Partition::Values { param, values } => {
                return Ok(values
                    .iter()
                    .map(|v| PartitionValue {
                        message_stream: None,
                        param: Some((param, v.to_string())),
                        path_stream: None,
                        label: v.to_string(),
                    })
                    .collect());
            }
            Partition::MessageStreams { types, param } => (types, param),
        };
        // Locked while listing, so that streams starting together ask once.
        let mut message_streams = self.message_streams.lock().await;
        if !message_streams.contains_key(&server.id) {
            let list = self
                .client
                .get(
                    Auth::Server(&server.token),
                    "/message-streams",
                    &[("MessageStreamType", "All".to_string()), ("IncludeArchivedStreams", "true".to_string())],
                    |body| serde_json::from_slice::<MessageStreamList>(body).map_err(|e| BodyError::Malformed(e.to_string())),
                )
                .await
                .map_err(|source| SyncError::Listing { what: "message streams (GET /message-streams)", source })?;
            message_streams.insert(server.id, list.message_streams);
        }
        let all = message_streams.get(&server.id).map(Vec::as_slice).unwrap_or_default();
        if let Some(wanted) = &self.config.message_streams {
            // Through the account, servers differ; a listed stream must exist on at least the
            // token's own server.
            if !server.via_account {
                for w in wanted {
                    if !all.iter().any(|s| s.id.eq_ignore_ascii_case(w)) {
                        return Err(SyncError::UnknownMessageStream {
                            wanted: w.clone(),
                            server: server.name.clone(),
                            available: all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
                        });
                    }
                }
            }
        }
        Ok(all
            .iter()
            .filter(|s| types.contains(&s.kind.as_str()))
            .filter(|s| {
                self.config
                    .message_streams
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|x| x.eq_ignore_ascii_case(&s.id)))
            })
            .map(|s| PartitionValue {
                message_stream: Some(s.id.clone()),
                param: param.map(|p| (p, s.id.clone())),
                path_stream: param.is_none().then(|| s.id.clone()),
                label: s.id.clone(),
            })
            .collect())
    }

    /// Where a stream's read starts: `start_date` on a first run; then the bookmark minus the
    /// overlap (messages, bounces, inbound) or minus `lookback_days` (events, details, stats
    /// days), never before `start_date`.
    fn start_of(&self, def: &StreamDef, bookmark: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let lookback = Duration::days(i64::from(self.config.lookback_days));
        let Some(b) = bookmark else { return self.config.start };
        let from = match def.kind {
            Kind::DateWindows => b - self.config.overlap,
            Kind::EventFeed { .. } | Kind::MessageDetails | Kind::FullTable { .. } => b - lookback,
            Kind::DailyStats(_) => {
                let day = eastern_date(b) - lookback;
                New_York
                    .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .earliest()
                    .map_or(b - lookback, |t| t.with_timezone(&Utc))
            }
        };
        from.max(self.config.start)
    }

    /// What a sync would read, without reading it (`sync --dry-run`): per stream, server and
    /// partition, the range and the first request. Only the server and its message streams
    /// are fetched, to know the partitions.
    pub async fn plan(&self, def: &'static StreamDef) -> Result<Vec<PlannedRead>, SyncError> {
        if def.token == TokenKind::Account && self.config.account_token.is_none() {
            return Ok(Vec::new());
        }
        let account = def.token == TokenKind::Account;
        let account_scope = [ServerScope { id: None, name: "account".to_string(), token: Secret::new(""), via_account: false }];
        let servers = if account { &account_scope[..] } else { self.servers().await? };
        let schema = def.schema()?;
        let decoder = PageDecoder::new(&schema, def.records, self.now);
        let mut out = Vec::new();
        for server in servers {
            for partition in self.partitions(def, server).await? {
                let ctx = Ctx::new(def, &decoder, server, &partition);
                let bookmark = self.state().bookmark(def.name, &ctx.state_key).map(|b| b.replication_key_value);
                let (from, to) = (self.start_of(def, bookmark), self.end());
                let window = Window::covering(from, to);
                let (wall_from, wall_to) = window.query_bounds();
                let page = u64::from(self.config.page_size).min(MAX_PAGE_SIZE);
                let mut query = match def.kind {
                    Kind::DateWindows | Kind::MessageDetails => vec![("count", page.to_string()), ("offset", "0".to_string()), ("fromdate", wall_from), ("todate", wall_to)],
                    Kind::EventFeed { .. } => vec![("count", page.to_string()), ("offset", "0".to_string())],
                    Kind::DailyStats(_) => vec![("fromdate", eastern_date(from).to_string()), ("todate", eastern_date(to).to_string())],
                    Kind::FullTable { paged: true } => vec![("count", MAX_PAGE_SIZE.to_string()), ("offset", "0".to_string())],
                    Kind::FullTable { paged: false } => Vec::new(),
                };
                query = ctx.query(query);
                let path = match def.kind {
                    Kind::MessageDetails => "/messages/outbound".to_string(),
                    _ => ctx.path(None),
                };
                let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(PlannedRead {
                    stream: def.name,
                    server: server.id,
                    partition: partition.label.clone(),
                    from: def.is_incremental().then_some(from),
                    to: def.is_incremental().then_some(to),
                    first_request: format!("GET {path}?{}", qs.join("&")),
                    then: match def.kind {
                        Kind::DateWindows => "pages of 500 while offset < TotalCount; windows above 10,000 rows are split first",
                        Kind::EventFeed { .. } => "pages newest first down to the start; beyond offset 10,000, date windows or per-message reads",
                        Kind::DailyStats(StatsShape::OverviewPerDay) => "one request per day",
                        Kind::DailyStats(_) => "one request",
                        Kind::MessageDetails => "the messages of the range, then one details request per message",
                        Kind::FullTable { paged: true } => "pages of 500, replacing the server's rows",
                        Kind::FullTable { paged: false } => "one request, replacing the server's rows",
                    },
                });
            }
        }
        Ok(out)
    }

    fn report(&self, ctx: &Ctx<'_>) -> PartitionReport {
        let before = self.state().bookmark(ctx.def.name, &ctx.state_key).map(|b| b.replication_key_value);
        PartitionReport {
            bookmark_before: before,
            bookmark_after: before,
            ..empty_report(ctx.def, ctx.server.id, &ctx.partition.label)
        }
    }

    async fn write(&self, def: &'static StreamDef, batches: Vec<RecordBatch>) -> Result<(), SyncError> {
        for batch in batches {
            self.sink.write(def.name, batch).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        }
        Ok(())
    }

    /// Sends rows to the sink, and commits them (without moving the bookmark) every
    /// `STAGE_COMMIT_ROWS`, so long reads whose bookmark can only move at the end hold little
    /// memory. Rows committed early are merged on the key if the run has to start over.
    async fn stage(&self, ctx: &Ctx<'_>, batch: RecordBatch, pending: &mut u64) -> Result<(), SyncError> {
        *pending += batch.num_rows() as u64;
        self.write(ctx.def, vec![batch]).await?;
        if *pending >= STAGE_COMMIT_ROWS {
            *pending = 0;
            self.commit(ctx, None).await?;
        }
        Ok(())
    }

    /// Moves the bookmark (if any) and commits it with the rows written before.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn commit(&self, ctx: &Ctx<'_>, bookmark: Option<DateTime<Utc>>) -> Result<(), SyncError> {
        let _order = self.commit_order.lock().await;
        let snapshot = {
            let mut state = self.state();
            if let (Some(key), Some(value)) = (ctx.def.replication_key(), bookmark) {
                state.advance(ctx.def.name, &ctx.state_key, key, value);
            }
            state.clone()
        };
        self.sink
            .commit(ctx.def.name, snapshot)
            .await
            .map_err(|()| SyncError::SinkStopped(ctx.def.name))
    }

    // ---- DateWindows ------------------------------------------------------------------------

    async fn date_windows(&self, ctx: &Ctx<'_>) -> Result<PartitionReport, SyncError> {
        let mut report = self.report(ctx);
        let start = self.start_of(ctx.def, report.bookmark_before);
        let end = self.end();
        if start >= end {
            return Ok(report);
        }
        tracing::info!(stream = ctx.def.name, partition = %ctx.state_key, from = %start, to = %end, "Syncing.");
        // Windows come oldest first; each is committed, moving the bookmark to its end, once
        // all its rows are in, while the next pages download.
        self.read_windows(ctx, start, end, async |part| match part {
            WindowPart::Rows(batch) => self.write(ctx.def, vec![batch]).await,
            WindowPart::Complete { window, rows, splits } => {
                let bookmark = window.to.min(end);
                self.commit(ctx, Some(bookmark)).await?;
                report.records += rows;
                report.windows += 1;
                report.splits += splits;
                report.bookmark_after = Some(bookmark);
                Ok(())
            }
        })
        .await?;
        Ok(report)
    }

    /// Reads every row of `[from, to]`, window by window, oldest first. Pages go to `on` as
    /// they arrive, in order, with up to `max_concurrency` requests ahead (across window
    /// boundaries), so memory holds a few pages, whatever the size of a window. Each window is
    /// reported complete once every row its TotalCount promised has arrived. When its pages
    /// disagree with the TotalCount (data changed while paging), the read-ahead is dropped and
    /// reading starts again at that window, at most `WINDOW_ATTEMPTS` times.
    async fn read_windows(&self, ctx: &Ctx<'_>, from: DateTime<Utc>, to: DateTime<Utc>, mut on: impl AsyncFnMut(WindowPart) -> Result<(), SyncError>) -> Result<(), SyncError> {
        let key_problem = |problem| SchemaError::Property {
            stream: ctx.def.name.to_string(),
            path: ctx.def.primary_key.join(","),
            problem,
        };
        let keys = KeyEncoder::for_key(&ctx.decoder.output_schema(), ctx.def.primary_key).map_err(key_problem)?;
        // Failed reads of the window starting at this instant.
        let mut failures: (Option<DateTime<Utc>>, u32) = (None, 0);
        let mut next = Some(Window::covering(from, to));
        while let Some(root) = next.take() {
            let mut pages = std::pin::pin!(self.leaf_pages(ctx, root));
            let mut seen: HashSet<OwnedRow> = HashSet::new();
            let mut stable = true;
            while let Some(leaf) = pages.next().await {
                let LeafPage { window, total, splits, index, pages: count, page } = leaf?;
                if index == 0 {
                    seen.clear();
                    stable = true;
                }
                stable &= page.total.is_none_or(|t| t == total);
                seen.extend(keys.rows(&page.batch).map_err(key_problem)?.iter().map(|r| r.owned()));
                on(WindowPart::Rows(page.batch)).await?;
                if index + 1 < count {
                    continue;
                }
                let distinct = seen.len() as u64;
                if stable && distinct >= total {
                    on(WindowPart::Complete { window, rows: distinct, splits }).await?;
                    continue;
                }
                let attempt = if failures.0 == Some(window.from) { failures.1 + 1 } else { 1 };
                failures = (Some(window.from), attempt);
                tracing::warn!(
                    stream = ctx.def.name,
                    at = %ctx.at(Some(window)),
                    total,
                    seen = distinct,
                    attempt,
                    "Pages disagree with TotalCount (data changed while paging); reading the window again."
                );
                if attempt >= WINDOW_ATTEMPTS {
                    return Err(SyncError::Unstable {
                        stream: ctx.def.name,
                        at: ctx.at(Some(window)),
                        total,
                        seen: distinct,
                    });
                }
                // Probed again from its start: it may have grown past the limit and need a split.
                next = Some(Window::covering(window.from, root.to));
                break;
            }
        }
        Ok(())
    }

    /// The pages of every leaf window of `root`, oldest first, fetched up to `max_concurrency`
    /// at a time; the next window is probed while the last pages of the one before download.
    fn leaf_pages<'s>(&'s self, ctx: &'s Ctx<'s>, root: Window) -> impl futures::Stream<Item = Result<LeafPage, SyncError>> + 's {
        let page_size = u64::from(self.config.page_size).min(MAX_PAGE_SIZE);
        self.leaf_windows(ctx, root)
            .flat_map(move |leaf| {
                let pages: Vec<BoxFuture<'s, Result<LeafPage, SyncError>>> = match leaf {
                    Err(e) => vec![future::ready(Err(e)).boxed()],
                    Ok(Leaf { window, first, splits }) => {
                        let total = first.total.unwrap_or(first.batch.num_rows() as u64);
                        let offsets: Vec<u64> = (page_size..total).step_by(page_size as usize).collect();
                        let count = offsets.len() + 1;
                        let at = move |index: usize, page: Page| LeafPage { window, total, splits, index, pages: count, page };
                        std::iter::once(future::ready(Ok(at(0, first))).boxed())
                            .chain(offsets.into_iter().enumerate().map(move |(i, offset)| {
                                async move {
                                    let page = self.fetch_window_page(ctx, window, offset, page_size.min(MAX_REACH - offset)).await?;
                                    Ok(at(i + 1, page))
                                }
                                .boxed()
                            }))
                            .collect()
                    }
                };
                stream::iter(pages)
            })
            .buffered(self.config.max_concurrency)
    }

    /// The windows of `root` small enough to page, oldest first, each with its first page (the
    /// probe that measured it). Windows above the offset limit are split on the way.
    fn leaf_windows<'s>(&'s self, ctx: &'s Ctx<'s>, root: Window) -> impl futures::Stream<Item = Result<Leaf, SyncError>> + 's {
        let page_size = u64::from(self.config.page_size).min(MAX_PAGE_SIZE);
        stream::unfold(Some(vec![root]), move |pending| async move {
            let mut pending = pending?;
            let mut splits = 0;
            loop {
                let window = pending.pop()?;
                let first = match self.fetch_window_page(ctx, window, 0, page_size).await {
                    Ok(p) => p,
                    Err(e) => return Some((Err(e), None)),
                };
                let total = first.total.unwrap_or(first.batch.num_rows() as u64);
                if total <= MAX_REACH {
                    return Some((Ok(Leaf { window, first, splits }), Some(pending)));
                }
                match split(ctx, window, total) {
                    Ok(subs) => {
                        splits += 1;
                        pending.extend(subs.into_iter().rev());
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        })
    }

    async fn fetch_window_page(&self, ctx: &Ctx<'_>, window: Window, offset: u64, count: u64) -> Result<Page, SyncError> {
        let (from, to) = window.query_bounds();
        let query = ctx.query(vec![
            ("count", count.to_string()),
            ("offset", offset.to_string()),
            ("fromdate", from),
            ("todate", to),
        ]);
        self.get_page(ctx, &ctx.path(None), &query, Some(window)).await
    }

    async fn get_page(&self, ctx: &Ctx<'_>, path: &str, query: &[(&'static str, String)], window: Option<Window>) -> Result<Page, SyncError> {
        self.client
            .get(ctx.auth(), path, query, |body| ctx.decoder.decode(body, &ctx.scope))
            .await
            .map_err(|source| SyncError::Request {
                stream: ctx.def.name,
                at: ctx.at(window),
                source,
            })
    }

    // ---- EventFeed --------------------------------------------------------------------------

    async fn event_feed(&self, ctx: &Ctx<'_>, per_message_path: &'static str, tracked_by: &'static str) -> Result<PartitionReport, SyncError> {
        let mut report = self.report(ctx);
        let lookback = Duration::days(i64::from(self.config.lookback_days));
        let cutoff = self.start_of(ctx.def, report.bookmark_before);
        let cursor = ctx.def.cursor_field.unwrap_or("received_at");
        let page_size = u64::from(self.config.page_size).min(MAX_PAGE_SIZE);
        let mut pending = 0;
        let mut rows_read = 0;
        let mut newest: Option<DateTime<Utc>> = None;
        let mut oldest: Option<DateTime<Utc>> = None;
        // Newest first: events that arrive while paging push older ones to later offsets, so
        // pages may repeat rows (merged on the key) but never skip one. The first page gives the
        // total; the next pages are fetched concurrently and read in order until one reaches
        // the cutoff (the few requests already in flight then are the price of the speed).
        let list_page = |offset: u64| {
            let count = page_size.min(MAX_REACH - offset);
            let query = ctx.query(vec![("count", count.to_string()), ("offset", offset.to_string())]);
            async move { self.get_page(ctx, &ctx.path(None), &query, None).await }
        };
        let first = list_page(0).await?;
        let total_unfiltered = first.total.unwrap_or(first.batch.num_rows() as u64);
        let reachable = total_unfiltered.min(MAX_REACH);
        let offsets: Vec<u64> = (page_size..reachable).step_by(page_size as usize).collect();
        let rest = stream::iter(offsets).map(list_page).buffered(self.config.max_concurrency);
        let mut pages = std::pin::pin!(stream::once(async { Ok(first) }).chain(rest));
        let mut reached_cutoff = false;
        let mut read = 0;
        while let Some(page) = pages.next().await {
            let page = page?;
            let rows = page.batch.num_rows() as u64;
            read += rows;
            let (lo, hi) = time_range(&page.batch, cursor);
            newest = newest.max(hi);
            oldest = match (oldest, lo) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            rows_read += rows;
            self.stage(ctx, page.batch, &mut pending).await?;
            if lo.is_some_and(|t| t < cutoff) {
                reached_cutoff = true;
                break;
            }
            if rows == 0 {
                break;
            }
        }
        let overflow = !reached_cutoff && total_unfiltered > MAX_REACH && read >= reachable.saturating_sub(page_size);
        report.records = rows_read;
        report.windows = 1;
        if overflow {
            // The list cannot reach back to the cutoff. The rest, [cutoff, oldest seen], is read
            // in date windows if the API honours them, else message by message.
            let until = oldest.unwrap_or(self.now);
            let note = if self.date_filters_work(ctx, cutoff, until, total_unfiltered).await? {
                let (rows, windows, splits) = self.windows_into(ctx, cutoff, until, &mut pending).await?;
                report.records += rows;
                report.windows += windows;
                report.splits += splits;
                format!("the list reached Postmark's 10,000 offset limit at {}; the rest was read in {windows} date windows", until.to_rfc3339())
            } else {
                let (rows, messages) = self.events_per_message(ctx, per_message_path, tracked_by, cutoff, until, &mut pending).await?;
                report.records += rows;
                format!(
                    "the list reached Postmark's 10,000 offset limit at {} and ignores date filters; read the events of {messages} messages sent since {} one by one",
                    until.to_rfc3339(),
                    (cutoff - lookback).to_rfc3339()
                )
            };
            tracing::warn!(stream = ctx.def.name, at = %ctx.at(None), "{note}");
            report.note = Some(note);
        }
        let bookmark = newest.map(|n| n.min(self.now)).or(report.bookmark_before);
        self.commit(ctx, bookmark).await?;
        report.bookmark_after = bookmark;
        Ok(report)
    }

    /// Whether the list honours `fromdate`/`todate` (undocumented for opens and clicks): a probe
    /// over `[from, to]` must return fewer rows than the whole list and only rows inside the
    /// window (give or take the hour the reference leaves open).
    async fn date_filters_work(&self, ctx: &Ctx<'_>, from: DateTime<Utc>, to: DateTime<Utc>, total_unfiltered: u64) -> Result<bool, SyncError> {
        let probe = Window::covering(from, to);
        let page = self.fetch_window_page(ctx, probe, 0, MAX_PAGE_SIZE).await?;
        let total = page.total.unwrap_or(page.batch.num_rows() as u64);
        let (lo, hi) = time_range(&page.batch, ctx.def.cursor_field.unwrap_or("received_at"));
        let slack = Duration::hours(1) + Duration::seconds(1);
        let inside = lo.is_none_or(|t| t >= probe.from - slack) && hi.is_none_or(|t| t <= probe.to + slack);
        Ok(inside && total < total_unfiltered)
    }

    /// Reads `[from, to]` in split date windows and stages the rows. Returns (rows, windows, splits).
    async fn windows_into(&self, ctx: &Ctx<'_>, from: DateTime<Utc>, to: DateTime<Utc>, pending: &mut u64) -> Result<(u64, u64, u64), SyncError> {
        let (mut rows, mut windows, mut splits) = (0, 0, 0);
        self.read_windows(ctx, from, to, async |part| match part {
            WindowPart::Rows(batch) => self.stage(ctx, batch, pending).await,
            WindowPart::Complete { rows: r, splits: s, .. } => {
                rows += r;
                windows += 1;
                splits += s;
                Ok(())
            }
        })
        .await?;
        Ok((rows, windows, splits))
    }

    /// Reads the events of every message sent in `[cutoff - lookback, until]` that can have
    /// them (its `tracked_by` column) through the per-message endpoint. Returns (events, messages).
    async fn events_per_message(
        &self,
        ctx: &Ctx<'_>,
        per_message_path: &'static str,
        tracked_by: &'static str,
        cutoff: DateTime<Utc>,
        until: DateTime<Utc>,
        pending: &mut u64,
    ) -> Result<(u64, u64), SyncError> {
        let lookback = Duration::days(i64::from(self.config.lookback_days));
        let ids = self.message_ids(ctx, cutoff - lookback, until, Some(tracked_by)).await?;
        let page_size = u64::from(self.config.page_size).min(MAX_PAGE_SIZE);
        let per_message = stream::iter(ids.iter())
            .map(|id| async move {
                let path = per_message_path.replace("{id}", &urlencode(id));
                let mut out = Vec::new();
                let mut offset = 0;
                loop {
                    let query = vec![("count", page_size.to_string()), ("offset", offset.to_string())];
                    let page = self.get_page(ctx, &path, &query, None).await?;
                    let rows = page.batch.num_rows() as u64;
                    let total = page.total.unwrap_or(rows);
                    out.push(page.batch);
                    offset += rows;
                    if rows == 0 || offset >= total || offset + 1 > MAX_REACH {
                        break;
                    }
                }
                Ok::<_, SyncError>(out)
            })
            .buffered(self.config.max_concurrency);
        let mut per_message = std::pin::pin!(per_message);
        let mut rows = 0;
        while let Some(batches) = per_message.next().await {
            for b in batches? {
                rows += b.num_rows() as u64;
                self.stage(ctx, b, pending).await?;
            }
        }
        Ok((rows, ids.len() as u64))
    }

    /// IDs of the outbound messages of this partition received in `[from, to]`; with
    /// `tracked_by`, only those whose column says tracking was on (true, or not "None").
    async fn message_ids(&self, ctx: &Ctx<'_>, from: DateTime<Utc>, to: DateTime<Utc>, tracked_by: Option<&str>) -> Result<Vec<String>, SyncError> {
        let messages_def = crate::streams::find("messages_outbound").ok_or(SyncError::SinkStopped(ctx.def.name))?;
        let schema = messages_def.schema()?;
        let decoder = PageDecoder::new(&schema, messages_def.records, self.now);
        let mctx = Ctx {
            def: messages_def,
            decoder: &decoder,
            server: ctx.server,
            partition: ctx.partition,
            scope: ctx.scope.clone(),
            state_key: ctx.state_key.clone(),
        };
        let mut ids = Vec::new();
        let from = from.max(self.config.start - Duration::days(i64::from(self.config.lookback_days)));
        self.read_windows(&mctx, from, to, async |part| {
            let WindowPart::Rows(b) = part else { return Ok(()) };
            let Some(col) = string_column(&b, "message_id") else { return Ok(()) };
            let tracked = tracked_by.and_then(|c| b.column_by_name(c));
            for i in 0..b.num_rows() {
                if col.is_valid(i) && tracked.is_none_or(|t| is_tracked(t.as_ref(), i)) {
                    ids.push(col.value(i).to_string());
                }
            }
            Ok(())
        })
        .await?;
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        Ok(ids)
    }

    // ---- MessageDetails ---------------------------------------------------------------------

    async fn message_details(&self, ctx: &Ctx<'_>) -> Result<PartitionReport, SyncError> {
        let mut report = self.report(ctx);
        let start = self.start_of(ctx.def, report.bookmark_before);
        let end = self.end();
        if start >= end {
            return Ok(report);
        }
        let ids = self.message_ids(ctx, start, end, None).await?;
        let fetched = stream::iter(ids.iter())
            .map(|id| async move {
                let path = ctx.path(Some(id));
                let id = id.clone();
                self.client
                    .get(ctx.auth(), &path, &[], |body| {
                        let mut details: Map<String, Value> =
                            serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
                        let events = match details.remove("MessageEvents") {
                            Some(Value::Array(events)) => events,
                            _ => Vec::new(),
                        };
                        let records: Vec<Value> = events
                            .into_iter()
                            .map(|mut e| {
                                if let Value::Object(m) = &mut e {
                                    m.insert("MessageID".to_string(), Value::String(id.clone()));
                                }
                                e
                            })
                            .collect();
                        ctx.decoder.decode_values(&records, &ctx.scope)
                    })
                    .await
                    .map_err(|source| SyncError::Request {
                        stream: ctx.def.name,
                        at: ctx.at(None),
                        source,
                    })
            })
            .buffered(self.config.max_concurrency);
        let mut fetched = std::pin::pin!(fetched);
        let mut pending = 0;
        while let Some(batch) = fetched.next().await {
            let batch = batch?;
            report.records += batch.num_rows() as u64;
            self.stage(ctx, batch, &mut pending).await?;
        }
        report.windows = 1;
        report.note = Some(format!("details of {} messages", ids.len()));
        self.commit(ctx, Some(end)).await?;
        report.bookmark_after = Some(end);
        Ok(report)
    }

    // ---- DailyStats -------------------------------------------------------------------------

    async fn daily_stats(&self, ctx: &Ctx<'_>, shape: StatsShape) -> Result<PartitionReport, SyncError> {
        let mut report = self.report(ctx);
        let from = eastern_date(self.start_of(ctx.def, report.bookmark_before));
        let to = eastern_date(self.end());
        if from > to {
            return Ok(report);
        }
        let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
        let records: Vec<Value> = match shape {
            StatsShape::OverviewPerDay => {
                        let per_day: Vec<Value> = stream::iter(days.iter())
                    .map(|day| async move {
                        let d = day.format("%Y-%m-%d").to_string();
                        let body = self.stats_request(ctx, &d, &d).await?;
                        let mut record = match body {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        record.insert("Date".to_string(), Value::String(d));
                        Ok::<_, SyncError>(Value::Object(record))
                    })
                    .buffered(self.config.max_concurrency)
                    .try_collect()
                    .await?;
                let schema = ctx.def.schema()?;
                per_day.into_iter().map(|r| zero_fill(r, &schema)).collect()
            }
            StatsShape::Daily(keys) => {
                let body = self.stats_request(ctx, &from.to_string(), &to.to_string()).await?;
                let by_day = days_by_date(&body);
                days.iter()
                    .map(|d| {
                        let entry = by_day.get(&d.to_string());
                        let mut record = Map::new();
                        record.insert("Date".to_string(), json!(d.to_string()));
                        for k in keys {
                            let v = entry.and_then(|e| e.get(*k)).and_then(Value::as_i64).unwrap_or(0);
                            record.insert((*k).to_string(), json!(v));
                        }
                        Value::Object(record)
                    })
                    .collect()
            }
            StatsShape::LongByName => {
                let body = self.stats_request(ctx, &from.to_string(), &to.to_string()).await?;
                let mut out = Vec::new();
                for (date, entry) in days_by_date(&body) {
                    for (name, count) in entry.iter().filter(|(k, _)| k.as_str() != "Date") {
                        out.push(json!({"Date": date, "Name": name, "Count": count.as_i64().unwrap_or(0)}));
                    }
                }
                out
            }
        };
        let batch = ctx.decoder.decode_values(&records, &ctx.scope).map_err(|e| SyncError::Request {
            stream: ctx.def.name,
            at: ctx.at(None),
            source: ClientError::Data {
                request: format!("GET {}", ctx.path(None)),
                message: match e {
                    BodyError::Data(m) | BodyError::Malformed(m) => m,
                },
            },
        })?;
        report.records = batch.num_rows() as u64;
        report.windows = 1;
        self.write(ctx.def, vec![batch]).await?;
        let bookmark = New_York
            .from_local_datetime(&to.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        self.commit(ctx, bookmark).await?;
        report.bookmark_after = bookmark.or(report.bookmark_before);
        Ok(report)
    }

    async fn stats_request(&self, ctx: &Ctx<'_>, from: &str, to: &str) -> Result<Value, SyncError> {
        let query = ctx.query(vec![("fromdate", from.to_string()), ("todate", to.to_string())]);
        self.client
            .get(ctx.auth(), &ctx.path(None), &query, |b| serde_json::from_slice::<Value>(b).map_err(|e| BodyError::Malformed(e.to_string())))
            .await
            .map_err(|source| SyncError::Request {
                stream: ctx.def.name,
                at: ctx.at(None),
                source,
            })
    }

    // ---- FullTable --------------------------------------------------------------------------

    async fn full_table(&self, def: &'static StreamDef, decoder: &PageDecoder, server: &ServerScope, partitions: &[PartitionValue], paged: bool) -> Result<PartitionReport, SyncError> {
        let mut batches = Vec::new();
        let label = if partitions.len() == 1 { partitions[0].label.clone() } else { "all".to_string() };
        let mut report = empty_report(def, server.id, &label);
        for partition in partitions {
            let ctx = Ctx::new(def, decoder, server, partition);
            if !paged {
                batches.push(self.get_page(&ctx, &ctx.path(None), &ctx.query(Vec::new()), None).await?.batch);
                continue;
            }
            let first = self.get_page(&ctx, &ctx.path(None), &ctx.query(vec![("count", MAX_PAGE_SIZE.to_string()), ("offset", "0".to_string())]), None).await?;
            let total = first.total.unwrap_or(first.batch.num_rows() as u64);
            if total > MAX_REACH {
                return Err(SyncError::TooManyRows { stream: def.name, at: ctx.at(None), total });
            }
            let offsets: Vec<u64> = (MAX_PAGE_SIZE..total).step_by(MAX_PAGE_SIZE as usize).collect();
                let rest: Vec<Page> = stream::iter(offsets)
                .map(|offset| {
                    let query = ctx.query(vec![("count", MAX_PAGE_SIZE.min(MAX_REACH - offset).to_string()), ("offset", offset.to_string())]);
                    let ctx = &ctx;
                    async move { self.get_page(ctx, &ctx.path(None), &query, None).await }
                })
                .buffered(self.config.max_concurrency)
                .try_collect()
                .await?;
            batches.push(first.batch);
            batches.extend(rest.into_iter().map(|p| p.batch));
        }
        report.records = batches.iter().map(|b| b.num_rows() as u64).sum();
        report.windows = 1;
        // Replace this server's rows (or all rows, for account-level streams) in one commit.
        self.sink
            .replace(def.name, server.id)
            .await
            .map_err(|()| SyncError::SinkStopped(def.name))?;
        self.write(def, batches).await?;
        let _order = self.commit_order.lock().await;
        let snapshot = self.state().clone();
        self.sink
            .commit(def.name, snapshot)
            .await
            .map_err(|()| SyncError::SinkStopped(def.name))?;
        Ok(report)
    }
}

fn empty_report(def: &'static StreamDef, server: Option<i64>, partition: &str) -> PartitionReport {
    PartitionReport {
        stream: def.name,
        server,
        partition: partition.to_string(),
        records: 0,
        windows: 0,
        splits: 0,
        bookmark_before: None,
        bookmark_after: None,
        note: None,
    }
}

fn split(ctx: &Ctx<'_>, window: Window, total: u64) -> Result<Vec<Window>, SyncError> {
    let subs = window.split_for_total(total, MAX_REACH).map_err(|source| SyncError::TooDense {
        stream: ctx.def.name,
        at: ctx.at(None),
        total,
        source,
    })?;
    tracing::debug!(stream = ctx.def.name, total, parts = subs.len(), "Window above the offset limit; split.");
    Ok(subs)
}

fn eastern_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&New_York).date_naive()
}

/// `Days` entries of a stats response, by date.
fn days_by_date(body: &Value) -> BTreeMap<String, Map<String, Value>> {
    body.get("Days")
        .and_then(Value::as_array)
        .map(|days| {
            days.iter()
                .filter_map(|d| {
                    let m = d.as_object()?;
                    let date = m.get("Date")?.as_str()?.get(..10)?.to_string();
                    Some((date, m.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Missing counters are zero: the stats API omits zero values.
fn zero_fill(record: Value, schema: &crate::schema::StreamSchema) -> Value {
    let Value::Object(mut m) = record else { return record };
    for f in &schema.fields {
        if let (Some(src), crate::schema::FieldType::Integer | crate::schema::FieldType::Number) = (&f.source, &f.ty) {
            m.entry(src.clone()).or_insert(json!(0));
        }
    }
    Value::Object(m)
}

fn window_label(w: Window) -> String {
    let (from, to) = w.query_bounds();
    format!("{from}..{to} US-Eastern")
}

/// Whether row `i` of a tracking column (`track_opens` true, `track_links` not "None") was tracked.
fn is_tracked(column: &dyn Array, i: usize) -> bool {
    if column.is_null(i) {
        return true;
    }
    if let Some(b) = column.as_any().downcast_ref::<arrow::array::BooleanArray>() {
        return b.value(i);
    }
    if let Some(s) = column.as_any().downcast_ref::<arrow::array::StringArray>() {
        return !s.value(i).eq_ignore_ascii_case("none");
    }
    true
}

/// The earliest and latest instants of a timestamp column.
fn time_range(batch: &RecordBatch, column: &str) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(col) = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
    else {
        return (None, None);
    };
    let to_time = |v: Option<i64>| v.and_then(DateTime::from_timestamp_micros);
    (to_time(arrow::compute::min(col)), to_time(arrow::compute::max(col)))
}
