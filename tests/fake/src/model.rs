//! The records the fake serves, and the faults it can inject.

use super::*;

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

impl Message {
    /// When the search index shows the message, with a late index of at most `max_delay`.
    pub fn searchable_at(&self, max_delay: ChronoDuration) -> DateTime<Utc> {
        let ms = max_delay.num_milliseconds();
        if ms <= 0 {
            return self.received_at;
        }
        // FNV-1a of the ID: a delay of its own, the same on every request.
        let hash = self
            .id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        self.received_at + ChronoDuration::milliseconds((hash % ms as u64) as i64)
    }
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
pub struct FakeConfig {
    pub server_token: String,
    pub server_name: String,
    pub account_token: String,
    pub retention_days: i64,
    /// Delay before every answer; with `latency_max` above it, each answer's delay is drawn
    /// uniformly from `latency..=latency_max` (a slow API whose answers vary).
    pub latency: Duration,
    pub latency_max: Duration,
    /// Share of requests (0..1) answered at random with a 429 or a 503, half each, besides the
    /// faults a test queues: a flaky API under load.
    pub error_rate: f64,
    /// Seed of the drawn latencies and errors.
    pub chaos_seed: u64,
    /// Whether the opens/clicks lists honour `fromdate`/`todate` (undocumented; postmark-python
    /// sends them). Both behaviours are tested.
    pub event_date_filters: bool,
    /// Gzip responses for clients that ask, as Postmark does (off in benchmarks: an instant server).
    pub gzip: bool,
    /// The fake's clock minus the host's: its data, its date filters and its `Date` header
    /// follow the fake's clock (a host clock that drifted is the other side of it).
    pub clock_offset: ChronoDuration,
    /// How `fromdate`/`todate` are read (the reference's reading, or another one).
    pub date_reading: DateReading,
    /// Late indexing: an outbound message shows in search up to this long after its
    /// `ReceivedAt` (each message its own delay, from its ID).
    pub index_delay: ChronoDuration,
    /// New mail arriving while a sync pages: before each outbound search answer, this many
    /// messages are added to the stream asked for, received up to `index_delay` (or a minute)
    /// before the fake's now, so they land at the top of newest-first pages.
    pub arrivals_per_search: usize,
    /// Seed of the arriving mail.
    pub arrival_seed: u64,
    /// Lists only nearly newest first: each record is placed as if it were received up to this
    /// much later (its own shift, from its ID), as an API ordering by an internal ID or by
    /// indexing time would. Zero (the default) lists strictly newest first.
    pub order_jitter: ChronoDuration,
}

/// Readings of the search endpoints' `fromdate`/`todate` that Postmark might use: the
/// reference's, and others it does not rule out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DateReading {
    /// America/New_York wall-clock time with daylight saving, to the second (the reference).
    #[default]
    Eastern,
    /// As `Eastern`, but `todate` covers its whole second (records carry fractions).
    EasternWholeSecond,
    /// A fixed UTC-5 offset all year (no daylight saving).
    FixedUtcMinus5,
    /// As `Eastern`, but a bare-date `todate` means the end of that day.
    BareDateWholeDay,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            server_token: "fake-server-token-0000".to_string(),
            server_name: "Fake Shop Production".to_string(),
            account_token: "fake-account-token-0000".to_string(),
            retention_days: 45,
            latency: Duration::ZERO,
            latency_max: Duration::ZERO,
            error_rate: 0.0,
            chaos_seed: 0,
            event_date_filters: true,
            gzip: true,
            clock_offset: ChronoDuration::zero(),
            date_reading: DateReading::Eastern,
            index_delay: ChronoDuration::zero(),
            arrivals_per_search: 0,
            arrival_seed: 0,
            order_jitter: ChronoDuration::zero(),
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
pub struct DataMut<'a>(pub(crate) &'a mut Data);

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
    /// Sets the status of an inbound message (queued mail being processed).
    pub fn set_inbound_status(&mut self, id: &str, status: &str) {
        for i in self.0.inbound.iter_mut().filter(|i| i.id == id) {
            i.status = status.to_string();
        }
    }
    /// The webhook configurations as `GET /webhooks` would list them.
    pub fn webhooks(&mut self) -> Vec<serde_json::Value> {
        routes::webhooks_of(self.0).clone()
    }
}
