//! `Kind::DailyStats`: daily stats (`fromdate`/`todate` as US-Eastern dates), re-read over
//! `lookback_days` every run, reshaped into one row per day (and name).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value, json};

use crate::client::{BodyError, ClientError};
use crate::schema::{FieldType, StreamSchema};
use crate::streams::StatsShape;
use crate::streams::context::Ctx;
use crate::streams::error::SyncError;
use crate::streams::read::{FirstRequest, eastern_date, eastern_midnight};
use crate::streams::runner::Extractor;
use crate::streams::summary::PartitionReport;

fn date_query(from: NaiveDate, to: NaiveDate) -> Vec<(&'static str, String)> {
    vec![("fromdate", from.to_string()), ("todate", to.to_string())]
}

pub fn first_request(ctx: &Ctx<'_>, shape: StatsShape, from: DateTime<Utc>, to: DateTime<Utc>) -> FirstRequest {
    FirstRequest {
        path: ctx.path(None),
        query: ctx.query(date_query(eastern_date(from), eastern_date(to))),
        then: match shape {
            StatsShape::OverviewPerDay => "one request per day",
            _ => "one request",
        },
    }
}

pub async fn read(ex: &Extractor<'_>, ctx: &Ctx<'_>, shape: StatsShape) -> Result<PartitionReport, SyncError> {
    let mut report = ex.report(ctx);
    let from = eastern_date(ex.start(ctx));
    let to = eastern_date(ex.end());
    if from > to {
        return Ok(report);
    }
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let records: Vec<Value> = match shape {
        StatsShape::OverviewPerDay => {
            let per_day: Vec<Value> = stream::iter(days.iter())
                .map(|day| async move {
                    let body = stats_request(ex, ctx, *day, *day).await?;
                    let mut record = match body {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    record.insert("Date".to_string(), Value::String(day.format("%Y-%m-%d").to_string()));
                    Ok::<_, SyncError>(Value::Object(record))
                })
                .buffered(ex.config.max_concurrency)
                .try_collect()
                .await?;
            let schema = ctx.def.schema()?;
            per_day.into_iter().map(|r| zero_fill(r, &schema)).collect()
        }
        StatsShape::Daily(keys) => {
            let body = stats_request(ex, ctx, from, to).await?;
            let by_day = days_by_date(&body);
            days.iter()
                .map(|d| {
                    let entry = by_day.get(&d.to_string());
                    let mut record = Map::new();
                    record.insert("Date".to_string(), json!(d.to_string()));
                    for k in keys {
                        let v = entry.and_then(|e| e.get(*k)).and_then(Value::as_i64).unwrap_or(0);
                        record.insert((*k).to_string(), json!(v));
                    }
                    Value::Object(record)
                })
                .collect()
        }
        StatsShape::LongByName => {
            let body = stats_request(ex, ctx, from, to).await?;
            let mut out = Vec::new();
            for (date, entry) in days_by_date(&body) {
                for (name, count) in entry.iter().filter(|(k, _)| k.as_str() != "Date") {
                    out.push(json!({"Date": date, "Name": name, "Count": count.as_i64().unwrap_or(0)}));
                }
            }
            out
        }
    };
    let batch = ctx.decoder.decode_values(&records, &ctx.scope).map_err(|e| SyncError::Request {
        stream: ctx.def.name,
        at: ctx.at(None),
        source: ClientError::Data {
            request: format!("GET {}", ctx.path(None)),
            message: match e {
                BodyError::Data(m) | BodyError::Malformed(m) => m,
            },
        },
    })?;
    report.records = batch.num_rows() as u64;
    report.windows = 1;
    ex.commits.write(ctx.def, vec![batch]).await?;
    let bookmark = eastern_midnight(to);
    ex.commits.commit(ctx, bookmark).await?;
    report.bookmark_after = bookmark.or(report.bookmark_before);
    Ok(report)
}

async fn stats_request(ex: &Extractor<'_>, ctx: &Ctx<'_>, from: NaiveDate, to: NaiveDate) -> Result<Value, SyncError> {
    let query = ctx.query(date_query(from, to));
    ex.get(ctx, &ctx.path(None), &query, None, |b| {
        serde_json::from_slice::<Value>(b).map_err(|e| BodyError::Malformed(e.to_string()))
    })
    .await
}

/// `Days` entries of a stats response, by date.
fn days_by_date(body: &Value) -> BTreeMap<String, Map<String, Value>> {
    body.get("Days")
        .and_then(Value::as_array)
        .map(|days| {
            days.iter()
                .filter_map(|d| {
                    let m = d.as_object()?;
                    let date = m.get("Date")?.as_str()?.get(..10)?.to_string();
                    Some((date, m.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Missing counters are zero: the stats API omits zero values.
fn zero_fill(record: Value, schema: &StreamSchema) -> Value {
    let Value::Object(mut m) = record else { return record };
    for f in &schema.fields {
        if let (Some(src), FieldType::Integer | FieldType::Number) = (&f.source, &f.ty) {
            m.entry(src.clone()).or_insert(json!(0));
        }
    }
    Value::Object(m)
}
