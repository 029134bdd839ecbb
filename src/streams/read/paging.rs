//! Reading every row of a date range, window by window, for every kind that pages date windows.
//!
//! Postmark lists newest first and refuses `count + offset > 10,000`. A date window is read only
//! when its `TotalCount` fits under that reach; otherwise it is split ([`LeafPlanner`]) before
//! any of its rows are used. A window is reported complete only when every row its `TotalCount`
//! promised has arrived, so a shifted page can never leave a silent gap.

use std::collections::HashSet;

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::row::OwnedRow;
use chrono::{DateTime, Utc};
use futures::future::{self, BoxFuture, FutureExt};
use futures::{StreamExt, stream};

use crate::schema::SchemaError;
use crate::sinks::KeyEncoder;
use crate::streams::MAX_REACH;
use crate::streams::context::Ctx;
use crate::streams::error::{SyncError, WINDOW_ATTEMPTS};
use crate::streams::extract::Page;
use crate::streams::runner::Extractor;
use crate::streams::window::{Leaf, LeafPlanner, TooDense, Window};

/// What [`read_windows`] hands its caller, in order.
pub enum WindowPart {
    /// Rows of the window being read, as its pages arrive (not yet known to be complete).
    Rows(RecordBatch),
    /// Every row the window's TotalCount promised has arrived (in the `Rows` before this);
    /// `rows` counts those not already in the window before it (neighbours share a second).
    Complete { window: Window, rows: u64, splits: u64 },
    /// The newest window (ending at the read's end) kept growing while it was read, every
    /// attempt: its rows so far were handed on, but it is not complete; the read stops here.
    Unsettled(Unsettled),
    /// Rows came back outside the window they were asked for: the API reads `fromdate`/`todate`
    /// differently from the reference (another offset than US-Eastern with daylight saving).
    /// Reported once per read; the rows are handed on as usual.
    Misread(String),
}

/// A description of rows of `batch` outside `window` by more than the second the bounds share,
/// by the stream's cursor; `None` when all are inside (or the stream has no cursor).
fn outside_window(ctx: &Ctx<'_>, window: Window, batch: &RecordBatch) -> Option<String> {
    let cursor = ctx.def.cursor_field?;
    let (lo, hi) = time_range(batch, cursor);
    let slack = chrono::Duration::seconds(1);
    let early = lo.filter(|t| *t < window.from - slack).map(|t| window.from - t);
    let late = hi.filter(|t| *t > window.to + slack).map(|t| t - window.to);
    let (side, by) = match (early, late) {
        (Some(by), _) => ("before", by),
        (None, Some(by)) => ("after", by),
        (None, None) => return None,
    };
    let (from, to) = window.query_bounds();
    let minutes = by.num_minutes().max(1);
    let consequence = if by <= crate::streams::read::DATE_READING_SLACK + slack {
        "reads start an hour early, which makes up for it".to_string()
    } else {
        format!("that is more than the hour reads start early: up to {minutes} min of records may be missing; please report it")
    };
    Some(format!(
        "the API answered a window {from}..{to} US-Eastern with records up to {minutes} min {side} it: it reads `fromdate`/`todate` with another offset than US-Eastern with daylight saving; {consequence}"
    ))
}

/// A window that kept growing while it was read: its TotalCount at the first and largest, and
/// the distinct rows that arrived.
#[derive(Debug, Clone, Copy)]
pub struct Unsettled {
    pub window: Window,
    pub first_total: u64,
    pub last_total: u64,
    pub seen: u64,
}

impl Unsettled {
    /// The error of a read that needs every window complete.
    pub fn into_error(self, ctx: &Ctx<'_>) -> SyncError {
        SyncError::Unstable {
            stream: ctx.def.name,
            at: ctx.at(Some(self.window)),
            first_total: self.first_total,
            last_total: self.last_total,
            seen: self.seen,
        }
    }
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

/// Reads every row of `[from, to]`, window by window, oldest first. Pages go to `on` as they
/// arrive, in order, with up to [`Extractor::read_ahead`] requests ahead (across window boundaries), so
/// memory holds a few pages, whatever the size of a window. Each window is reported complete
/// once every row its TotalCount promised has arrived. When its pages disagree with the
/// TotalCount (data changed while paging), the read-ahead is dropped and reading starts again at
/// that window, at most `WINDOW_ATTEMPTS` times. `root_probe` is the first page of
/// `Window::covering(from, to)` when the caller already fetched it.
pub async fn read_windows(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    mut root_probe: Option<Page>,
    mut on: impl AsyncFnMut(WindowPart) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    let key_problem = |problem| SchemaError::Property {
        stream: ctx.def.name.to_string(),
        path: ctx.def.primary_key.join(","),
        problem,
    };
    let keys = KeyEncoder::for_key(&ctx.decoder.output_schema(), ctx.def.primary_key).map_err(key_problem)?;
    // Failed reads of the window starting at this instant.
    let mut failures: (Option<DateTime<Utc>>, u32) = (None, 0);
    let mut next = Some(Window::covering(from, to));
    // The end of the last window reported complete: the leaves of a root must reach its end.
    let mut complete_to: Option<DateTime<Utc>> = None;
    // Keys of the last second of the last complete window: neighbours share their boundary
    // second, and a row in it must reach the sink once in a run (a Singer target would see it
    // twice).
    let mut previous: HashSet<OwnedRow> = HashSet::new();
    let mut previous_newest: Option<i64> = None;
    // Keys handed on by failed reads of a window, until a window reaching its end completes: a
    // re-read hands on only rows it had not handed on before. Empty unless data moved.
    let mut handed: HashSet<OwnedRow> = HashSet::new();
    let mut handed_until: Option<DateTime<Utc>> = None;
    let cursor_name = ctx.def.cursor_field;
    let mut misread_reported = false;
    while let Some(root) = next.take() {
        let mut pages = std::pin::pin!(leaf_pages(ex, ctx, root, root_probe.take()));
        let mut seen: HashSet<OwnedRow> = HashSet::new();
        // Keys of the window's last second (all keys for a stream without a cursor): what the
        // next window may hold again.
        let mut tail: HashSet<OwnedRow> = HashSet::new();
        // The newest cursor of this read of the window (microseconds).
        let mut newest: Option<i64> = None;
        // The largest TotalCount a page of this window reported, and whether one reported less
        // than the first (rows left the window: shifted pages may then have skipped one).
        let mut latest_total = 0;
        let mut shrank = false;
        // Rows of this read of the window not handed on again (already handed on this run).
        let mut repeated = 0;
        while let Some(leaf) = pages.next().await {
            let LeafPage {
                window,
                total,
                splits,
                index,
                pages: count,
                page,
            } = leaf?;
            if index == 0 {
                seen.clear();
                tail.clear();
                newest = None;
                (latest_total, shrank, repeated) = (total, false, 0);
            }
            let page_total = page.total.unwrap_or(total);
            latest_total = latest_total.max(page_total);
            shrank |= page_total < total;
            if !misread_reported && let Some(outside) = outside_window(ctx, window, &page.batch) {
                misread_reported = true;
                on(WindowPart::Misread(outside)).await?;
            }
            let page_keys: Vec<OwnedRow> = keys.rows(&page.batch).map_err(key_problem)?.iter().map(|r| r.owned()).collect();
            // Rows not newer than the previous window's newest (+1 s) may be its rows again (the
            // shared boundary second, or all of an API that reads the bounds shifted); a row is
            // kept for the next window when it is within a second of this window's newest.
            // Others cost a comparison; a stream without a cursor checks every row.
            let cursor = cursor_name
                .and_then(|c| page.batch.column_by_name(c))
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
            let page_newest = cursor.and_then(arrow::compute::max);
            newest = newest.max(page_newest);
            let tail_from = newest.map_or(i64::MIN, |n| n - 1_000_000);
            let repeat_until = previous_newest.map_or(i64::MAX, |n| n + 1_000_000);
            let mut repeats: Vec<usize> = Vec::new();
            for (i, key) in page_keys.into_iter().enumerate() {
                let at = cursor.and_then(|c| c.is_valid(i).then(|| c.value(i)));
                if at.is_none_or(|t| t >= tail_from) {
                    tail.insert(key.clone());
                }
                if at.is_none_or(|t| t <= repeat_until) && !previous.is_empty() && previous.contains(&key) {
                    // Counted in the window before.
                    repeated += 1;
                    repeats.push(i);
                } else if !handed.is_empty() && handed.contains(&key) {
                    repeats.push(i);
                }
                // A row again within this read (a page shifted by new mail).
                if !seen.insert(key) && repeats.last() != Some(&i) {
                    repeats.push(i);
                }
            }
            let batch = if repeats.is_empty() {
                page.batch
            } else {
                let keep: BooleanArray = (0..page.batch.num_rows()).map(|i| Some(repeats.binary_search(&i).is_err())).collect();
                filter_record_batch(&page.batch, &keep).map_err(|e| key_problem(e.to_string()))?
            };
            on(WindowPart::Rows(batch)).await?;
            if index + 1 < count {
                continue;
            }
            // Rows only arrive (late indexing, new mail): once as many distinct rows as the
            // largest count arrived, every row of the window at that count has been seen.
            let distinct = seen.len() as u64;
            if !shrank && distinct >= latest_total {
                previous = std::mem::take(&mut tail);
                previous_newest = newest;
                seen.clear();
                if handed_until.is_some_and(|until| window.to >= until) {
                    handed.clear();
                    handed_until = None;
                }
                complete_to = Some(window.to);
                on(WindowPart::Complete {
                    window,
                    rows: distinct.saturating_sub(repeated),
                    splits,
                })
                .await?;
                continue;
            }
            let attempt = if failures.0 == Some(window.from) { failures.1 + 1 } else { 1 };
            failures = (Some(window.from), attempt);
            tracing::warn!(
                stream = ctx.def.name,
                at = %ctx.at(Some(window)),
                total,
                latest_total,
                seen = distinct,
                attempt,
                "The window changed while it was read; reading it again."
            );
            if attempt >= WINDOW_ATTEMPTS {
                let unsettled = Unsettled {
                    window,
                    first_total: total,
                    last_total: latest_total,
                    seen: distinct,
                };
                // The newest window of a read that ends at Postmark's now (not at `end_date`)
                // may still be filling (late indexing): the caller decides.
                if window.to >= to && ex.config.end.is_none_or(|e| e > to) {
                    return on(WindowPart::Unsettled(unsettled)).await;
                }
                return Err(unsettled.into_error(ctx));
            }
            // Probed again from its start: it may have grown past the limit and need a split.
            handed.extend(seen.drain());
            handed_until = Some(handed_until.map_or(window.to, |u| u.max(window.to)));
            next = Some(Window::covering(window.from, root.to));
            break;
        }
        // Never a silent short read: the planner hands on leaves up to the root's end.
        if next.is_none() && complete_to != Some(root.to) {
            let (from, to) = root.query_bounds();
            return Err(SyncError::Declaration(format!(
                "the windows read of {from}..{to} US-Eastern ended at {} before the range's end",
                complete_to.map_or_else(|| "its start".to_string(), |t| t.to_rfc3339())
            )));
        }
    }
    Ok(())
}

/// The pages of every leaf window of `root`, oldest first, with up to [`Extractor::read_ahead`]
/// requests ahead of the page handed on (the client's limit decides how many are in flight).
/// Leaves are found by [`plan_leaves`], which runs beside the pages: the next windows are
/// probed while the pages of the one before download.
fn leaf_pages<'s>(
    ex: &'s Extractor<'s>,
    ctx: &'s Ctx<'s>,
    root: Window,
    root_probe: Option<Page>,
) -> impl futures::Stream<Item = Result<LeafPage, SyncError>> + 's {
    let page_size = ex.page_size();
    let (leaves_tx, leaves_rx) = tokio::sync::mpsc::channel(ex.probes_ahead());
    let pages = stream::unfold(leaves_rx, |mut rx| async move { rx.recv().await.map(|leaf| (leaf, rx)) })
        .flat_map(move |leaf| {
            let pages: Vec<BoxFuture<'s, Result<LeafPage, SyncError>>> = match leaf {
                Err(e) => vec![future::ready(Err(e)).boxed()],
                Ok(Leaf {
                    window,
                    total,
                    probe: first,
                    splits,
                }) => {
                    let offsets: Vec<u64> = (page_size..total).step_by(page_size as usize).collect();
                    let count = offsets.len() + 1;
                    let at = move |index: usize, page: Page| LeafPage {
                        window,
                        total,
                        splits,
                        index,
                        pages: count,
                        page,
                    };
                    std::iter::once(future::ready(Ok(at(0, first))).boxed())
                        .chain(offsets.into_iter().enumerate().map(move |(i, offset)| {
                            async move {
                                let page = ex.fetch_window_page(ctx, window, offset, page_size.min(MAX_REACH - offset)).await?;
                                Ok(at(i + 1, page))
                            }
                            .boxed()
                        }))
                        .collect()
                }
            };
            stream::iter(pages)
        })
        .buffered(ex.read_ahead());
    // The planner yields no pages of its own; it is polled with them, and dropped with them.
    let planner = stream::once(plan_leaves(ex, ctx, root, root_probe, leaves_tx)).filter_map(|()| future::ready(None));
    stream::select(planner, pages)
}

/// Finds the leaf windows of `root` with the [`LeafPlanner`] and the HTTP probe, and sends
/// them oldest first, each with its first page (the probe that measured it). Probes run ahead
/// of the pages, up to [`Extractor::probes_ahead`] of them and of the leaves found but not yet
/// sent together (their first pages are in memory), so the next windows are known before the
/// pages of the one before run out. Answers are taken while a leaf waits for room in the
/// channel, so that a retried probe does not wait behind a full channel.
async fn plan_leaves(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    root: Window,
    root_probe: Option<Page>,
    leaves: tokio::sync::mpsc::Sender<Result<Leaf<Page>, SyncError>>,
) {
    let page_size = ex.page_size();
    let ahead = ex.probes_ahead();
    let mut planner = LeafPlanner::new(root, MAX_REACH);
    let mut probes = futures::stream::FuturesUnordered::new();
    // A root the caller probed already: handed out to that probe, answered by its page.
    if let Some(first) = root_probe
        && let Some(root) = planner.next_probe(0, ahead)
    {
        probes.push(future::ready((root, Ok(first))).boxed());
    }
    loop {
        while let Some(window) = planner.next_probe(probes.len(), ahead) {
            probes.push(async move { (window, ex.fetch_window_page(ctx, window, 0, page_size).await) }.boxed());
        }
        let front_ready = planner.has_next_leaf();
        let answer = tokio::select! {
            room = leaves.reserve(), if front_ready => {
                let (Ok(room), Some(leaf)) = (room, planner.next_leaf()) else { return };
                if leaf.splits > 0 {
                    tracing::debug!(stream = ctx.def.name, splits = leaf.splits, "Window above the offset limit; split.");
                }
                room.send(Ok(leaf));
                continue;
            }
            Some(answer) = probes.next(), if !probes.is_empty() => answer,
            // Every window was probed and handed on (`read_windows` checks that the leaves
            // covered the range).
            else => return,
        };
        let (window, answer) = answer;
        let failure = match answer {
            Ok(first) => {
                let total = first.total.unwrap_or(first.batch.num_rows() as u64);
                match planner.probed(window, total, first) {
                    Ok(()) => continue,
                    Err(TooDense { total, source }) => SyncError::TooDense {
                        stream: ctx.def.name,
                        at: ctx.at(None),
                        total,
                        source,
                    },
                }
            }
            Err(e) => e,
        };
        // The read stops at the failure; the probes still in flight are dropped.
        let _ = leaves.send(Err(failure)).await;
        return;
    }
}

/// Reads `[from, to]` in split date windows and stages the rows. Returns (rows, windows, splits).
pub async fn windows_into(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    root_probe: Option<Page>,
    pending: &mut u64,
) -> Result<(u64, u64, u64), SyncError> {
    let (mut rows, mut windows, mut splits) = (0, 0, 0);
    read_windows(ex, ctx, from, to, root_probe, async |part| match part {
        WindowPart::Rows(batch) => ex.commits.stage(ctx, batch, pending).await,
        WindowPart::Complete { rows: r, splits: s, .. } => {
            rows += r;
            windows += 1;
            splits += s;
            Ok(())
        }
        WindowPart::Unsettled(u) => Err(u.into_error(ctx)),
        WindowPart::Misread(note) => {
            tracing::warn!(stream = ctx.def.name, at = %ctx.at(None), "{note}");
            Ok(())
        }
    })
    .await?;
    Ok((rows, windows, splits))
}

/// The earliest and latest instants of a timestamp column.
pub fn time_range(batch: &RecordBatch, column: &str) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(col) = batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
    else {
        return (None, None);
    };
    let to_time = |v: Option<i64>| v.and_then(DateTime::from_timestamp_micros);
    (to_time(arrow::compute::min(col)), to_time(arrow::compute::max(col)))
}
