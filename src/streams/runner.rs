//! Runs one stream: finds its servers and partitions, and hands each partition to the reader of
//! its [`Kind`](crate::streams::Kind) in [`read`](crate::streams::read); plans the same reads
//! for `--dry-run` without reading them.

use chrono::{DateTime, Utc};

use crate::client::{BodyError, Call, PostmarkClient, TokenKind};
use crate::config::Config;
use crate::sinks::{LoadMode, SinkHandle, StreamInfo};
use crate::state::State;
use crate::streams::commit::Committer;
use crate::streams::context::Ctx;
use crate::streams::discovery::{Discovery, NO_PARTITION, ServerScope};
use crate::streams::error::SyncError;
use crate::streams::extract::{Page, PageDecoder};
use crate::streams::read::ahead::Ahead;
use crate::streams::summary::{PartitionReport, PlannedRead};
use crate::streams::window::Window;
use crate::streams::{MAX_PAGE_SIZE, StreamDef, read};

/// Pages a read keeps ahead per request slot (see [`Extractor::read_ahead`]).
pub const READ_AHEAD_PER_SLOT: usize = 4;
/// Pages a read may hold per request slot while the page at its head waits (see
/// [`Extractor::ahead`]).
pub const READ_HELD_PER_SLOT: usize = 12;

pub struct Extractor<'a> {
    pub client: &'a PostmarkClient,
    pub config: &'a Config,
    pub commits: Committer<'a>,
    /// Start of this run: windows never reach past it, and rows carry it as `_synced_at`.
    pub now: DateTime<Utc>,
    pub discovery: Discovery<'a>,
    /// Whether the clock check (skew, a missing `Date`) has been logged.
    clock_logged: std::sync::atomic::AtomicBool,
    /// False while messages_outbound runs in this run and stats wait for its tags.
    tags_known: tokio::sync::watch::Sender<bool>,
}

/// Tells waiting stats streams that the tags are known when messages_outbound ends, however
/// it ends (done, failed, or dropped on a signal).
struct TagsKnown<'a>(&'a tokio::sync::watch::Sender<bool>);

impl Drop for TagsKnown<'_> {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl<'a> Extractor<'a> {
    pub fn new(client: &'a PostmarkClient, config: &'a Config, sink: &'a SinkHandle, state: State, now: DateTime<Utc>) -> Self {
        Extractor {
            client,
            config,
            commits: Committer::new(sink, state),
            now,
            discovery: Discovery::new(client, config),
            clock_logged: Default::default(),
            tags_known: tokio::sync::watch::Sender::new(true),
        }
    }

    /// messages_outbound runs in this run: stats streams of `stats_tags: "all"` wait for it,
    /// so that the tags it finds are read too. Streams start in declaration order, so it starts
    /// before any stats stream that waits for it.
    pub fn expect_tags(&self) {
        if matches!(self.config.stats_tags, Some(crate::config::StatsTags::All)) {
            self.tags_known.send_replace(false);
        }
    }

    /// The tags the stats streams are read for: `None` (all mail) first.
    pub async fn stats_tags(&self) -> Vec<Option<String>> {
        let mut tags = vec![None];
        match &self.config.stats_tags {
            None => {}
            Some(crate::config::StatsTags::Listed(listed)) => tags.extend(listed.iter().cloned().map(Some)),
            Some(crate::config::StatsTags::All) => {
                // Err only when the sender is gone, which it is not while `self` lives.
                let _ = self.tags_known.subscribe().wait_for(|known| *known).await;
                tags.extend(self.commits.state().tags.iter().cloned().map(Some));
            }
        }
        tags
    }

    /// Where incremental reads end: `end_date`, or Postmark's clock now (the `Date` of its
    /// answers, never the host's alone) minus `settle_seconds`. Every read has listed servers or
    /// message streams before, so an answer has told the time; if none carried a readable
    /// `Date` (a proxy dropped it), the host clock stands in, with a warning.
    pub fn end(&self) -> DateTime<Utc> {
        let host = Utc::now();
        let api_now = self.client.clock.now(host);
        if !self.clock_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            match api_now.map(|t| t - host) {
                None => tracing::warn!("No answer carried a readable `Date` header: windows end at the host's clock, which may differ from Postmark's."),
                Some(offset) if offset.abs() > self.config.clock_skew_warn => tracing::warn!(
                    host_clock_behind_seconds = offset.num_seconds(),
                    "The host clock is {} {} Postmark's (its `Date` header); windows end at Postmark's time.",
                    fmt_span(offset.abs()),
                    if offset > chrono::Duration::zero() { "behind" } else { "ahead of" }
                ),
                Some(_) => {}
            }
        }
        self.config.end_or(api_now.unwrap_or(host) - self.config.settle)
    }

    /// Requests a read keeps ahead of the page it hands on. More than `max_concurrency` (the
    /// client's limit on requests in flight): pages are handed on in order, and one slow answer
    /// or a retry's wait at the head must not leave the other slots idle behind it. The cost is
    /// memory: the pages answered behind a head that waits, up to [`ahead`](Self::ahead)'s
    /// `held` per read.
    pub fn read_ahead(&self) -> usize {
        self.config.max_concurrency * READ_AHEAD_PER_SLOT
    }

    /// How far a read runs ahead ([`Ahead`]): [`read_ahead`](Self::read_ahead) requests not yet
    /// answered, and while the page at its head waits (a retry's backoff), up to
    /// [`READ_HELD_PER_SLOT`] pages per slot held in all, so that the slots stay busy behind it.
    pub fn ahead(&self) -> Ahead {
        Ahead {
            pending: self.read_ahead(),
            held: self.config.max_concurrency * READ_HELD_PER_SLOT,
        }
    }

    /// Requests a date-window read's planner keeps out, with the pages it holds (answers not
    /// yet handed on with their leaf), ahead of the pages being read: as many as the reads keep
    /// ahead, since a dense window's cuts follow one another and the windows after it are
    /// planned meanwhile.
    pub fn probes_ahead(&self) -> usize {
        self.read_ahead().max(1)
    }

    /// Leaves found and sent on but not yet paged: one per request slot.
    pub fn leaves_ahead(&self) -> usize {
        self.config.max_concurrency.max(1)
    }

    pub fn page_size(&self) -> u64 {
        u64::from(self.config.page_size).min(MAX_PAGE_SIZE)
    }

    /// Syncs one stream for every server and partition, and returns what it did.
    pub async fn sync_stream(&self, def: &'static StreamDef) -> Result<Vec<PartitionReport>, SyncError> {
        let _tags_known = (def.name == crate::streams::TAGGED_STREAM).then(|| TagsKnown(&self.tags_known));
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
                ..PartitionReport::empty(def, None, NO_PARTITION)
            }]);
        }
        self.commits.sink.begin_stream(info).await.map_err(|()| SyncError::SinkStopped(def.name))?;
        if def.token == TokenKind::Account {
            return self.sync_server(def, &decoder, &ServerScope::account()).await;
        }
        let mut reports = Vec::new();
        for server in self.discovery.servers_for(def).await? {
            reports.extend(self.sync_server(def, &decoder, server).await?);
        }
        Ok(reports)
    }

    async fn sync_server(&self, def: &'static StreamDef, decoder: &PageDecoder, server: &ServerScope) -> Result<Vec<PartitionReport>, SyncError> {
        let partitions = self.discovery.partitions(def, server).await?;
        read::read_server(self, def, decoder, server, &partitions).await
    }

    /// What a sync would read, without reading it (`sync --dry-run`): per stream, server and
    /// partition, the range and the first request. Only the server and its message streams
    /// are fetched, to know the partitions.
    pub async fn plan(&self, def: &'static StreamDef) -> Result<Vec<PlannedRead>, SyncError> {
        if def.token == TokenKind::Account && self.config.account_token.is_none() {
            return Ok(Vec::new());
        }
        let account = [ServerScope::account()];
        let servers = if def.token == TokenKind::Account {
            &account[..]
        } else {
            self.discovery.servers().await?
        };
        let schema = def.schema()?;
        let decoder = PageDecoder::new(&schema, def.records, self.now);
        let mut out = Vec::new();
        for server in servers {
            for partition in self.discovery.partitions(def, server).await? {
                let ctx = Ctx::new(def, &decoder, server, &partition);
                let bookmark = self.commits.bookmark(def.name, &ctx.state_key);
                let (from, to) = (read::start(self.config, def, bookmark), self.end());
                let first = read::first_request(self, &ctx, from, to);
                let qs: Vec<String> = first.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(PlannedRead {
                    stream: def.name,
                    server: server.id,
                    partition: partition.label.clone(),
                    from: def.is_incremental().then_some(from),
                    to: def.is_incremental().then_some(to),
                    first_request: format!("GET {}?{}", first.path, qs.join("&")),
                    then: first.then,
                });
            }
        }
        Ok(out)
    }

    /// A partition's report before its read: the committed bookmark.
    pub fn report(&self, ctx: &Ctx<'_>) -> PartitionReport {
        let before = self.commits.bookmark(ctx.def.name, &ctx.state_key);
        PartitionReport {
            bookmark_before: before,
            bookmark_after: before,
            ..PartitionReport::empty(ctx.def, ctx.server.id, &ctx.partition.label)
        }
    }

    /// Where a partition's read starts, from its committed bookmark.
    pub fn start(&self, ctx: &Ctx<'_>) -> DateTime<Utc> {
        read::start(self.config, ctx.def, self.commits.bookmark(ctx.def.name, &ctx.state_key))
    }

    /// One page, with the declaration's error rules (a `Skip` there fails a page read: only
    /// per-record reads may skip, and `declarations_are_consistent` holds them to it).
    pub async fn get_page(&self, ctx: &Ctx<'_>, path: &str, query: &[(&'static str, String)], window: Option<Window>) -> Result<Page, SyncError> {
        self.get(ctx, path, query, window, |body| ctx.decoder.decode(body, &ctx.scope)).await
    }

    /// A GET of the stream's partition with the declaration's error rules; a failure names
    /// the stream and where (server, partition, window).
    pub async fn get<T>(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        query: &[(&'static str, String)],
        window: Option<Window>,
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Result<T, SyncError> {
        self.send(ctx, Call::get(path, query, ctx.def.errors), window, parse).await
    }

    /// Sends `call` for the stream's partition; a failure names the stream and where.
    async fn send<T>(&self, ctx: &Ctx<'_>, call: Call<'_>, window: Option<Window>, parse: impl Fn(&[u8]) -> Result<T, BodyError>) -> Result<T, SyncError> {
        self.client.request(ctx.auth(), call, parse).await.map_err(|source| SyncError::Request {
            stream: ctx.def.name,
            at: ctx.at(window),
            source,
        })
    }

    /// One page of a date window of the stream's own path.
    pub async fn fetch_window_page(&self, ctx: &Ctx<'_>, window: Window, offset: u64, count: u64) -> Result<Page, SyncError> {
        let query = ctx.query(window_query(window, offset, count));
        self.get_page(ctx, &ctx.path(None), &query, Some(window)).await
    }

    /// [`fetch_window_page`](Self::fetch_window_page) for a window planner: sent before the
    /// pages waiting for a slot, since the reads after it wait for what it finds.
    pub async fn fetch_planning_page(&self, ctx: &Ctx<'_>, window: Window, offset: u64, count: u64) -> Result<Page, SyncError> {
        let query = ctx.query(window_query(window, offset, count));
        let path = ctx.path(None);
        let call = Call::get(&path, &query, ctx.def.errors).first();
        self.send(ctx, call, Some(window), |body| ctx.decoder.decode(body, &ctx.scope)).await
    }
}

/// `count`, `offset`, `fromdate` and `todate` of a window's page.
pub fn window_query(window: Window, offset: u64, count: u64) -> Vec<(&'static str, String)> {
    let (from, to) = window.query_bounds();
    vec![("count", count.to_string()), ("offset", offset.to_string()), ("fromdate", from), ("todate", to)]
}

/// `count` and `offset` of a list's page.
pub fn page_query(offset: u64, count: u64) -> Vec<(&'static str, String)> {
    vec![("count", count.to_string()), ("offset", offset.to_string())]
}

/// `3h 2m 5s`, for log lines.
fn fmt_span(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, sec) => format!("{h}h {m}m {sec}s"),
    }
}
