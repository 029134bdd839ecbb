//! The endpoints, from the reference's sections 2 to 9.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

mod messages;
mod tables;

use crate::{
    Bound, Data, DateReading, Event, MAX_COUNT, MAX_REACH, Message, Server, Shared, Span, api_error, get, json_response, postmark_timestamp, read_date_filter,
    stats,
};
use messages::*;
use tables::*;

pub(crate) fn route(shared: &Shared, method: &Method, path: &str, query: &[(String, String)], headers: &HeaderMap, body: &[u8]) -> Response {
    let writes_webhooks = path == "/webhooks" || path.starts_with("/webhooks/");
    if method != Method::GET && !(writes_webhooks && (method == Method::POST || method == Method::PUT)) {
        return api_error(StatusCode::METHOD_NOT_ALLOWED, 0, "Only GET endpoints (and webhook writes) are faked.");
    }
    let account_paths = ["/servers", "/domains", "/senders"];
    if account_paths.iter().any(|p| path == *p || path.starts_with(&format!("{p}/"))) {
        let ok = headers
            .get("x-postmark-account-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == shared.config.account_token);
        if !ok {
            return api_error(StatusCode::UNAUTHORIZED, 10, "Request does not contain a valid Account token.");
        }
        return account_route(shared, path, query);
    }
    let token = headers.get("x-postmark-server-token").and_then(|v| v.to_str().ok());
    let Some(server) = shared.server_by_token(token) else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            10,
            "Request does not contain a valid Server token. Please see the API reference for more information.",
        );
    };
    let span = shared.span();
    if writes_webhooks {
        return webhooks_route(&mut server.lock(), method, path, query, body);
    }
    if path == "/messages/outbound" {
        arrive(shared, &server, query, span);
    }
    // A read lock: the GETs of a sync's request slots run side by side, as at Postmark, instead
    // of queueing behind one another's counting and rendering.
    let data = server.read();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["server"] => json_response(server_json(&server, true).to_string()),
        ["message-streams"] => message_streams(&data, query),
        ["message-streams", id, "suppressions", "dump"] => suppressions(&data, id, span),
        ["messages", "outbound"] => outbound_messages(&data, query, span),
        ["messages", "outbound", "opens"] => events_list(&data.opens, query, span, "Opens", shared.config.event_date_filters),
        ["messages", "outbound", "clicks"] => events_list(&data.clicks, query, span, "Clicks", shared.config.event_date_filters),
        ["messages", "outbound", "opens", id] => events_of_message(&data.opens, id, query, span, "Opens"),
        ["messages", "outbound", "clicks", id] => events_of_message(&data.clicks, id, query, span, "Clicks"),
        ["messages", "outbound", id, "details"] => message_details(&data, id, span),
        ["messages", "inbound"] => inbound(&data, query, span),
        ["bounces"] => bounces(&data, query, span),
        ["bounces", id, "dump"] => bounce_dump(&data, id, span),
        ["triggers", "inboundrules"] => inbound_rules(&server, query),
        ["deliverystats"] => delivery_stats(&data, span),
        ["templates"] => templates(&server, query),
        ["stats", "outbound", rest @ ..] => stats::respond(&data, &rest.join("/"), query, span.now),
        _ => not_served(),
    }
}

/// A path the fake has no route for.
fn not_served() -> Response {
    api_error(StatusCode::NOT_FOUND, 0, "Not found (the fake does not serve this path).")
}

/// The webhook paths, under the write lock (the list is made on first use): GET /webhooks, and
/// the writes.
fn webhooks_route(data: &mut Data, method: &Method, path: &str, query: &[(String, String)], body: &[u8]) -> Response {
    if method != Method::GET {
        return write_webhook(data, method, path, body);
    }
    if path != "/webhooks" {
        return not_served();
    }
    let stream = get(query, "messagestream").map(str::to_string);
    if let Some(s) = &stream
        && !stream_exists(data, s)
    {
        return unknown_stream();
    }
    let hooks: Vec<Value> = webhooks_of(data)
        .iter()
        .filter(|w| {
            stream
                .as_deref()
                .is_none_or(|s| w["MessageStream"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(s)))
        })
        .cloned()
        .collect();
    json_response(json!({"Webhooks": hooks}).to_string())
}

/// New mail arriving between two pages of a sync (`FakeConfig::arrivals_per_search`).
fn arrive(shared: &Shared, server: &Server, query: &[(String, String)], span: Span) {
    let count = shared.arrivals_per_search.load(std::sync::atomic::Ordering::Relaxed);
    if count == 0 {
        return;
    }
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    let mut rng = shared.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let back = shared.config.index_delay.max(ChronoDuration::minutes(1));
    let seed: u64 = rand::RngExt::random(&mut *rng);
    let new = crate::generate::between(seed, &stream, span.now - back, span.now, count);
    let mut data = server.lock();
    data.messages.entry(stream).or_default().extend(new);
    data.sort();
}

fn server_json(server: &Server, with_tokens: bool) -> Value {
    let mut v = json!({
        "ID": server.id, "Name": server.name, "ServerLink": format!("https://account.postmarkapp.com/servers/{}/streams", server.id),
        "Color": "Blue", "SmtpApiActivated": true, "RawEmailEnabled": false, "DeliveryType": "Live",
        "InboundAddress": "abc123@inbound.postmarkapp.com", "InboundHookUrl": "", "BounceHookUrl": "",
        "OpenHookUrl": "", "DeliveryHookUrl": "", "ClickHookUrl": "", "PostFirstOpenOnly": false,
        "InboundDomain": "", "InboundHash": "abc123", "InboundSpamThreshold": 0, "TrackOpens": true,
        "TrackLinks": "None", "IncludeBounceContentInHook": false, "EnableSmtpApiErrorHooks": false
    });
    if with_tokens {
        v["ApiTokens"] = json!([server.token]);
    }
    v
}

fn account_route(shared: &Shared, path: &str, query: &[(String, String)]) -> Response {
    let (count, offset) = match paging(query, 600) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (key, all): (&str, Vec<Value>) = match path {
        "/servers" => ("Servers", shared.servers().iter().map(|s| server_json(s, true)).collect()),
        "/domains" => (
            "Domains",
            vec![
                json!({"Name": "shop.example", "SPFVerified": true, "DKIMVerified": true, "WeakDKIM": false, "ReturnPathDomainVerified": false, "ID": 36735}),
                json!({"Name": "mail.shop.example", "SPFVerified": false, "DKIMVerified": false, "WeakDKIM": false, "ReturnPathDomainVerified": false, "ID": 36736}),
            ],
        ),
        "/senders" => (
            "SenderSignatures",
            vec![
                json!({"Domain": "shop.example", "EmailAddress": "orders@shop.example", "ReplyToEmailAddress": "", "Name": "Shop", "Confirmed": true, "ID": 36735}),
            ],
        ),
        _ => return api_error(StatusCode::NOT_FOUND, 0, "Not found."),
    };
    let page: Vec<Value> = all.iter().skip(offset as usize).take(count as usize).cloned().collect();
    json_response(json!({"TotalCount": all.len(), key: page}).to_string())
}

fn message_streams(data: &Data, query: &[(String, String)]) -> Response {
    let kind = get(query, "messagestreamtype").unwrap_or("All");
    let archived = get(query, "includearchivedstreams").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let items: Vec<Value> = data
        .streams
        .iter()
        .filter(|s| kind.eq_ignore_ascii_case("all") || s.kind.eq_ignore_ascii_case(kind))
        .filter(|s| archived || !s.archived)
        .map(|s| {
            json!({
                "ID": s.id, "ServerID": 118822, "Name": s.name, "Description": null,
                "MessageStreamType": s.kind, "CreatedAt": "2024-11-02T10:00:00-04:00",
                "UpdatedAt": null, "ArchivedAt": if s.archived { json!("2026-10-01T10:00:00-04:00") } else { Value::Null },
                "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": "None"}
            })
        })
        .collect();
    json_response(json!({"MessageStreams": items, "TotalCount": items.len()}).to_string())
}

fn stream_exists(data: &Data, id: &str) -> bool {
    data.streams.iter().any(|s| s.id.eq_ignore_ascii_case(id))
}

fn unknown_stream() -> Response {
    api_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        1226,
        "The message stream for the provided 'ID' was not found.",
    )
}

/// Validates `count`/`offset` as Postmark does: required, 1..=500, >= 0, sum <= 10,000.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself
pub(crate) fn paging(query: &[(String, String)], error_code: i64) -> Result<(u64, u64), Response> {
    let bad = |m: &str| api_error(StatusCode::UNPROCESSABLE_ENTITY, error_code, m);
    let count: i64 = get(query, "count")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("The 'count' parameter is required and must be a number."))?;
    let offset: i64 = get(query, "offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("The 'offset' parameter is required and must be a number."))?;
    if !(1..=MAX_COUNT as i64).contains(&count) {
        return Err(bad("Count must be between 1 and 500."));
    }
    if offset < 0 {
        return Err(bad("Offset must not be negative."));
    }
    if (count + offset) as u64 > MAX_REACH {
        return Err(bad("Count + Offset cannot exceed 10000 messages."));
    }
    Ok((count as u64, offset as u64))
}

type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `fromdate`/`todate` of a request, read as the reference says.
#[allow(clippy::result_large_err)]
fn date_range(query: &[(String, String)], error_code: i64, reading: DateReading) -> Result<Bounds, Response> {
    let mut out = (None, None);
    for (name, bound) in [("fromdate", Bound::From), ("todate", Bound::To)] {
        if let Some(raw) = get(query, name) {
            let t = read_date_filter(raw, bound, reading).ok_or_else(|| {
                api_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    error_code,
                    &format!("The '{name}' parameter is not a valid date."),
                )
            })?;
            match bound {
                Bound::From => out.0 = Some(t),
                Bound::To => out.1 = Some(t),
            }
        }
    }
    Ok(out)
}

/// `count`, `offset`, `fromdate` and `todate` of a search endpoint.
struct Search {
    count: u64,
    offset: u64,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

#[allow(clippy::result_large_err)]
fn search(query: &[(String, String)], error_code: i64, reading: DateReading) -> Result<Search, Response> {
    let (count, offset) = paging(query, error_code)?;
    let (from, to) = date_range(query, error_code, reading)?;
    Ok(Search { count, offset, from, to })
}

/// The records of a list inside `[from, to]` and retention, in list order.
pub(crate) enum Visible<'a, T> {
    /// A slice of a newest-first list, found by binary search.
    Slice(&'a [T]),
    /// Picked one by one from a list only nearly newest first.
    Picked(Vec<&'a T>),
}

impl<'a, T> Visible<'a, T> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a T> + '_ {
        let (slice, picked) = match self {
            Visible::Slice(s) => (Some(s.iter()), None),
            Visible::Picked(v) => (None, Some(v.iter().copied())),
        };
        slice.into_iter().flatten().chain(picked.into_iter().flatten())
    }
}

fn in_range<T>(all: &[T], at: impl Fn(&T) -> DateTime<Utc>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, span: Span) -> Visible<'_, T> {
    let upper_bound = to.map_or(span.now, |t| t.min(span.now));
    let lower_bound = from.map_or(span.cutoff, |f| f.max(span.cutoff));
    if span.nearly_ordered {
        return Visible::Picked(all.iter().filter(|x| at(x) >= lower_bound && at(x) <= upper_bound).collect());
    }
    let upper = all.partition_point(|x| at(x) > upper_bound);
    let lower = all.partition_point(|x| at(x) >= lower_bound);
    Visible::Slice(if lower > upper { &all[upper..lower] } else { &all[0..0] })
}

/// Webhooks carry credentials and header values: the connector must not load them.
pub const WEBHOOK_PASSWORD: &str = "webhook-pass-9f8e7d";
pub const WEBHOOK_HEADER_VALUE: &str = "header-secret-1a2b3c";

/// The server's webhook configurations, starting with two (one holding credentials).
pub(crate) fn webhooks_of(data: &mut Data) -> &mut Vec<Value> {
    data.webhooks.get_or_insert_with(|| {
        vec![
            json!({"ID": 4431207, "Url": "https://hooks.shop.example/postmark", "MessageStream": "outbound",
             "HttpAuth": {"Username": "hooks", "Password": WEBHOOK_PASSWORD},
             "HttpHeaders": [{"Name": "X-Secret", "Value": WEBHOOK_HEADER_VALUE}],
             "Triggers": {"Open": {"Enabled": true, "PostFirstOpenOnly": false}, "Click": {"Enabled": true},
                "Delivery": {"Enabled": true}, "Bounce": {"Enabled": true, "IncludeContent": false},
                "SpamComplaint": {"Enabled": true, "IncludeContent": false}, "SubscriptionChange": {"Enabled": false}}}),
            json!({"ID": 4431208, "Url": "https://hooks.shop.example/bounces", "MessageStream": "broadcast",
             "Triggers": {"Bounce": {"Enabled": true, "IncludeContent": true}}}),
        ]
    })
}

/// `POST /webhooks` (create) and `PUT /webhooks/{id}` (update), answering with the webhook.
fn write_webhook(data: &mut Data, method: &Method, path: &str, body: &[u8]) -> Response {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 402, "Received invalid JSON input.");
    };
    if method == Method::POST {
        let Some(url) = fields.get("Url").and_then(Value::as_str) else {
            return api_error(StatusCode::UNPROCESSABLE_ENTITY, 1350, "The 'Url' field is required.");
        };
        let stream = fields.get("MessageStream").and_then(Value::as_str).unwrap_or("outbound").to_string();
        if !stream_exists(data, &stream) {
            return unknown_stream();
        }
        let hooks = webhooks_of(data);
        let id = hooks.iter().filter_map(|w| w["ID"].as_i64()).max().unwrap_or(4431200) + 1;
        let mut hook = Value::Object(fields.clone());
        hook["ID"] = json!(id);
        hook["Url"] = json!(url);
        hook["MessageStream"] = json!(stream);
        hooks.push(hook.clone());
        return json_response(hook.to_string());
    }
    let id: Option<i64> = path.trim_start_matches("/webhooks/").parse().ok();
    let hooks = webhooks_of(data);
    let Some(hook) = hooks.iter_mut().find(|w| w["ID"].as_i64() == id) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 1352, "The webhook was not found.");
    };
    for (k, v) in fields {
        if k != "ID" && k != "MessageStream" {
            hook[k.as_str()] = v;
        }
    }
    json_response(hook.to_string())
}
