//! `/stats/outbound*`, computed from the server's data (reference section 4): US-Eastern days,
//! inclusive date bounds, empty days and zero keys omitted, totals at the top level, all message
//! streams when `messagestream` is absent, one tag when `tag` is given, and no retention (stats
//! are kept forever).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::America::New_York;
use serde_json::{Map, Value, json};

use crate::{Data, Event, api_error, get, json_response};

fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&New_York).date_naive()
}

fn parse_day(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw.get(..10)?, "%Y-%m-%d").ok()
}

type Days = BTreeMap<NaiveDate, BTreeMap<String, i64>>;

pub(crate) fn respond(data: &Data, endpoint: &str, query: &[(String, String)], now: DateTime<Utc>) -> Response {
    let mut range = (None, None);
    for (name, slot) in [("fromdate", &mut range.0), ("todate", &mut range.1)] {
        if let Some(raw) = get(query, name) {
            match parse_day(raw) {
                Some(d) => *slot = Some(d),
                None => {
                    return api_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        900,
                        &format!("The '{name}' parameter should be a date/time value."),
                    );
                }
            }
        }
    }
    if let (Some(f), Some(t)) = range
        && f > t
    {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 1502, "FromDate must be older than ToDate.");
    }
    let stream = get(query, "messagestream").map(str::to_ascii_lowercase);
    if let Some(s) = &stream
        && !data.streams.iter().any(|x| x.id.eq_ignore_ascii_case(s))
    {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            1226,
            "The message stream for the provided 'ID' was not found.",
        );
    }
    // `tag`: exact match (the reference leaves case sensitivity unconfirmed).
    let tag = get(query, "tag");
    let in_scope = |day: NaiveDate, s: &str, t: DateTime<Utc>, item_tag: &Option<String>| {
        t <= now
            && range.0.is_none_or(|f| day >= f)
            && range.1.is_none_or(|to| day <= to)
            && stream.as_deref().is_none_or(|x| s.eq_ignore_ascii_case(x))
            && tag.is_none_or(|x| item_tag.as_deref() == Some(x))
    };
    let messages: Vec<_> = data
        .messages
        .values()
        .flatten()
        .filter(|m| in_scope(day_of(m.received_at), &m.stream, m.received_at, &m.tag))
        .collect();
    let opens: Vec<&Event> = data
        .opens
        .iter()
        .filter(|e| in_scope(day_of(e.received_at), &e.stream, e.received_at, &e.tag))
        .collect();
    let clicks: Vec<&Event> = data
        .clicks
        .iter()
        .filter(|e| in_scope(day_of(e.received_at), &e.stream, e.received_at, &e.tag))
        .collect();
    let bounces: Vec<_> = data
        .bounces
        .iter()
        .filter(|b| in_scope(day_of(b.bounced_at), &b.stream, b.bounced_at, &b.tag))
        .collect();

    let mut days = Days::new();
    let mut add = |day: NaiveDate, key: &str, n: i64| {
        *days.entry(day).or_default().entry(key.to_string()).or_default() += n;
    };
    let unique = |events: &[&Event], with_link: bool| -> BTreeMap<NaiveDate, i64> {
        let mut seen: BTreeSet<(NaiveDate, &str, &str, &str)> = BTreeSet::new();
        for e in events {
            seen.insert((day_of(e.received_at), &e.message_id, &e.recipient, if with_link { &e.link } else { "" }));
        }
        let mut out = BTreeMap::new();
        for (d, ..) in seen {
            *out.entry(d).or_default() += 1;
        }
        out
    };
    match endpoint {
        "" => return overview(&messages, &opens, &clicks, &bounces),
        "sends" => messages.iter().for_each(|m| add(day_of(m.received_at), "Sent", m.to.len() as i64)),
        "bounces" => bounces
            .iter()
            .filter(|b| ["HardBounce", "SoftBounce", "SMTPApiError", "Transient"].contains(&b.kind.as_str()))
            .for_each(|b| add(day_of(b.bounced_at), &b.kind, 1)),
        "spam" => bounces
            .iter()
            .filter(|b| b.kind == "SpamComplaint")
            .for_each(|b| add(day_of(b.bounced_at), "SpamComplaint", 1)),
        "tracked" => messages
            .iter()
            .filter(|m| m.track_opens)
            .for_each(|m| add(day_of(m.received_at), "Tracked", m.to.len() as i64)),
        "opens" => {
            opens.iter().for_each(|e| add(day_of(e.received_at), "Opens", 1));
            unique(&opens, false).into_iter().for_each(|(d, n)| add(d, "Unique", n));
        }
        "opens/platforms" => opens.iter().for_each(|e| add(day_of(e.received_at), &e.platform, 1)),
        "opens/emailclients" => opens.iter().for_each(|e| add(day_of(e.received_at), &e.client_family, 1)),
        "opens/readtimes" => opens.iter().for_each(|e| add(day_of(e.received_at), &format!("{}s", e.read_seconds), 1)),
        "clicks" => {
            clicks.iter().for_each(|e| add(day_of(e.received_at), "Clicks", 1));
            unique(&clicks, true).into_iter().for_each(|(d, n)| add(d, "Unique", n));
        }
        "clicks/browserfamilies" => clicks.iter().for_each(|e| add(day_of(e.received_at), &e.client_family, 1)),
        "clicks/platforms" => clicks.iter().for_each(|e| add(day_of(e.received_at), &e.platform, 1)),
        "clicks/location" => clicks.iter().for_each(|e| add(day_of(e.received_at), &e.location, 1)),
        _ => return api_error(StatusCode::NOT_FOUND, 0, "Not found."),
    }
    json_response(render(&days).to_string())
}

/// `{"Days": [...], totals...}` with empty days and zero keys left out.
fn render(days: &Days) -> Value {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut list = Vec::new();
    for (day, keys) in days {
        let mut entry = Map::new();
        entry.insert("Date".to_string(), json!(day.format("%Y-%m-%d").to_string()));
        for (k, v) in keys.iter().filter(|(_, v)| **v != 0) {
            entry.insert(k.clone(), json!(v));
            *totals.entry(k.clone()).or_default() += v;
        }
        if entry.len() > 1 {
            list.push(Value::Object(entry));
        }
    }
    let mut out = Map::new();
    out.insert("Days".to_string(), Value::Array(list));
    for (k, v) in totals {
        out.insert(k, json!(v));
    }
    Value::Object(out)
}

fn overview(messages: &[&crate::Message], opens: &[&Event], clicks: &[&Event], bounces: &[&crate::Bounce]) -> Response {
    let sent: i64 = messages.iter().map(|m| m.to.len() as i64).sum();
    let tracked: i64 = messages.iter().filter(|m| m.track_opens).map(|m| m.to.len() as i64).sum();
    let spam = bounces.iter().filter(|b| b.kind == "SpamComplaint").count() as i64;
    let bounced = bounces.iter().filter(|b| b.kind != "SpamComplaint").count() as i64;
    let smtp = bounces.iter().filter(|b| b.kind == "SMTPApiError").count() as i64;
    let unique_opens = opens.iter().map(|e| (&e.message_id, &e.recipient)).collect::<BTreeSet<_>>().len() as i64;
    let unique_links = clicks.iter().map(|e| (&e.message_id, &e.recipient, &e.link)).collect::<BTreeSet<_>>().len() as i64;
    let rate = |n: i64| if sent == 0 { 0.0 } else { (n as f64) * 100.0 / (sent as f64) };
    json_response(
        json!({
            "Sent": sent, "Bounced": bounced, "SMTPApiErrors": smtp, "BounceRate": rate(bounced),
            "SpamComplaints": spam, "SpamComplaintsRate": rate(spam), "Opens": opens.len(), "UniqueOpens": unique_opens,
            "Tracked": tracked, "WithLinkTracking": tracked, "WithOpenTracking": tracked, "TotalTrackedLinksSent": tracked,
            "UniqueLinksClicked": unique_links, "TotalClicks": clicks.len(), "WithClientRecorded": unique_opens,
            "WithPlatformRecorded": unique_opens, "WithReadTimeRecorded": unique_opens
        })
        .to_string(),
    )
}
