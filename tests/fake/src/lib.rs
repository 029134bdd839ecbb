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
mod http;
mod model;
mod routes;

pub use http::*;
pub use model::*;
pub use routes::{WEBHOOK_HEADER_VALUE, WEBHOOK_PASSWORD};
mod stats;

pub const MAX_COUNT: u64 = 500;
pub const MAX_REACH: u64 = 10_000;

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
    /// When the request arrived and when its answer was ready (after the drawn latency).
    pub arrived: std::time::Instant,
    pub answered: std::time::Instant,
}

impl RecordedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
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
    /// `FakeConfig::order_jitter`, in milliseconds.
    pub(crate) order_jitter_ms: i64,
}

/// Where a record with this identity is listed: its instant, shifted by up to `jitter_ms`
/// (an FNV-1a hash of the identity picks the shift).
fn listed_at(at: DateTime<Utc>, identity: &str, jitter_ms: i64) -> DateTime<Utc> {
    if jitter_ms <= 0 {
        return at;
    }
    let hash = identity
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    at + ChronoDuration::milliseconds((hash % jitter_ms as u64) as i64)
}

impl Data {
    pub(crate) fn sort(&mut self) {
        let j = self.order_jitter_ms;
        if j > 0 {
            self.sort_jittered(j);
            return;
        }
        for list in self.messages.values_mut() {
            list.sort_by(|a, b| b.received_at.cmp(&a.received_at).then_with(|| b.id.cmp(&a.id)));
        }
        let newest = |a: &Event, b: &Event| b.received_at.cmp(&a.received_at).then_with(|| b.message_id.cmp(&a.message_id));
        self.opens.sort_by(newest);
        self.clicks.sort_by(newest);
        self.bounces.sort_by(|a, b| b.bounced_at.cmp(&a.bounced_at).then_with(|| b.id.cmp(&a.id)));
        self.inbound.sort_by_key(|i| std::cmp::Reverse(i.received_at));
    }

    /// [`FakeConfig::order_jitter`]: nearly newest first.
    fn sort_jittered(&mut self, j: i64) {
        for list in self.messages.values_mut() {
            list.sort_by_cached_key(|m| (std::cmp::Reverse(listed_at(m.received_at, &m.id, j)), std::cmp::Reverse(m.id.clone())));
        }
        let newest = |e: &Event| {
            let identity = format!("{}{}{}", e.message_id, e.recipient, e.received_at.timestamp_micros());
            (
                std::cmp::Reverse(listed_at(e.received_at, &identity, j)),
                std::cmp::Reverse(e.message_id.clone()),
            )
        };
        self.opens.sort_by_cached_key(newest);
        self.clicks.sort_by_cached_key(newest);
        self.bounces
            .sort_by_cached_key(|b| (std::cmp::Reverse(listed_at(b.bounced_at, &b.id.to_string(), j)), std::cmp::Reverse(b.id)));
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
    pub(crate) data: std::sync::RwLock<Data>,
}

impl Server {
    /// The data to change.
    pub(crate) fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        // A panicking test thread must not wedge the server for the others.
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The data to read, beside other readers.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
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
    /// The generator of mail arriving while a sync pages (`config.arrivals_per_search`).
    pub(crate) arrivals: Mutex<StdRng>,
    /// The generator of drawn latencies and random errors (`latency_max`, `error_rate`).
    chaos: Mutex<StdRng>,
    /// Messages arriving before each outbound search answer (starts at the config's; tests change it).
    pub(crate) arrivals_per_search: std::sync::atomic::AtomicUsize,
    /// The fake's clock minus the host's, in ms (starts at `config.clock_offset`; tests move it).
    clock_offset_ms: std::sync::atomic::AtomicI64,
    servers: Mutex<Vec<Arc<Server>>>,
    log: Mutex<Log>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This answer's delay, and whether it is a random error (`Some(429)` or `Some(503)`).
    pub(crate) fn draw_chaos(&self) -> (Duration, Option<u16>) {
        let (lo, hi, rate) = (self.config.latency, self.config.latency_max, self.config.error_rate);
        if hi <= lo && rate <= 0.0 {
            return (lo, None);
        }
        let mut rng = self.chaos.lock().unwrap_or_else(|p| p.into_inner());
        let delay = if hi > lo { rng.random_range(lo..=hi) } else { lo };
        let error = (rate > 0.0 && rng.random_bool(rate.min(1.0))).then(|| if rng.random_bool(0.5) { 429 } else { 503 });
        (delay, error)
    }

    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn server_by_token(&self, token: Option<&str>) -> Option<Arc<Server>> {
        let token = token?;
        self.servers().into_iter().find(|s| s.token == token)
    }

    /// The fake's clock: the host's moved by `clock_offset` (its data and its `Date` header).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + ChronoDuration::milliseconds(self.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// What a request may see: retention's start and the fake's now.
    pub(crate) fn span(&self) -> Span {
        let now = self.now();
        Span {
            cutoff: now - ChronoDuration::days(self.config.retention_days),
            now,
            reading: self.config.date_reading,
            index_delay: self.config.index_delay,
            nearly_ordered: self.config.order_jitter > ChronoDuration::zero(),
        }
    }
}

/// The time bounds of one answer: nothing older than retention, nothing after the fake's now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) cutoff: DateTime<Utc>,
    pub(crate) now: DateTime<Utc>,
    /// How this fake reads date filters.
    pub(crate) reading: DateReading,
    /// Late indexing of outbound messages (zero: none).
    pub(crate) index_delay: ChronoDuration,
    /// Lists are only nearly newest first (`FakeConfig::order_jitter`): no binary search.
    pub(crate) nearly_ordered: bool,
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
        MessageStream {
            id: "outbound".into(),
            kind: "Transactional".into(),
            name: "Default Transactional Stream".into(),
            archived: false,
        },
        MessageStream {
            id: "broadcast".into(),
            kind: "Broadcasts".into(),
            name: "Default Broadcast Stream".into(),
            archived: false,
        },
        MessageStream {
            id: "inbound".into(),
            kind: "Inbound".into(),
            name: "Default Inbound Stream".into(),
            archived: false,
        },
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
            data: std::sync::RwLock::new(Data {
                streams,
                order_jitter_ms: config.order_jitter.num_milliseconds(),
                ..Data::default()
            }),
        });
        let shared = Arc::new(Shared {
            arrivals: Mutex::new(rng(config.arrival_seed)),
            chaos: Mutex::new(rng(config.chaos_seed)),
            arrivals_per_search: config.arrivals_per_search.into(),
            clock_offset_ms: config.clock_offset.num_milliseconds().into(),
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
                // Postmark gzips responses for clients that ask (reference 1.1). The fastest
                // level: the client's decoding is what is under test, and deflate at the default
                // level was the largest share of the tests' CPU.
                let gzip = shared.config.gzip;
                let compression = tower_http::compression::CompressionLayer::new()
                    .gzip(gzip)
                    .no_br()
                    .no_deflate()
                    .no_zstd()
                    .quality(tower_http::CompressionLevel::Fastest);
                let app = Router::new().fallback(handle).with_state(shared).layer(compression);
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

    /// The fake's clock now (the host's moved by `FakeConfig::clock_offset`).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// Sets how many messages arrive before each outbound search answer (0: none).
    pub fn set_arrivals(&self, per_search: usize) {
        self.shared.arrivals_per_search.store(per_search, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves the fake's clock forward by `by` (time passing between syncs, without waiting).
    pub fn advance_clock(&self, by: ChronoDuration) {
        self.shared
            .clock_offset_ms
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::Relaxed);
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
            data: std::sync::RwLock::new(Data {
                streams,
                order_jitter_ms: self.shared.config.order_jitter.num_milliseconds(),
                ..Data::default()
            }),
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
        let now = self.now();
        self.with_data(0, |d| {
            let messages: Vec<Message> = d.0.messages.values().flatten().cloned().collect();
            let (opens, clicks, bounces) = generate::events_until(seed, &messages, now);
            d.0.opens.extend(opens);
            d.0.clicks.extend(clicks);
            d.0.bounces.extend(bounces);
        });
    }

    /// What the API would return now (inside retention) from server `index`, for ground truth.
    pub fn visible(&self, index: usize) -> Visible {
        let Span { cutoff, now, index_delay, .. } = self.shared.span();
        let server = self.server(index);
        let data = server.read();
        let keep = |t: &DateTime<Utc>| *t >= cutoff && *t <= now;
        Visible {
            server_id: server.id,
            messages: data
                .messages
                .values()
                .flatten()
                .filter(|m| keep(&m.received_at) && m.searchable_at(index_delay) <= now)
                .cloned()
                .collect(),
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
mod tests;
