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
use serde::Serialize;
use serde_json::{Value, json};

pub mod generate;

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
}

#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Query parameters with lowercased names, in order.
    pub query: Vec<(String, String)>,
    pub server_token_ok: bool,
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
    pub retention_days: i64,
    pub latency: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            server_token: "fake-server-token-0000".to_string(),
            server_name: "Fake Shop Production".to_string(),
            retention_days: 45,
            latency: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    streams: Vec<MessageStream>,
    /// Per message stream, sorted newest first.
    messages: BTreeMap<String, Vec<Message>>,
    faults: VecDeque<(String, Fault)>,
    requests: Vec<RecordedRequest>,
    log_requests: bool,
}

struct Shared {
    config: FakeConfig,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not wedge the server for the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
    /// Starts on 127.0.0.1 with a free port, on its own thread and runtime.
    pub fn start(config: FakeConfig, streams: Vec<MessageStream>, messages: Vec<Message>) -> FakePostmark {
        Self::start_on("127.0.0.1:0", config, streams, messages)
    }

    pub fn start_on(listen: &str, config: FakeConfig, streams: Vec<MessageStream>, messages: Vec<Message>) -> FakePostmark {
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner {
                streams,
                log_requests: true,
                ..Inner::default()
            }),
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
                let app = Router::new()
                    .fallback(handle)
                    .with_state(shared)
                    .layer(tower_http::compression::CompressionLayer::new().gzip(true));
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

    /// Adds messages (kept newest first per stream).
    pub fn add_messages(&self, messages: Vec<Message>) {
        let mut inner = self.shared.lock();
        for m in messages {
            inner.messages.entry(m.stream.clone()).or_default().push(m);
        }
        for list in inner.messages.values_mut() {
            list.sort_by(|a, b| b.received_at.cmp(&a.received_at).then_with(|| b.id.cmp(&a.id)));
        }
    }

    /// Every message the API would return now (inside retention), for ground truth.
    pub fn visible_messages(&self) -> Vec<Message> {
        let cutoff = Utc::now() - ChronoDuration::days(self.shared.config.retention_days);
        self.shared
            .lock()
            .messages
            .values()
            .flatten()
            .filter(|m| m.received_at >= cutoff)
            .cloned()
            .collect()
    }

    /// Queues faults for the next requests whose lowercased `path?query` contains `matcher`
    /// ("" = any request), e.g. "/messages/outbound" or "messagestream=broadcast".
    pub fn push_faults(&self, matcher: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut inner = self.shared.lock();
        for f in faults {
            inner.faults.push_back((matcher.to_ascii_lowercase(), f));
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Turns the request log off (benchmarks with millions of requests).
    pub fn set_request_log(&self, on: bool) {
        self.shared.lock().log_requests = on;
    }

    /// Blocks until the server stops (for the standalone binary).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
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

fn api_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], json!({"ErrorCode": code, "Message": message}).to_string()).into_response()
}

fn json_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

#[derive(Clone, Copy)]
enum Bound {
    From,
    To,
}

/// Reads a Postmark date filter as New York wall-clock time, choosing the least favourable
/// instant where the reference leaves the reading open.
fn parse_eastern(raw: &str, bound: Bound) -> Option<DateTime<Utc>> {
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

fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/').to_ascii_lowercase();
    let query = query_map(&req);
    let headers = req.headers().clone();
    let token_ok = headers
        .get("x-postmark-server-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == shared.config.server_token);

    let target = format!("{path}?{}", req.uri().query().unwrap_or_default()).to_ascii_lowercase();
    let fault = {
        let mut inner = shared.lock();
        let pos = inner.faults.iter().position(|(matcher, _)| target.contains(matcher.as_str()));
        pos.and_then(|p| inner.faults.remove(p)).map(|(_, f)| f)
    };
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let response = match fault {
        Some(f) => serve_fault(f, &shared, &path, &query, &headers, req.method()).await,
        None => route(&shared, req.method(), &path, &query, &headers),
    };
    let mut inner = shared.lock();
    if inner.log_requests {
        inner.requests.push(RecordedRequest {
            method: req.method().to_string(),
            path: path.clone(),
            query,
            server_token_ok: token_ok,
            accept: headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string),
            accept_encoding: headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string),
            status: response.status().as_u16(),
        });
    }
    response
}

async fn serve_fault(f: Fault, shared: &Shared, path: &str, query: &[(String, String)], headers: &HeaderMap, method: &Method) -> Response {
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
            let full = route(shared, method, path, query, headers);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX).await.unwrap_or_default();
            json_response(String::from_utf8_lossy(&bytes[..bytes.len() / 2]).into_owned())
        }
        Fault::ResetMidBody => {
            let full = route(shared, method, path, query, headers);
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
        Fault::Hang(d) => {
            tokio::time::sleep(d).await;
            route(shared, method, path, query, headers)
        }
    }
}

fn route(shared: &Shared, method: &Method, path: &str, query: &[(String, String)], headers: &HeaderMap) -> Response {
    if method != Method::GET {
        return api_error(StatusCode::METHOD_NOT_ALLOWED, 0, "Only GET endpoints are faked.");
    }
    let token = headers.get("x-postmark-server-token").and_then(|v| v.to_str().ok());
    if token != Some(shared.config.server_token.as_str()) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            10,
            "Request does not contain a valid Server token. Please see the API reference for more information.",
        );
    }
    match path {
        "/server" => json_response(
            json!({
                "ID": 118822, "Name": shared.config.server_name, "ApiTokens": [shared.config.server_token],
                "Color": "Blue", "SmtpApiActivated": true, "RawEmailEnabled": false, "DeliveryType": "Live",
                "InboundAddress": "abc123@inbound.postmarkapp.com", "TrackOpens": true, "TrackLinks": "None"
            })
            .to_string(),
        ),
        "/message-streams" => message_streams(shared, query),
        "/messages/outbound" => outbound_messages(shared, query),
        _ => api_error(StatusCode::NOT_FOUND, 0, "Not found (the fake does not serve this path)."),
    }
}

fn message_streams(shared: &Shared, query: &[(String, String)]) -> Response {
    let kind = get(query, "messagestreamtype").unwrap_or("All");
    let archived = get(query, "includearchivedstreams").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let inner = shared.lock();
    let items: Vec<Value> = inner
        .streams
        .iter()
        .filter(|s| kind.eq_ignore_ascii_case("all") || s.kind.eq_ignore_ascii_case(kind))
        .filter(|s| archived || !s.archived)
        .map(|s| {
            json!({
                "ID": s.id, "ServerID": 118822, "Name": s.name, "Description": null,
                "MessageStreamType": s.kind, "CreatedAt": "2024-11-02T10:00:00-04:00",
                "UpdatedAt": null, "ArchivedAt": if s.archived { json!("2026-10-01T10:00:00-04:00") } else { Value::Null },
                "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": "None"}
            })
        })
        .collect();
    json_response(json!({"MessageStreams": items, "TotalCount": items.len()}).to_string())
}

/// Validates `count`/`offset` as Postmark does: required, 1..=500, >= 0, sum <= 10,000.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself
fn paging(query: &[(String, String)], error_code: i64) -> Result<(u64, u64), Response> {
    let bad = |m: &str| api_error(StatusCode::UNPROCESSABLE_ENTITY, error_code, m);
    let count: i64 = get(query, "count").and_then(|v| v.parse().ok()).ok_or_else(|| bad("The 'count' parameter is required and must be a number."))?;
    let offset: i64 = get(query, "offset").and_then(|v| v.parse().ok()).ok_or_else(|| bad("The 'offset' parameter is required and must be a number."))?;
    if !(1..=MAX_COUNT as i64).contains(&count) {
        return Err(bad("Count must be between 1 and 500."));
    }
    if offset < 0 {
        return Err(bad("Offset must not be negative."));
    }
    if (count + offset) as u64 > MAX_REACH {
        return Err(bad("Count + Offset cannot exceed 10000 messages."));
    }
    Ok((count as u64, offset as u64))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Address<'a> {
    email: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct OutboundItem<'a> {
    #[serde(rename = "Tag", skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(rename = "MessageID")]
    message_id: &'a str,
    #[serde(rename = "MessageStream")]
    message_stream: &'a str,
    #[serde(rename = "To")]
    to: Vec<Address<'a>>,
    #[serde(rename = "Cc")]
    cc: [Address<'a>; 0],
    #[serde(rename = "Bcc")]
    bcc: [Address<'a>; 0],
    #[serde(rename = "Recipients")]
    recipients: Vec<&'a str>,
    #[serde(rename = "ReceivedAt")]
    received_at: String,
    #[serde(rename = "From")]
    from: &'a str,
    #[serde(rename = "Subject")]
    subject: &'a str,
    #[serde(rename = "Attachments")]
    attachments: [&'a str; 0],
    #[serde(rename = "Status")]
    status: &'a str,
    #[serde(rename = "TrackOpens")]
    track_opens: bool,
    #[serde(rename = "TrackLinks")]
    track_links: &'a str,
    #[serde(rename = "Metadata")]
    metadata: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "Sandboxed")]
    sandboxed: bool,
}

fn outbound_messages(shared: &Shared, query: &[(String, String)]) -> Response {
    let (count, offset) = match paging(query, 700) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut from = None;
    let mut to = None;
    for (name, bound, slot) in [("fromdate", Bound::From, &mut from), ("todate", Bound::To, &mut to)] {
        if let Some(raw) = get(query, name) {
            match parse_eastern(raw, bound) {
                Some(t) => *slot = Some(t),
                None => return api_error(StatusCode::UNPROCESSABLE_ENTITY, 700, &format!("The '{name}' parameter is not a valid date.")),
            }
        }
    }
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    let cutoff = Utc::now() - ChronoDuration::days(shared.config.retention_days);
    let inner = shared.lock();
    if !inner.streams.iter().any(|s| s.id.eq_ignore_ascii_case(&stream)) {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 1226, "The message stream for the provided 'ID' was not found.");
    }
    let empty = Vec::new();
    let all = inner.messages.get(&stream).unwrap_or(&empty);
    // Newest first: find the slice [from, to] by binary search.
    let upper = to.map_or(0, |t| all.partition_point(|m| m.received_at > t));
    let lower_bound = from.map_or(cutoff, |f| f.max(cutoff));
    let lower = all.partition_point(|m| m.received_at >= lower_bound);
    let matching = if lower > upper { &all[upper..lower] } else { &all[0..0] };
    let page = matching.iter().skip(offset as usize).take(count as usize);
    let items: Vec<OutboundItem<'_>> = page
        .map(|m| OutboundItem {
            tag: m.tag.as_deref(),
            message_id: &m.id,
            message_stream: &m.stream,
            to: m.to.iter().map(|(e, n)| Address { email: e, name: n }).collect(),
            cc: [],
            bcc: [],
            recipients: m.to.iter().map(|(e, _)| e.as_str()).collect(),
            received_at: postmark_timestamp(m.received_at),
            from: "\"Shop\" <orders@shop.example>",
            subject: &m.subject,
            attachments: [],
            status: "Sent",
            track_opens: m.track_opens,
            track_links: if m.track_opens { "HtmlAndText" } else { "None" },
            metadata: m.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            sandboxed: false,
        })
        .collect();
    let body = json!({"TotalCount": matching.len(), "Messages": items});
    json_response(body.to_string())
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
