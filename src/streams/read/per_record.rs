//! `Kind::PerRecord`: one request per row of a parent stream (message details per message,
//! a bounce's raw source per bounce). The parent's rows of the incremental range are read in
//! date windows for their ids; each id fills `{id}` of the child's path, and each record the
//! child's response holds gets the id in the declared field. A request whose error the
//! declaration marks as skippable (a record gone from the API) is counted, not fatal.

use std::collections::HashSet;

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, stream};
use serde_json::{Map, Value};

use crate::client::{BodyError, ClientError};
use crate::streams::context::{Ctx, fill_path};
use crate::streams::error::SyncError;
use crate::streams::extract::{PageDecoder, Records};
use crate::streams::read::FirstRequest;
use crate::streams::read::ahead::ReadAhead;
use crate::streams::read::paging::{WindowPart, read_windows};
use crate::streams::runner::{Extractor, window_query};
use crate::streams::summary::PartitionReport;
use crate::streams::window::Window;
use crate::streams::{Kind, ParentRows, PerRecord, StreamDef};

/// The parent's declaration; `declarations_are_consistent` checks every name resolves.
pub fn parent_def(rows: ParentRows) -> Result<&'static StreamDef, SyncError> {
    crate::streams::find(rows.parent)
        .filter(|d| d.kind == Kind::DateWindows)
        .ok_or(SyncError::Declaration(format!("parent stream `{}` is not a date-window stream", rows.parent)))
}

pub fn first_request(ctx: &Ctx<'_>, per_record: PerRecord, page_size: u64, from: DateTime<Utc>, to: DateTime<Utc>) -> FirstRequest {
    let path = parent_def(per_record.of).map_or(ctx.def.path, |p| p.path);
    FirstRequest {
        path: fill_path(path, ctx.partition, None),
        query: ctx.query(window_query(Window::covering(from, to), 0, page_size)),
        then: "the parent rows of the range, then one request per row",
    }
}

pub async fn read(ex: &Extractor<'_>, ctx: &Ctx<'_>, per_record: PerRecord) -> Result<PartitionReport, SyncError> {
    let mut report = ex.report(ctx);
    let start = ex.start(ctx);
    let end = ex.end();
    if start >= end {
        return Ok(report);
    }
    let ids = parent_ids(ex, ctx, per_record.of, start, end).await?;
    let fetched = stream::iter(ids.iter())
        .map(|id| async move {
            let path = ctx.path(Some(&id_text(id)));
            let parse = |body: &[u8]| {
                ctx.decoder
                    .decode_values(&records_of(body, ctx.def.records, per_record.id_field, id)?, &ctx.scope)
            };
            match ex.get(ctx, &path, &[], None, parse).await {
                Ok(batch) => Ok(Some(batch)),
                Err(SyncError::Request {
                    source:
                        ClientError::Skipped {
                            request,
                            status,
                            error_code,
                            message,
                        },
                    ..
                }) => {
                    tracing::info!(stream = ctx.def.name, %request, status, ?error_code, ?message, "Skipped, as the stream's error rules say.");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
        .read_ahead(ex.ahead());
    let mut fetched = std::pin::pin!(fetched);
    let mut pending = 0;
    while let Some(batch) = fetched.next().await {
        match batch? {
            Some(batch) => {
                report.records += batch.num_rows() as u64;
                ex.commits.stage(ctx, batch, &mut pending).await?;
            }
            None => report.skipped += 1,
        }
    }
    report.windows = 1;
    let parent = per_record.of.parent;
    report.note = Some(match report.skipped {
        0 => format!("{} rows of {parent}, one request each", ids.len()),
        n => format!("{} rows of {parent}, one request each; {n} skipped (gone from the API)", ids.len()),
    });
    ex.commits.commit(ctx, Some(end)).await?;
    report.bookmark_after = Some(end);
    Ok(report)
}

/// The ids of the parent's rows in `[from, to]` (widened back by `lookback_days` at most to
/// `start_date - lookback_days`) that pass the declaration's filter, each once, oldest window
/// first, as JSON values of the parent column's type.
pub async fn parent_ids(ex: &Extractor<'_>, ctx: &Ctx<'_>, rows: ParentRows, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Value>, SyncError> {
    let parent = parent_def(rows)?;
    let schema = parent.schema()?;
    let decoder = PageDecoder::new(&schema, parent.records, ex.now);
    let pctx = ctx.as_stream(parent, &decoder);
    let lookback = Duration::days(i64::from(ex.config.lookback_days));
    let from = from.max(ex.config.start - lookback);
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    read_windows(ex, &pctx, from, to, None, async |part| {
        let b = match part {
            WindowPart::Rows(b) => b,
            WindowPart::Complete { .. } | WindowPart::Misread(_) => return Ok(()),
            // The child's bookmark moves to `to`: every parent row before it is needed.
            WindowPart::Unsettled(u) => return Err(u.into_error(&pctx)),
        };
        for id in ids_in(&b, rows)? {
            if seen.insert(id_text(&id)) {
                ids.push(id);
            }
        }
        Ok(())
    })
    .await?;
    Ok(ids)
}

/// The id column's values of the rows whose filter column allows them.
fn ids_in(batch: &RecordBatch, rows: ParentRows) -> Result<Vec<Value>, SyncError> {
    let wrong = || SyncError::Declaration(format!("parent `{}` has no text or integer column `{}`", rows.parent, rows.id_column));
    let column = batch.column_by_name(rows.id_column).ok_or_else(wrong)?;
    let filter = rows.only_if.and_then(|c| batch.column_by_name(c));
    let wanted = |i: usize| column.is_valid(i) && filter.is_none_or(|f| allows(f.as_ref(), i));
    if let Some(s) = column.as_any().downcast_ref::<StringArray>() {
        return Ok((0..s.len()).filter(|i| wanted(*i)).map(|i| Value::String(s.value(i).to_string())).collect());
    }
    if let Some(n) = column.as_any().downcast_ref::<Int64Array>() {
        return Ok((0..n.len()).filter(|i| wanted(*i)).map(|i| Value::from(n.value(i))).collect());
    }
    Err(wrong())
}

/// Whether row `i` of a filter column allows a request: true (booleans) or not "None" (text,
/// as `track_links`); a missing value allows it, so nothing is left out on a guess.
fn allows(column: &dyn Array, i: usize) -> bool {
    if column.is_null(i) {
        return true;
    }
    if let Some(b) = column.as_any().downcast_ref::<BooleanArray>() {
        return b.value(i);
    }
    if let Some(s) = column.as_any().downcast_ref::<StringArray>() {
        return !s.value(i).eq_ignore_ascii_case("none");
    }
    true
}

/// An id as it goes in a path.
pub fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The records of a child response (the list under the declared key, or the body itself), each
/// with the parent's id in `id_field`.
fn records_of(body: &[u8], records: Records, id_field: &str, id: &Value) -> Result<Vec<Value>, BodyError> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    let list = match records {
        Records::Whole => vec![Value::Object(object)],
        // The reference gives `[]` for none: an answer without the list is not "no records".
        Records::Under(key) => match object.remove(key) {
            Some(Value::Array(list)) => list,
            Some(other) => return Err(BodyError::Data(format!("`{key}` is {other}, not a list"))),
            None => return Err(BodyError::Data(format!("the answer has no `{key}` list"))),
        },
    };
    Ok(list
        .into_iter()
        .map(|mut record| {
            if let Value::Object(m) = &mut record {
                m.insert(id_field.to_string(), id.clone());
            }
            record
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_records_carry_the_parent_id() {
        let body = br#"{"MessageID":"x","MessageEvents":[{"Type":"Delivered"},{"Type":"Opened"}]}"#;
        let got = records_of(body, Records::Under("MessageEvents"), "MessageID", &Value::from("m-1")).unwrap();
        assert_eq!(
            got,
            vec![
                serde_json::json!({"Type":"Delivered","MessageID":"m-1"}),
                serde_json::json!({"Type":"Opened","MessageID":"m-1"})
            ]
        );
        let dump = records_of(br#"{"Body":"Received: x"}"#, Records::Whole, "BounceID", &Value::from(42)).unwrap();
        assert_eq!(dump, vec![serde_json::json!({"Body":"Received: x","BounceID":42})]);
        assert!(matches!(
            records_of(b"[1]", Records::Whole, "BounceID", &Value::from(1)),
            Err(BodyError::Malformed(_))
        ));
        for body in [&br#"{"MessageID":"x"}"#[..], br#"{"MessageEvents":{"Type":"Opened"}}"#] {
            assert!(matches!(
                records_of(body, Records::Under("MessageEvents"), "MessageID", &Value::from("m")),
                Err(BodyError::Data(m)) if m.contains("MessageEvents")
            ));
        }
    }

    #[test]
    fn filter_column_allows_true_and_tracked_rows() {
        let rows = ParentRows {
            parent: "bounces",
            id_column: "id",
            only_if: Some("dump_available"),
        };
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                std::sync::Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])) as arrow::array::ArrayRef,
            ),
            (
                "dump_available",
                std::sync::Arc::new(BooleanArray::from(vec![Some(true), Some(false), Some(true), None])) as arrow::array::ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(ids_in(&batch, rows).unwrap(), vec![Value::from(1), Value::from(4)]);
        let links = StringArray::from(vec!["HtmlAndText", "None"]);
        assert!(allows(&links, 0) && !allows(&links, 1));
        assert_eq!(id_text(&Value::from(42)), "42");
    }
}
