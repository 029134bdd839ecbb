//! `Kind::DailyStats`: daily stats (`fromdate`/`todate` as US-Eastern dates), re-read over
//! `lookback_days` every run, reshaped into one row per day (and name), for all mail and for
//! each tag of `stats_tags`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value, json};

use crate::client::{BodyError, ClientError};
use crate::streams::StatsShape;
use crate::streams::context::Ctx;
use crate::streams::error::SyncError;
use crate::streams::read::ahead::ReadAhead;
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
    let data_error = |message: String| SyncError::Request {
        stream: ctx.def.name,
        at: ctx.at(None),
        source: ClientError::Data {
            request: format!("GET {}", ctx.path(None)),
            message,
        },
    };
    let mut records: Vec<Value> = Vec::new();
    for tag in ex.stats_tags().await {
        let tag = tag.as_deref();
        let mut part: Vec<Value> = match shape {
            StatsShape::OverviewPerDay => {
                stream::iter(days.iter())
                    .map(|day| async move {
                        let body = stats_request(ex, ctx, *day, *day, tag).await?;
                        overview_record(body, *day).map_err(data_error)
                    })
                    .read_ahead(ex.ahead())
                    .try_collect()
                    .await?
            }
            StatsShape::Daily(keys) => {
                let body = stats_request(ex, ctx, from, to, tag).await?;
                daily_records(&body, keys, &days).map_err(data_error)?
            }
            StatsShape::LongByName => {
                let body = stats_request(ex, ctx, from, to, tag).await?;
                long_records(&body).map_err(data_error)?
            }
        };
        for record in &mut part {
            if let Value::Object(r) = record {
                r.insert("Tag".to_string(), json!(tag));
            }
        }
        records.extend(part);
    }
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

/// One stats answer, of the mail with `tag` (all mail when `None`).
async fn stats_request(ex: &Extractor<'_>, ctx: &Ctx<'_>, from: NaiveDate, to: NaiveDate, tag: Option<&str>) -> Result<Value, SyncError> {
    let mut params = date_query(from, to);
    params.extend(tag.map(|t| ("tag", t.to_string())));
    let query = ctx.query(params);
    ex.get(ctx, &ctx.path(None), &query, None, |b| {
        serde_json::from_slice::<Value>(b).map_err(|e| BodyError::Malformed(e.to_string()))
    })
    .await
}

/// The overview of one day as a record: the body must be an object. A counter it lacks stays
/// missing (null, or an error for the schema's required ones): the reference says only `Days`
/// entries omit zeros, so a missing overview counter is not known to be 0.
fn overview_record(body: Value, day: NaiveDate) -> Result<Value, String> {
    let Value::Object(mut record) = body else {
        return Err(format!("the overview of {day} is {}, not an object", kind_of(&body)));
    };
    record.insert("Date".to_string(), Value::String(day.format("%Y-%m-%d").to_string()));
    Ok(Value::Object(record))
}

/// One record per day with every key: the reference says `Days` leaves out empty days and a
/// day leaves out zero keys, so those are 0; a value that is there must be an integer.
fn daily_records(body: &Value, keys: &[&str], days: &[NaiveDate]) -> Result<Vec<Value>, String> {
    let by_day = days_by_date(body)?;
    days.iter()
        .map(|d| {
            let entry = by_day.get(&d.to_string());
            let mut record = Map::new();
            record.insert("Date".to_string(), json!(d.to_string()));
            for k in keys {
                let value = match entry.and_then(|e| e.get(*k)) {
                    None => 0,
                    Some(v) => counter(v, k, &d.to_string())?,
                };
                record.insert((*k).to_string(), json!(value));
            }
            Ok(Value::Object(record))
        })
        .collect()
}

/// One record per day and name (email clients, browser families), each count an integer.
fn long_records(body: &Value) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (date, entry) in days_by_date(body)? {
        for (name, count) in entry.iter().filter(|(k, _)| k.as_str() != "Date") {
            out.push(json!({"Date": date, "Name": name, "Count": counter(count, name, &date)?}));
        }
    }
    Ok(out)
}

fn counter(value: &Value, key: &str, date: &str) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("`Days[].{key}` of {date} is {}, not an integer count", kind_of(value)))
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Null => "null".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    }
}

/// `Days` entries of a stats response, by date; each must be an object with a `Date`.
fn days_by_date(body: &Value) -> Result<BTreeMap<String, Map<String, Value>>, String> {
    let days = match body.get("Days") {
        Some(Value::Array(days)) => days,
        Some(other) => return Err(format!("`Days` is {}, not a list", kind_of(other))),
        None => return Err("the answer has no `Days` list".to_string()),
    };
    days.iter()
        .enumerate()
        .map(|(i, d)| {
            let m = d.as_object().ok_or_else(|| format!("`Days[{i}]` is {}, not an object", kind_of(d)))?;
            let date = m
                .get("Date")
                .and_then(Value::as_str)
                .and_then(|t| t.get(..10))
                .filter(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok())
                .ok_or_else(|| format!("`Days[{i}].Date` is missing or not a YYYY-MM-DD date"))?;
            Ok((date.to_string(), m.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    /// Omitted days and keys are 0, as the reference says; a value of another type, a missing
    /// `Days` or a day without a date is an error naming it, never a 0.
    #[test]
    fn reshaping_checks_types() {
        let days = [day("2026-11-20"), day("2026-11-21")];
        let body = json!({"Days": [{"Date": "2026-11-21", "HardBounce": 2}]});
        let got = daily_records(&body, &["HardBounce", "SoftBounce"], &days);
        assert_eq!(
            got,
            Ok(vec![
                json!({"Date": "2026-11-20", "HardBounce": 0, "SoftBounce": 0}),
                json!({"Date": "2026-11-21", "HardBounce": 2, "SoftBounce": 0})
            ])
        );
        let wrong = json!({"Days": [{"Date": "2026-11-21", "HardBounce": "2"}]});
        assert_eq!(
            daily_records(&wrong, &["HardBounce"], &days),
            Err("`Days[].HardBounce` of 2026-11-21 is the string \"2\", not an integer count".to_string())
        );
        assert!(daily_records(&json!({}), &["Sent"], &days).is_err_and(|e| e.contains("no `Days`")));
        assert!(daily_records(&json!({"Days": [{"Sent": 1}]}), &["Sent"], &days).is_err_and(|e| e.contains("Days[0].Date")));
        assert!(long_records(&json!({"Days": [{"Date": "2026-11-21", "Gmail": 1.5}]})).is_err_and(|e| e.contains("Gmail")));
        assert!(overview_record(json!([1]), days[0]).is_err_and(|e| e.contains("a list")));
        assert_eq!(overview_record(json!({"Sent": 3}), days[0]), Ok(json!({"Sent": 3, "Date": "2026-11-20"})));
    }
}
