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
use futures::StreamExt;

use crate::schema::SchemaError;
use crate::sinks::KeyEncoder;
use crate::streams::context::Ctx;
use crate::streams::error::{SyncError, WINDOW_ATTEMPTS};
use crate::streams::extract::Page;
use crate::streams::read::leaves::{LeafPage, deepest_offset, leaf_pages};
use crate::streams::runner::Extractor;
use crate::streams::window::Window;

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

/// Reads every row of `[from, to]`, window by window, oldest first. Pages go to `on` as they
/// arrive, in order, with requests ahead (across window boundaries) as [`Extractor::ahead`] allows,
/// so memory holds a few pages, whatever the size of a window. Each window is reported complete
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
    // Whether dense windows may be cut along their reach: they need a cursor, and pages newest
    // first (checked on every page of a cut leaf; off for the rest of the read once not).
    let mut cutting = cursor_name.is_some();
    // The query and count of the last leaf completed: a cut leaf's rows and those of the leaf
    // below its cut must add up to its query's count.
    let mut below: Option<(Window, u64)> = None;
    while let Some(root) = next.take() {
        let mut pages = std::pin::pin!(leaf_pages(ex, ctx, root, root_probe.take(), cutting));
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
        // Rows of a cut leaf's pages older than its cut (they belong to the leaf below), the
        // oldest cursor of its pages so far, and whether a page was not newest first.
        let mut older = 0;
        let mut oldest_so_far: Option<i64> = None;
        let mut disordered = false;
        while let Some(leaf) = pages.next().await {
            let LeafPage {
                window,
                query,
                cut,
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
                (older, oldest_so_far, disordered) = (0, None, false);
            }
            let page_total = page.total.unwrap_or(total);
            latest_total = latest_total.max(page_total);
            shrank |= page_total < total;
            if !misread_reported && let Some(outside) = outside_window(ctx, query, &page.batch) {
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
            if cut && let Some(c) = cursor {
                disordered |= !newest_first(c, oldest_so_far);
                oldest_so_far = arrow::compute::min(c).or(oldest_so_far);
            }
            let cut_at = cut.then(|| window.from.timestamp_micros());
            newest = newest.max(page_newest);
            let tail_from = newest.map_or(i64::MIN, |n| n - 1_000_000);
            let repeat_until = previous_newest.map_or(i64::MAX, |n| n + 1_000_000);
            let mut repeats: Vec<usize> = Vec::new();
            for (i, key) in page_keys.into_iter().enumerate() {
                let at = cursor.and_then(|c| c.is_valid(i).then(|| c.value(i)));
                if at.zip(cut_at).is_some_and(|(t, cut)| t < cut) {
                    // The leaf below the cut has it; counted as arrived, not handed on.
                    if seen.insert(key) {
                        older += 1;
                    }
                    repeats.push(i);
                    continue;
                }
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
            let whole = if cut {
                // The query's newest reach, at an unchanged count, newest first, and with the
                // leaf below the cut holding the rest of the query's count.
                let below_holds = below.is_some_and(|(q, n)| q.to == window.from && q.from == query.from && n + distinct - older >= total);
                if disordered || !below_holds {
                    tracing::warn!(
                        stream = ctx.def.name,
                        at = %ctx.at(Some(window)),
                        disordered,
                        "Pages of a window cut along its reach were not newest first or miss rows; reading it again in equal-time parts."
                    );
                    cutting = false;
                }
                !shrank && latest_total == total && distinct >= deepest_offset(ex.page_size()) + ex.page_size() && !disordered && below_holds
            } else {
                !shrank && distinct >= latest_total
            };
            if whole {
                below = Some((query, latest_total));
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
                    rows: distinct.saturating_sub(repeated + older),
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

/// Whether a page's cursors run newest first, starting at or below `above` (the oldest
/// cursor of the page before it).
pub(crate) fn newest_first(cursor: &TimestampMicrosecondArray, above: Option<i64>) -> bool {
    let mut last = above.unwrap_or(i64::MAX);
    cursor.iter().flatten().all(|t| {
        let ordered = t <= last;
        last = t;
        ordered
    })
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
