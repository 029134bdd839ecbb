//! `Kind::EventFeed`: a newest-first event list (opens, clicks) whose date filters are
//! undocumented. It is read from the top until events are older than the bookmark minus
//! `lookback_days`. When the offset limit comes first, the rest is read in date windows if the
//! API proves to honour `fromdate`/`todate`, else per message, for the parent rows (messages)
//! whose filter column says they can have such events.

use arrow::array::{Array, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, stream};

use crate::streams::context::{Ctx, fill_path};
use crate::streams::error::SyncError;
use crate::streams::read::FirstRequest;
use crate::streams::read::ahead::ReadAhead;
use crate::streams::read::paging::{newest_first, time_range, windows_into};
use crate::streams::read::per_record::{id_text, parent_ids};
use crate::streams::runner::{Extractor, page_query};
use crate::streams::summary::PartitionReport;
use crate::streams::window::Window;
use crate::streams::{MAX_REACH, ParentRows};

pub fn first_request(ctx: &Ctx<'_>, page_size: u64) -> FirstRequest {
    FirstRequest {
        path: ctx.path(None),
        query: ctx.query(page_query(0, page_size)),
        then: "pages newest first down to the start; beyond offset 10,000, date windows or per-message reads",
    }
}

pub async fn read(ex: &Extractor<'_>, ctx: &Ctx<'_>, per_message_path: &'static str, per_message: ParentRows) -> Result<PartitionReport, SyncError> {
    let mut report = ex.report(ctx);
    let lookback = Duration::days(i64::from(ex.config.lookback_days));
    let cutoff = ex.start(ctx);
    let cursor = ctx.def.cursor_field.unwrap_or("received_at");
    let page_size = ex.page_size();
    let mut pending = 0;
    let mut rows_read = 0;
    let mut newest: Option<DateTime<Utc>> = None;
    let mut oldest: Option<DateTime<Utc>> = None;
    // Whether the list's pages were not newest first (then an event newer than the oldest
    // seen may lie beyond the offset limit, and the reads below would not reach it).
    let mut disordered = false;
    // Newest first: events that arrive while paging push older ones to later offsets, so
    // pages may repeat rows (merged on the key) but never skip one. The first page gives the
    // total; the next pages are fetched concurrently and read in order until one reaches
    // the cutoff (the few requests already in flight then are the price of the speed).
    let list_page = |offset: u64| {
        let query = ctx.query(page_query(offset, page_size.min(MAX_REACH - offset)));
        async move { ex.get_page(ctx, &ctx.path(None), &query, None).await }
    };
    let first = list_page(0).await?;
    let total_unfiltered = first.total.unwrap_or(first.batch.num_rows() as u64);
    let reachable = total_unfiltered.min(MAX_REACH);
    let offsets: Vec<u64> = (page_size..reachable).step_by(page_size as usize).collect();
    // The pages still ahead when the cutoff is reached are dropped with this block (their
    // requests aborted) before any further request: left alive, they would keep taking request
    // slots for pages nobody reads.
    let (reached_cutoff, read) = {
        let rest = stream::iter(offsets).map(list_page).read_ahead(ex.ahead());
        let mut pages = std::pin::pin!(stream::once(async { Ok(first) }).chain(rest));
        let mut reached_cutoff = false;
        let mut read = 0;
        while let Some(page) = pages.next().await {
            let page = page?;
            let rows = page.batch.num_rows() as u64;
            read += rows;
            let (lo, hi) = time_range(&page.batch, cursor);
            if let Some(c) = page
                .batch
                .column_by_name(cursor)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            {
                disordered |= !newest_first(c, oldest.map(|t| t.timestamp_micros()));
            }
            newest = newest.max(hi);
            oldest = match (oldest, lo) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            rows_read += rows;
            ex.commits.stage(ctx, page.batch, &mut pending).await?;
            if lo.is_some_and(|t| t < cutoff) {
                reached_cutoff = true;
                break;
            }
            if rows == 0 {
                break;
            }
        }
        (reached_cutoff, read)
    };
    let overflow = !reached_cutoff && total_unfiltered > MAX_REACH && read >= reachable.saturating_sub(page_size);
    report.records = rows_read;
    report.windows = 1;
    if overflow {
        // The list cannot reach back to the cutoff. The rest, [cutoff, oldest seen], is read
        // in date windows if the API honours them, else message by message.
        let until = oldest.unwrap_or_else(|| ex.end());
        let note = if let Some(probe) = date_filters_work(ex, ctx, cutoff, until, total_unfiltered).await? {
            let (rows, windows, splits) = windows_into(ex, ctx, cutoff, until, Some(probe), &mut pending).await?;
            report.records += rows;
            report.windows += windows;
            report.splits += splits;
            format!(
                "the list reached Postmark's 10,000 offset limit at {}; the rest was read in {windows} date windows",
                until.to_rfc3339()
            )
        } else {
            let (rows, messages) = events_per_message(ex, ctx, per_message_path, per_message, cutoff, until, &mut pending).await?;
            report.records += rows;
            format!(
                "the list reached Postmark's 10,000 offset limit at {} and ignores date filters; read the events of {messages} messages sent since {} one by one",
                until.to_rfc3339(),
                (cutoff - lookback).to_rfc3339()
            )
        };
        let note = if disordered {
            format!(
                "{note}; the list was not newest first, so events newer than {} listed beyond the offset limit may be missing: please report it",
                until.to_rfc3339()
            )
        } else {
            note
        };
        tracing::warn!(stream = ctx.def.name, at = %ctx.at(None), "{note}");
        report.note = Some(note);
    }
    // Never past Postmark's clock (an event stamped ahead of it would skip later ones).
    let bookmark = newest.map(|n| n.min(ex.end())).or(report.bookmark_before);
    ex.commits.commit(ctx, bookmark).await?;
    report.bookmark_after = bookmark;
    Ok(report)
}

/// Whether the list honours `fromdate`/`todate` (undocumented for opens and clicks): a probe
/// over `[from, to]` must return fewer rows than the whole list and only rows inside the
/// window (give or take the hour the reference leaves open). When it does, the probe's page is
/// the first page of the windowed read of `[from, to]`, which starts from it.
async fn date_filters_work(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    total_unfiltered: u64,
) -> Result<Option<crate::streams::extract::Page>, SyncError> {
    let probe = Window::covering(from, to);
    let page = ex.fetch_window_page(ctx, probe, 0, ex.page_size()).await?;
    let total = page.total.unwrap_or(page.batch.num_rows() as u64);
    let (lo, hi) = time_range(&page.batch, ctx.def.cursor_field.unwrap_or("received_at"));
    let slack = Duration::hours(1) + Duration::seconds(1);
    let inside = lo.is_none_or(|t| t >= probe.from - slack) && hi.is_none_or(|t| t <= probe.to + slack);
    Ok((inside && total < total_unfiltered).then_some(page))
}

/// Reads the events of every message sent in `[cutoff - lookback, until]` that can have them
/// (the parent rows the declaration's filter allows) through the per-message endpoint.
/// Returns (events, messages).
async fn events_per_message(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    per_message_path: &'static str,
    per_message: ParentRows,
    cutoff: DateTime<Utc>,
    until: DateTime<Utc>,
    pending: &mut u64,
) -> Result<(u64, u64), SyncError> {
    let lookback = Duration::days(i64::from(ex.config.lookback_days));
    let ids = parent_ids(ex, ctx, per_message, cutoff - lookback, until).await?;
    let page_size = ex.page_size();
    let per_message = stream::iter(ids.iter())
        .map(|id| async move {
            let path = fill_path(per_message_path, ctx.partition, Some(&id_text(id)));
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                let page = ex.get_page(ctx, &path, &page_query(offset, page_size), None).await?;
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
        .read_ahead(ex.ahead());
    let mut per_message = std::pin::pin!(per_message);
    let mut rows = 0;
    while let Some(batches) = per_message.next().await {
        for b in batches? {
            rows += b.num_rows() as u64;
            ex.commits.stage(ctx, b, pending).await?;
        }
    }
    Ok((rows, ids.len() as u64))
}
