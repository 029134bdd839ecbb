//! `Kind::DateWindows`: `count`/`offset` pages inside US-Eastern `fromdate`/`todate` windows
//! (messages, bounces, inbound). Windows come oldest first; each is committed, moving the
//! bookmark to its end, once all its rows are in, while the next pages download.

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use chrono::{DateTime, Utc};

use crate::streams::context::Ctx;
use crate::streams::error::SyncError;
use crate::streams::read::FirstRequest;
use crate::streams::read::paging::{WindowPart, read_windows};
use crate::streams::runner::{Extractor, window_query};
use crate::streams::summary::PartitionReport;
use crate::streams::window::Window;

pub fn first_request(ctx: &Ctx<'_>, page_size: u64, from: DateTime<Utc>, to: DateTime<Utc>) -> FirstRequest {
    FirstRequest {
        path: ctx.path(None),
        query: ctx.query(window_query(Window::covering(from, to), 0, page_size)),
        then: "pages of 500 while offset < TotalCount; windows above 10,000 rows are split first",
    }
}

pub async fn read(ex: &Extractor<'_>, ctx: &Ctx<'_>) -> Result<PartitionReport, SyncError> {
    let mut report = ex.report(ctx);
    let start = ex.start(ctx);
    let end = ex.end();
    if start >= end {
        return Ok(report);
    }
    tracing::info!(stream = ctx.def.name, partition = %ctx.state_key, from = %start, to = %end, "Syncing.");
    // Rows before `start_date`, read because of the date-reading slack, are not wanted.
    let mut dropped = 0;
    read_windows(ex, ctx, start, end, None, async |part| match part {
        WindowPart::Rows(batch) => {
            let batch = from_start_date(ctx, batch, ex.config.start)?;
            dropped += batch.1;
            ex.commits.write(ctx.def, vec![batch.0]).await
        }
        WindowPart::Complete { window, rows, splits } => {
            let bookmark = window.to.min(end);
            ex.commits.commit(ctx, Some(bookmark)).await?;
            report.records += rows.saturating_sub(std::mem::take(&mut dropped));
            report.windows += 1;
            report.splits += splits;
            report.bookmark_after = Some(bookmark);
            Ok(())
        }
        WindowPart::Misread(note) => {
            tracing::warn!(stream = ctx.def.name, at = %ctx.at(None), "{note}");
            report.note = Some(note);
            Ok(())
        }
        WindowPart::Unsettled(u) => {
            // Mail still becoming searchable in the newest window: what arrived is loaded, the
            // bookmark stays at the window's start, and the next run reads it again.
            let (from, to) = u.window.query_bounds();
            let note = format!(
                "the newest window {from}..{to} US-Eastern kept growing while read (TotalCount {} -> {}); its rows are loaded and it is read again next run",
                u.first_total, u.last_total
            );
            tracing::warn!(stream = ctx.def.name, at = %ctx.at(Some(u.window)), "{note}");
            ex.commits.commit(ctx, None).await?;
            report.note = Some(note);
            Ok(())
        }
    })
    .await?;
    Ok(report)
}

/// The rows of `batch` whose cursor is at or after `start`, and how many were left out.
fn from_start_date(ctx: &Ctx<'_>, batch: RecordBatch, start: DateTime<Utc>) -> Result<(RecordBatch, u64), SyncError> {
    let column = ctx
        .def
        .cursor_field
        .and_then(|c| batch.column_by_name(c))
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>().cloned());
    let Some(cursor) = column else { return Ok((batch, 0)) };
    // Every page but those of a first run's first hour: nothing to leave out.
    if cursor.null_count() == 0 && arrow::compute::min(&cursor).is_some_and(|t| t >= start.timestamp_micros()) {
        return Ok((batch, 0));
    }
    let keep: BooleanArray = cursor.iter().map(|t| Some(t.is_none_or(|t| t >= start.timestamp_micros()))).collect();
    let left_out = (keep.len() - keep.true_count()) as u64;
    if left_out == 0 {
        return Ok((batch, 0));
    }
    let kept = filter_record_batch(&batch, &keep).map_err(|e| SyncError::Declaration(format!("filtering rows before start_date: {e}")))?;
    Ok((kept, left_out))
}
