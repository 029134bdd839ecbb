//! A fake Postmark API server for tests and benchmarks, written from `shared/postmark-api.md`.
//!
//! It listens on 127.0.0.1 only, serves generated data, and is faithful where connectors break:
//! server-token auth (401, ErrorCode 10), required `count`/`offset` with `count <= 500` and
//! `count + offset <= 10,000` (422, ErrorCode 700, never clamped), newest-first order,
//! `fromdate`/`todate` read as America/New_York wall-clock time (DST-aware), inclusive, to the
//! second, with the least favourable reading where the reference is unsure (an ambiguous
//! `fromdate` is the later instant, an ambiguous `todate` the earlier, a date-only `todate` is the
//! start of that day), timestamps with New York offsets and 7 fractional digits, case-insensitive
//! paths and parameter names, retention, injected faults, latency, and a log of every request.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

pub mod generate;
mod routes;
pub use routes::{WEBHOOK_HEADER_VALUE, WEBHOOK_PASSWORD};
mod stats;

pub const MAX_COUNT: u64 = 500;
pub const MAX_REACH: u64 = 10_000;

/// One outbound message as the fake stores it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub stream: String,
    pub received_at: DateTime<Utc>,
    /// `None`: the key is absent; `Some("")`: an empty tag (both occur in real data).
    pub tag: Option<String>,
    pub to: Vec<(String, String)>,
    pub subject: String,
    pub track_opens: bool,
    pub metadata: Vec<(String, String)>,
    /// The JSON of the search item, rendered once (pages are then cheap to serve, so benchmarks
    /// measure the connector, not the fake).
    pub rendered: std::sync::OnceLock<String>,
}

/// An open (`is_click == false`) or a click event.
#[derive(Debug, Clone)]
pub struct Event {
    pub message_id: String,
    pub stream: String,
    pub recipient: String,
    pub received_at: DateTime<Utc>,
    pub tag: Option<String>,
    pub platform: String,
    /// Email client (opens) or browser (clicks) family.
    pub client_family: String,
    pub read_seconds: i64,
    pub first_open: bool,
    pub is_click: bool,
    pub link: String,
    /// `HTML` or `Text`.
    pub location: String,
    /// The JSON of the event, rendered once.
    pub rendered: std::sync::OnceLock<String>,
}

#[derive(Debug, Clone)]
pub struct Bounce {
    pub id: i64,
    pub message_id: String,
    pub stream: String,
    pub kind: String,
    pub type_code: i64,
    pub email: String,
    pub bounced_at: DateTime<Utc>,
    pub tag: Option<String>,
    pub inactive: bool,
}

#[derive(Debug, Clone)]
pub struct Inbound {
    pub id: String,
    pub received_at: DateTime<Utc>,
    pub from: String,
    pub subject: String,
    /// `Processed`, `Blocked`, ...
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct MessageStream {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub archived: bool,
}

/// A fault served instead of the next matching response.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 429, optionally with Retry-After seconds.
    RateLimited { retry_after: Option<u64> },
    /// HTTP 500 (ErrorCode 101), 502 (no body) or 503 (ErrorCode 100).
    Status(u16),
    /// An API error with Postmark's body: `{"ErrorCode": code, "Message": message}`.
    Api { status: u16, code: i64, message: String },
    /// HTTP 200 whose JSON body is cut in half.
    TruncatedJson,
    /// HTTP 200 whose body stream breaks off mid-way (connection reset).
    ResetMidBody,
    /// No answer for this long.
    Hang(Duration),
    /// HTTP 200 with this body (records of unexpected shapes).
    Body(String),
}

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Query parameters with lowercased names, in order.
    pub query: Vec<(String, String)>,
    /// The request carried the server token of one of the fake's servers.
    pub server_token_ok: bool,
    pub account_token_ok: bool,
    pub accept: Option<String>,
    pub accept_encoding: Option<String>,
    pub status: u16,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub server_token: String,
    pub server_name: String,
    pub account_token: String,
    pub retention_days: i64,
    pub latency: Duration,
    /// Whether the opens/clicks lists honour `fromdate`/`todate` (undocumented; postmark-python
    /// sends them). Both behaviours are tested.
    pub event_date_filters: bool,
    /// Gzip responses for clients that ask, as Postmark does (off in benchmarks: an instant server).
    pub gzip: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            server_token: "fake-server-token-0000".to_string(),
            server_name: "Fake Shop Production".to_string(),
            account_token: "fake-account-token-0000".to_string(),
            retention_days: 45,
            latency: Duration::ZERO,
            event_date_filters: true,
            gzip: true,
        }
    }
}

/// The data of one server.
#[derive(Default)]
pub(crate) struct Data {
    pub(crate) streams: Vec<MessageStream>,
    /// Per message stream, newest first.
    pub(crate) messages: BTreeMap<String, Vec<Message>>,
    /// Opens and clicks, newest first.
    pub(crate) opens: Vec<Event>,
    pub(crate) clicks: Vec<Event>,
    pub(crate) bounces: Vec<Bounce>,
    pub(crate) inbound: Vec<Inbound>,
    /// Webhook configurations (`None` until first read: then the two defaults).
    pub(crate) webhooks: Option<Vec<serde_json::Value>>,
}

impl Data {
    fn sort(&mut self) {
        for list in self.messages.values_mut() {
            list.sort_by(|a, b| b.received_at.cmp(&a.received_at).then_with(|| b.id.cmp(&a.id)));
        }
        let newest = |a: &Event, b: &Event| b.received_at.cmp(&a.received_at).then_with(|| b.message_id.cmp(&a.message_id));
        self.opens.sort_by(newest);
        self.clicks.sort_by(newest);
        self.bounces.sort_by(|a, b| b.bounced_at.cmp(&a.bounced_at).then_with(|| b.id.cmp(&a.id)));
        self.inbound.sort_by_key(|i| std::cmp::Reverse(i.received_at));
    }

    pub(crate) fn message(&self, id: &str) -> Option<&Message> {
        self.messages.values().flatten().find(|m| m.id == id)
    }
}

pub(crate) struct Server {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) data: Mutex<Data>,
}

impl Server {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Data> {
        // A panicking test thread must not wedge the server for the others.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Log {
    faults: VecDeque<(String, Fault)>,
    requests: Vec<RecordedRequest>,
    off: bool,
}

pub(crate) struct Shared {
    pub(crate) config: FakeConfig,
    servers: Mutex<Vec<Arc<Server>>>,
    log: Mutex<Log>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn server_by_token(&self, token: Option<&str>) -> Option<Arc<Server>> {
        let token = token?;
        self.servers().into_iter().find(|s| s.token == token)
    }

    pub(crate) fn cutoff(&self) -> DateTime<Utc> {
        Utc::now() - ChronoDuration::days(self.config.retention_days)
    }
}

/// A running fake server. Dropping it stops the server.
pub struct FakePostmark {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn default_streams() -> Vec<MessageStream> {
    vec![
        MessageStream { id: "outbound".into(), kind: "Transactional".into(), name: "Default Transactional Stream".into(), archived: false },
        MessageStream { id: "broadcast".into(), kind: "Broadcasts".into(), name: "Default Broadcast Stream".into(), archived: false },
        MessageStream { id: "inbound".into(), kind: "Inbound".into(), name: "Default Inbound Stream".into(), archived: false },
    ]
}

impl FakePostmark {
    /// Starts on 127.0.0.1 with a free port, on its own thread and runtime, with one server.
    pub fn start(config: FakeConfig, streams: Vec<MessageStream>, messages: Vec<Message>) -> FakePostmark {
        Self::start_on("127.0.0.1:0", config, streams, messages)
    }

    pub fn start_on(listen: &str, config: FakeConfig, streams: Vec<MessageStream>, messages: Vec<Message>) -> FakePostmark {
        let first = Arc::new(Server {
            id: 118822,
            name: config.server_name.clone(),
            token: config.server_token.clone(),
            data: Mutex::new(Data { streams, ..Data::default() }),
        });
        let shared = Arc::new(Shared {
            config,
            servers: Mutex::new(vec![first]),
            log: Mutex::new(Log::default()),
        });
        let this_shared = shared.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let listen = listen.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind fake server");
                addr_tx.send(listener.local_addr().expect("local addr")).ok();
                // Postmark gzips responses for clients that ask (reference 1.1).
                let gzip = shared.config.gzip;
                let app = Router::new()
                    .fallback(handle)
                    .with_state(shared)
                    .layer(tower_http::compression::CompressionLayer::new().gzip(gzip).no_br().no_deflate().no_zstd());
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        shutdown_rx.await.ok();
                    })
                    .await
                    .ok();
            });
        });
        let addr = addr_rx.recv().expect("fake server did not start");
        let fake = FakePostmark {
            addr,
            shared: this_shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };
        fake.add_messages(messages);
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> &str {
        &self.shared.config.server_token
    }

    pub fn account_token(&self) -> &str {
        &self.shared.config.account_token
    }

    /// Adds another server (reached with the account token); returns its ID.
    pub fn add_server(&self, name: &str, token: &str, streams: Vec<MessageStream>) -> i64 {
        let mut servers = self.shared.servers.lock().unwrap_or_else(|p| p.into_inner());
        let id = 118822 + servers.len() as i64;
        servers.push(Arc::new(Server {
            id,
            name: name.to_string(),
            token: token.to_string(),
            data: Mutex::new(Data { streams, ..Data::default() }),
        }));
        id
    }

    fn server(&self, index: usize) -> Arc<Server> {
        self.shared.servers()[index].clone()
    }

    /// Changes the data of server `index` (0 = the first) and keeps the lists newest first.
    pub fn with_data(&self, index: usize, change: impl FnOnce(&mut DataMut<'_>)) {
        let server = self.server(index);
        let mut data = server.lock();
        change(&mut DataMut(&mut data));
        data.sort();
    }

    /// Adds messages to the first server.
    pub fn add_messages(&self, messages: Vec<Message>) {
        self.with_data(0, |d| d.add_messages(messages));
    }

    /// Derives opens, clicks and bounces from the first server's messages (see generate::events).
    pub fn generate_events(&self, seed: u64) {
        self.with_data(0, |d| {
            let messages: Vec<Message> = d.0.messages.values().flatten().cloned().collect();
            let (opens, clicks, bounces) = generate::events(seed, &messages);
            d.0.opens.extend(opens);
            d.0.clicks.extend(clicks);
            d.0.bounces.extend(bounces);
        });
    }

    /// What the API would return now (inside retention) from server `index`, for ground truth.
    pub fn visible(&self, index: usize) -> Visible {
        let cutoff = self.shared.cutoff();
        let now = Utc::now();
        let server = self.server(index);
        let data = server.lock();
        let keep = |t: &DateTime<Utc>| *t >= cutoff && *t <= now;
        Visible {
            server_id: server.id,
            messages: data.messages.values().flatten().filter(|m| keep(&m.received_at)).cloned().collect(),
            opens: data.opens.iter().filter(|e| keep(&e.received_at)).cloned().collect(),
            clicks: data.clicks.iter().filter(|e| keep(&e.received_at)).cloned().collect(),
            bounces: data.bounces.iter().filter(|b| keep(&b.bounced_at)).cloned().collect(),
            inbound: data.inbound.iter().filter(|i| keep(&i.received_at)).cloned().collect(),
        }
    }

    /// Messages the API would return now from the first server.
    pub fn visible_messages(&self) -> Vec<Message> {
        self.visible(0).messages
    }

    /// Queues faults for the next requests whose lowercased `path?query` contains `matcher`
    /// ("" = any request), e.g. "/messages/outbound" or "messagestream=broadcast".
    pub fn push_faults(&self, matcher: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut log = self.shared.log();
        for f in faults {
            log.faults.push_back((matcher.to_ascii_lowercase(), f));
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.log().requests.clear();
    }

    /// Turns the request log off (benchmarks with millions of requests).
    pub fn set_request_log(&self, on: bool) {
        self.shared.log().off = !on;
    }

    /// Blocks until the server stops (for the standalone binary).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// Ground truth: the records the API returns now.
#[derive(Debug, Clone)]
pub struct Visible {
    pub server_id: i64,
    pub messages: Vec<Message>,
    pub opens: Vec<Event>,
    pub clicks: Vec<Event>,
    pub bounces: Vec<Bounce>,
    pub inbound: Vec<Inbound>,
}

/// Write access to one server's data, for tests.
pub struct DataMut<'a>(&'a mut Data);

impl DataMut<'_> {
    pub fn add_messages(&mut self, messages: Vec<Message>) {
        for m in messages {
            self.0.messages.entry(m.stream.clone()).or_default().push(m);
        }
    }
    pub fn add_opens(&mut self, events: Vec<Event>) {
        self.0.opens.extend(events);
    }
    pub fn add_clicks(&mut self, events: Vec<Event>) {
        self.0.clicks.extend(events);
    }
    pub fn add_bounces(&mut self, bounces: Vec<Bounce>) {
        self.0.bounces.extend(bounces);
    }
    pub fn add_inbound(&mut self, inbound: Vec<Inbound>) {
        self.0.inbound.extend(inbound);
    }
    /// The webhook configurations as `GET /webhooks` would list them.
    pub fn webhooks(&mut self) -> Vec<serde_json::Value> {
        routes::webhooks_of(self.0).clone()
    }
}

impl Drop for FakePostmark {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// `2025-06-03T09:14:07.5512093-04:00`: New York offset, 7 fractional digits.
pub fn postmark_timestamp(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&New_York);
    let ticks = t.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}{}", local.format("%Y-%m-%dT%H:%M:%S"), local.format("%:z"))
}

pub(crate) fn api_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], json!({"ErrorCode": code, "Message": message}).to_string()).into_response()
}

pub(crate) fn json_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

#[derive(Clone, Copy)]
pub(crate) enum Bound {
    From,
    To,
}

/// Reads a Postmark date filter as New York wall-clock time, choosing the least favourable
/// instant where the reference leaves the reading open.
pub(crate) fn parse_eastern(raw: &str, bound: Bound) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?;
    let resolved = match New_York.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(early, late) => match bound {
            Bound::From => late,
            Bound::To => early,
        },
        // In the spring-forward gap: the first instant after it.
        LocalResult::None => New_York.from_local_datetime(&(naive + ChronoDuration::hours(1))).earliest()?,
    };
    Some(resolved.with_timezone(&Utc))
}

fn query_map(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_ascii_lowercase();
    let query = query_map(&req);
    let headers = req.headers().clone();
    let method = req.method().clone();
    let target = format!("{path}?{}", req.uri().query().unwrap_or_default()).to_ascii_lowercase();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let token_ok = shared
        .server_by_token(headers.get("x-postmark-server-token").and_then(|v| v.to_str().ok()))
        .is_some();
    let account_ok = headers
        .get("x-postmark-account-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == shared.config.account_token);

    let fault = {
        let mut log = shared.log();
        let pos = log.faults.iter().position(|(matcher, _)| target.contains(matcher.as_str()));
        pos.and_then(|p| log.faults.remove(p)).map(|(_, f)| f)
    };
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let response = match fault {
        Some(f) => serve_fault(f, &shared, &path, &query, &headers, &method, &body).await,
        None => routes::route(&shared, &method, &path, &query, &headers, &body),
    };
    let mut log = shared.log();
    if !log.off {
        log.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query,
            server_token_ok: token_ok,
            account_token_ok: account_ok,
            accept: headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string),
            accept_encoding: headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string),
            status: response.status().as_u16(),
        });
    }
    response
}

async fn serve_fault(f: Fault, shared: &Shared, path: &str, query: &[(String, String)], headers: &HeaderMap, method: &Method, body: &[u8]) -> Response {
    match f {
        Fault::RateLimited { retry_after } => {
            let mut r = api_error(StatusCode::TOO_MANY_REQUESTS, 429, "Rate Limit Exceeded");
            if let Some(s) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, s.into());
            }
            r
        }
        Fault::Api { status, code, message } => {
            api_error(StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY), code, &message)
        }
        Fault::Status(500) => api_error(StatusCode::INTERNAL_SERVER_ERROR, 101, "An error that shouldn't have occurred. Error id: fake-1."),
        Fault::Status(503) => api_error(StatusCode::SERVICE_UNAVAILABLE, 100, "Maintenance."),
        Fault::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY).into_response(),
        Fault::TruncatedJson => {
            let full = routes::route(shared, method, path, query, headers, body);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX).await.unwrap_or_default();
            json_response(String::from_utf8_lossy(&bytes[..bytes.len() / 2]).into_owned())
        }
        Fault::ResetMidBody => {
            let full = routes::route(shared, method, path, query, headers, body);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX).await.unwrap_or_default();
            let half = bytes.slice(..bytes.len() / 2);
            let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake reset")),
            ];
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Fault::Body(body) => json_response(body),
        Fault::Hang(d) => {
            tokio::time::sleep(d).await;
            routes::route(shared, method, path, query, headers, body)
        }
    }
}

/// A seeded random generator for reproducible data sets.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A random UUID-shaped ID.
pub fn uuid(rng: &mut StdRng) -> String {
    let a: u32 = rng.random();
    let b: u16 = rng.random();
    let c: u16 = rng.random::<u16>() & 0x0fff;
    let d: u16 = (rng.random::<u16>() & 0x3fff) | 0x8000;
    let e: u64 = rng.random::<u64>() & 0xffff_ffff_ffff;
    format!("{a:08x}-{b:04x}-4{c:03x}-{d:04x}-{e:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Timestamps carry the New York offset of their date and seven fraction digits.
    #[test]
    fn timestamps_look_like_postmark() {
        assert_eq!(postmark_timestamp(utc("2025-06-03T13:14:07.5512093Z")), "2025-06-03T09:14:07.5512093-04:00");
        assert_eq!(postmark_timestamp(utc("2025-02-03T13:14:07Z")), "2025-02-03T08:14:07.0000000-05:00");
    }

    /// Date filters are New York wall-clock times, read unfavourably where ambiguous.
    #[test]
    fn eastern_filters() {
        assert_eq!(parse_eastern("2026-07-01T00:00:00", Bound::From), Some(utc("2026-07-01T04:00:00Z")));
        assert_eq!(parse_eastern("2026-01-01", Bound::To), Some(utc("2026-01-01T05:00:00Z")));
        assert_eq!(parse_eastern("2026-11-01T01:30:00", Bound::From), Some(utc("2026-11-01T06:30:00Z")));
        assert_eq!(parse_eastern("2026-11-01T01:30:00", Bound::To), Some(utc("2026-11-01T05:30:00Z")));
        assert_eq!(parse_eastern("2026-03-08T02:30:00", Bound::From), Some(utc("2026-03-08T07:30:00Z")));
        assert_eq!(parse_eastern("junk", Bound::From), None);
    }
}
