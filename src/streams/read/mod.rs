//! One reader per [`Kind`]: each module exposes a pure `first_request` (what `--dry-run` shows
//! and the read sends first) and the async `read` of one stream partition. This file only
//! dispatches on the kind, and holds the start policy all kinds share.

pub mod ahead;
pub mod daily_stats;
pub mod date_windows;
pub mod event_feed;
pub mod full_table;
mod leaves;
pub mod paging;
pub mod per_record;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;

use crate::config::Config;
use crate::streams::context::Ctx;
use crate::streams::discovery::{PartitionValue, ServerScope};
use crate::streams::error::SyncError;
use crate::streams::extract::PageDecoder;
use crate::streams::runner::Extractor;
use crate::streams::summary::PartitionReport;
use crate::streams::{Kind, StreamDef};

/// The first request of a partition's read, and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRequest {
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub then: &'static str,
}

/// Reads a stream on one server: a full table in one replacement of all its partitions, any
/// other kind partition by partition.
pub async fn read_server(
    ex: &Extractor<'_>,
    def: &'static StreamDef,
    decoder: &PageDecoder,
    server: &ServerScope,
    partitions: &[PartitionValue],
) -> Result<Vec<PartitionReport>, SyncError> {
    if let Kind::FullTable { paged } = def.kind {
        // One replacement covers every partition of the server (none: its rows are removed).
        return Ok(vec![full_table::read(ex, def, decoder, server, partitions, paged).await?]);
    }
    let mut reports = Vec::new();
    for partition in partitions {
        let ctx = Ctx::new(def, decoder, server, partition);
        let report = match def.kind {
            Kind::FullTable { .. } => continue,
            Kind::DateWindows => date_windows::read(ex, &ctx).await?,
            Kind::EventFeed { per_message_path, per_message } => event_feed::read(ex, &ctx, per_message_path, per_message).await?,
            Kind::DailyStats(shape) => daily_stats::read(ex, &ctx, shape).await?,
            Kind::PerRecord(per_record) => per_record::read(ex, &ctx, per_record).await?,
        };
        reports.push(report);
    }
    Ok(reports)
}

/// The first request a read of `[from, to]` sends.
pub fn first_request(ex: &Extractor<'_>, ctx: &Ctx<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> FirstRequest {
    let page_size = ex.page_size();
    match ctx.def.kind {
        Kind::DateWindows => date_windows::first_request(ctx, page_size, from, to),
        Kind::EventFeed { .. } => event_feed::first_request(ctx, page_size),
        Kind::DailyStats(shape) => daily_stats::first_request(ctx, shape, from, to),
        Kind::PerRecord(per_record) => per_record::first_request(ctx, per_record, page_size, from, to),
        Kind::FullTable { paged } => full_table::first_request(ctx, paged),
    }
}

/// Where a stream's read starts: `start_date` on a first run; then the bookmark minus the
/// overlap (messages, bounces) or minus `lookback_days` (inbound, events, per-record reads,
/// stats days), never before `start_date`; date-window reads an hour earlier still
/// ([`DATE_READING_SLACK`]).
pub fn start(config: &Config, def: &StreamDef, bookmark: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let lookback = Duration::days(i64::from(config.lookback_days));
    let slack = if def.kind == Kind::DateWindows {
        DATE_READING_SLACK
    } else {
        Duration::zero()
    };
    let Some(b) = bookmark else { return config.start - slack };
    let from = match def.kind {
        // Inbound rows have no time of their own and change status after they are listed
        // (queued, then processed or failed): they are re-read like events.
        Kind::DateWindows if def.cursor_field.is_none() => b - lookback,
        Kind::DateWindows => b - config.overlap,
        Kind::EventFeed { .. } | Kind::PerRecord(_) | Kind::FullTable { .. } => b - lookback,
        Kind::DailyStats(_) => eastern_midnight(eastern_date(b) - lookback).unwrap_or(b - lookback),
    };
    from.max(config.start) - slack
}

/// The reference leaves open whether Postmark applies daylight saving to `fromdate`/`todate`;
/// read as a fixed UTC-5, every window is an hour later in summer than the one asked for.
/// Date-window reads therefore start this much earlier than their start (the overlap is kept
/// whole either way), and rows before `start_date` are dropped (`date_windows`).
pub const DATE_READING_SLACK: Duration = Duration::hours(1);

/// The US-Eastern calendar day of an instant.
pub fn eastern_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&New_York).date_naive()
}

/// The first instant of a US-Eastern day.
pub fn eastern_midnight(day: NaiveDate) -> Option<DateTime<Utc>> {
    New_York
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}
