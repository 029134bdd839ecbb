//! The endpoints, from the reference's sections 2 to 9.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Bound, Data, Event, MAX_COUNT, MAX_REACH, Message, Server, Shared, api_error, get, json_response, parse_eastern, postmark_timestamp, stats};

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
    let mut data = server.lock();
    let cutoff = shared.cutoff();
    if writes_webhooks && method != Method::GET {
        return write_webhook(&mut data, method, path, body);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["server"] => json_response(server_json(&server, true).to_string()),
        ["message-streams"] => message_streams(&data, query),
        ["message-streams", id, "suppressions", "dump"] => suppressions(&data, id, cutoff),
        ["messages", "outbound"] => outbound_messages(&data, query, cutoff),
        ["messages", "outbound", "opens"] => events_list(&data.opens, query, cutoff, "Opens", shared.config.event_date_filters),
        ["messages", "outbound", "clicks"] => events_list(&data.clicks, query, cutoff, "Clicks", shared.config.event_date_filters),
        ["messages", "outbound", "opens", id] => events_of_message(&data.opens, id, query, cutoff, "Opens"),
        ["messages", "outbound", "clicks", id] => events_of_message(&data.clicks, id, query, cutoff, "Clicks"),
        ["messages", "outbound", id, "details"] => message_details(&data, id, cutoff),
        ["messages", "inbound"] => inbound(&data, query, cutoff),
        ["bounces"] => bounces(&data, query, cutoff),
        ["bounces", id, "dump"] => bounce_dump(&data, id, cutoff),
        ["triggers", "inboundrules"] => inbound_rules(&server, query),
        ["deliverystats"] => delivery_stats(&data, cutoff),
        ["templates"] => templates(&server, query),
        ["webhooks"] => {
            let stream = get(query, "messagestream").map(str::to_string);
            if let Some(s) = &stream
                && !stream_exists(&data, s)
            {
                return unknown_stream();
            }
            let hooks: Vec<Value> = webhooks_of(&mut data)
                .iter()
                .filter(|w| stream.as_deref().is_none_or(|s| w["MessageStream"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(s))))
                .cloned()
                .collect();
            json_response(json!({"Webhooks": hooks}).to_string())
        }
        ["stats", "outbound", rest @ ..] => stats::respond(&data, &rest.join("/"), query),
        _ => api_error(StatusCode::NOT_FOUND, 0, "Not found (the fake does not serve this path)."),
    }
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
            vec![json!({"Domain": "shop.example", "EmailAddress": "orders@shop.example", "ReplyToEmailAddress": "", "Name": "Shop", "Confirmed": true, "ID": 36735})],
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
    api_error(StatusCode::UNPROCESSABLE_ENTITY, 1226, "The message stream for the provided 'ID' was not found.")
}

/// Validates `count`/`offset` as Postmark does: required, 1..=500, >= 0, sum <= 10,000.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself
pub(crate) fn paging(query: &[(String, String)], error_code: i64) -> Result<(u64, u64), Response> {
    let bad = |m: &str| api_error(StatusCode::UNPROCESSABLE_ENTITY, error_code, m);
    let count: i64 = get(query, "count").and_then(|v| v.parse().ok()).ok_or_else(|| bad("The 'count' parameter is required and must be a number."))?;
    let offset: i64 = get(query, "offset").and_then(|v| v.parse().ok()).ok_or_else(|| bad("The 'offset' parameter is required and must be a number."))?;
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
fn date_range(query: &[(String, String)], error_code: i64) -> Result<Bounds, Response> {
    let mut out = (None, None);
    for (name, bound) in [("fromdate", Bound::From), ("todate", Bound::To)] {
        if let Some(raw) = get(query, name) {
            let t = parse_eastern(raw, bound)
                .ok_or_else(|| api_error(StatusCode::UNPROCESSABLE_ENTITY, error_code, &format!("The '{name}' parameter is not a valid date.")))?;
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
fn search(query: &[(String, String)], error_code: i64) -> Result<Search, Response> {
    let (count, offset) = paging(query, error_code)?;
    let (from, to) = date_range(query, error_code)?;
    Ok(Search { count, offset, from, to })
}

/// The slice of a newest-first list inside `[from, to]` and retention, by binary search.
fn in_range<T>(all: &[T], at: impl Fn(&T) -> DateTime<Utc>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, cutoff: DateTime<Utc>) -> &[T] {
    let now = Utc::now();
    let upper_bound = to.map_or(now, |t| t.min(now));
    let upper = all.partition_point(|x| at(x) > upper_bound);
    let lower_bound = from.map_or(cutoff, |f| f.max(cutoff));
    let lower = all.partition_point(|x| at(x) >= lower_bound);
    if lower > upper { &all[upper..lower] } else { &all[0..0] }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Address<'a> {
    email: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct OutboundItem<'a> {
    #[serde(rename = "Tag", skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(rename = "MessageID")]
    message_id: &'a str,
    #[serde(rename = "MessageStream")]
    message_stream: &'a str,
    #[serde(rename = "To")]
    to: Vec<Address<'a>>,
    #[serde(rename = "Cc")]
    cc: [Address<'a>; 0],
    #[serde(rename = "Bcc")]
    bcc: [Address<'a>; 0],
    #[serde(rename = "Recipients")]
    recipients: Vec<&'a str>,
    #[serde(rename = "ReceivedAt")]
    received_at: String,
    #[serde(rename = "From")]
    from: &'a str,
    #[serde(rename = "Subject")]
    subject: &'a str,
    #[serde(rename = "Attachments")]
    attachments: [&'a str; 0],
    #[serde(rename = "Status")]
    status: &'a str,
    #[serde(rename = "TrackOpens")]
    track_opens: bool,
    #[serde(rename = "TrackLinks")]
    track_links: &'a str,
    #[serde(rename = "Metadata")]
    metadata: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "Sandboxed")]
    sandboxed: bool,
}

fn outbound_item(m: &Message) -> OutboundItem<'_> {
    OutboundItem {
        tag: m.tag.as_deref(),
        message_id: &m.id,
        message_stream: &m.stream,
        to: m.to.iter().map(|(e, n)| Address { email: e, name: n }).collect(),
        cc: [],
        bcc: [],
        recipients: m.to.iter().map(|(e, _)| e.as_str()).collect(),
        received_at: postmark_timestamp(m.received_at),
        from: "\"Shop\" <orders@shop.example>",
        subject: &m.subject,
        attachments: [],
        status: "Sent",
        track_opens: m.track_opens,
        track_links: if m.track_opens { "HtmlAndText" } else { "None" },
        metadata: m.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        sandboxed: false,
    }
}

fn outbound_messages(data: &Data, query: &[(String, String)], cutoff: DateTime<Utc>) -> Response {
    let Search { count, offset, from, to } = match search(query, 700) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    if !stream_exists(data, &stream) {
        return unknown_stream();
    }
    let empty = Vec::new();
    let all = data.messages.get(&stream).unwrap_or(&empty);
    let matching = in_range(all, |m| m.received_at, from, to, cutoff);
    let items: Vec<&str> = matching
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|m| m.rendered.get_or_init(|| serde_json::to_string(&outbound_item(m)).unwrap_or_default()).as_str())
        .collect();
    json_response(format!("{{\"TotalCount\":{},\"Messages\":[{}]}}", matching.len(), items.join(",")))
}

fn event_json(e: &Event) -> Value {
    let (company, os) = match e.platform.as_str() {
        "Mobile" => ("Apple Inc.", json!({"Name": "iOS 17", "Company": "Apple Computer, Inc.", "Family": "iOS"})),
        _ => ("Google", json!({"Name": "Windows 11", "Company": "Microsoft Corporation", "Family": "Windows"})),
    };
    let mut v = json!({
        "RecordType": if e.is_click { "Click" } else { "Open" },
        "MessageID": e.message_id,
        "MessageStream": e.stream,
        "Recipient": e.recipient,
        "ReceivedAt": postmark_timestamp(e.received_at),
        "Platform": e.platform,
        "UserAgent": "Mozilla/5.0",
        "Client": {"Name": format!("{} 126", e.client_family), "Company": company, "Family": e.client_family},
        "OS": os,
        "Geo": if e.read_seconds % 3 == 0 { json!({}) } else { json!({"CountryISOCode": "PT", "Country": "Portugal", "City": "Porto", "IP": "192.0.2.44"}) },
    });
    if let Some(tag) = &e.tag {
        v["Tag"] = json!(tag);
    }
    if e.is_click {
        v["ClickLocation"] = json!(e.location);
        v["OriginalLink"] = json!(e.link);
    } else {
        v["ReadSeconds"] = json!(e.read_seconds);
        v["FirstOpen"] = json!(e.first_open);
    }
    v
}

fn events_list(all: &[Event], query: &[(String, String)], cutoff: DateTime<Utc>, key: &str, date_filters: bool) -> Response {
    let (count, offset) = match paging(query, 700) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (from, to) = if date_filters {
        match date_range(query, 700) {
            Ok(r) => r,
            Err(r) => return r,
        }
    } else {
        (None, None)
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    let recipient = get(query, "recipient");
    let visible = in_range(all, |e| e.received_at, from, to, cutoff);
    // Counted and paged without collecting the matches: a page of a large range (millions of
    // events in a benchmark) then costs no allocation proportional to the range.
    let matches = |e: &&Event| e.stream.eq_ignore_ascii_case(&stream) && recipient.is_none_or(|r| e.recipient.eq_ignore_ascii_case(r));
    let total = visible.iter().filter(matches).count();
    let items: Vec<&str> = visible
        .iter()
        .filter(matches)
        .skip(offset as usize)
        .take(count as usize)
        .map(|e| e.rendered.get_or_init(|| event_json(e).to_string()).as_str())
        .collect();
    json_response(format!("{{\"TotalCount\":{total},\"{key}\":[{}]}}", items.join(",")))
}

fn events_of_message(all: &[Event], id: &str, query: &[(String, String)], cutoff: DateTime<Utc>, key: &str) -> Response {
    let (count, offset) = match paging(query, 700) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let visible = in_range(all, |e| e.received_at, None, None, cutoff);
    let matching: Vec<&Event> = visible.iter().filter(|e| e.message_id.eq_ignore_ascii_case(id)).collect();
    let items: Vec<Value> = matching.iter().skip(offset as usize).take(count as usize).map(|e| event_json(e)).collect();
    json_response(json!({"TotalCount": matching.len(), key: items}).to_string())
}

fn message_details(data: &Data, id: &str, cutoff: DateTime<Utc>) -> Response {
    let Some(m) = data.message(id).filter(|m| m.received_at >= cutoff) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 701, "This message was not found.");
    };
    let now = Utc::now();
    let mut events: Vec<(DateTime<Utc>, Value)> = m
        .to
        .iter()
        .map(|(email, _)| {
            let at = m.received_at + ChronoDuration::seconds(2);
            (at, json!({"Recipient": email, "Type": "Delivered", "ReceivedAt": postmark_timestamp(at),
                "Details": {"DeliveryMessage": "250 2.0.0 OK", "DestinationServer": "mx1.example.net", "DestinationIP": "198.51.100.7"}}))
        })
        .collect();
    for e in data.opens.iter().chain(&data.clicks).filter(|e| e.message_id == m.id && e.received_at <= now) {
        let v = if e.is_click {
            json!({"Recipient": e.recipient, "Type": "LinkClicked", "ReceivedAt": postmark_timestamp(e.received_at),
                "Details": {"Summary": "Clicked link", "Link": e.link, "ClickLocation": e.location}})
        } else {
            json!({"Recipient": e.recipient, "Type": "Opened", "ReceivedAt": postmark_timestamp(e.received_at),
                "Details": {"Summary": format!("Email opened with {}", e.client_family)}})
        };
        events.push((e.received_at, v));
    }
    for b in data.bounces.iter().filter(|b| b.message_id == m.id) {
        events.push((b.bounced_at, json!({"Recipient": b.email, "Type": "Bounced", "ReceivedAt": postmark_timestamp(b.bounced_at),
            "Details": {"Summary": b.kind, "BounceID": b.id.to_string()}})));
    }
    events.sort_by_key(|(t, _)| *t);
    let mut v = serde_json::to_value(outbound_item(m)).unwrap_or(Value::Null);
    v["TextBody"] = json!("Thanks for your order.");
    v["HtmlBody"] = json!("<p>Thanks for your order.</p>");
    v["Body"] = json!("");
    v["MessageEvents"] = Value::Array(events.into_iter().map(|(_, e)| e).collect());
    json_response(v.to_string())
}

fn bounce_name(kind: &str) -> &'static str {
    match kind {
        "HardBounce" => "Hard bounce",
        "SoftBounce" => "Soft bounce",
        "Transient" => "Message delayed",
        "SpamComplaint" => "Spam complaint",
        "SMTPApiError" => "SMTP API error",
        _ => "Unknown",
    }
}

fn bounces(data: &Data, query: &[(String, String)], cutoff: DateTime<Utc>) -> Response {
    let Search { count, offset, from, to } = match search(query, 1000) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    if !stream_exists(data, &stream) {
        return unknown_stream();
    }
    let matching: Vec<_> = in_range(&data.bounces, |b| b.bounced_at, from, to, cutoff)
        .iter()
        .filter(|b| b.stream.eq_ignore_ascii_case(&stream))
        .collect();
    let items: Vec<Value> = matching
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|b| {
            let mut v = json!({
                "RecordType": "Bounce", "ID": b.id, "Type": b.kind, "TypeCode": b.type_code, "Name": bounce_name(&b.kind),
                "MessageID": b.message_id, "ServerID": 118822, "MessageStream": b.stream,
                "Description": "The server was unable to deliver your message.", "Details": "smtp;550 5.1.1 user unknown",
                "Email": b.email, "From": "orders@shop.example", "BouncedAt": postmark_timestamp(b.bounced_at),
                "DumpAvailable": dump_available(b), "Inactive": b.inactive, "CanActivate": b.kind != "SpamComplaint", "Subject": "Your receipt"
            });
            if let Some(t) = &b.tag {
                v["Tag"] = json!(t);
            }
            v
        })
        .collect();
    json_response(json!({"TotalCount": matching.len(), "Bounces": items}).to_string())
}

/// Postmark keeps a bounce's raw source for 30 days (the reference's retention table).
fn dump_available(b: &crate::Bounce) -> bool {
    b.bounced_at >= Utc::now() - ChronoDuration::days(30)
}

fn bounce_dump(data: &Data, id: &str, cutoff: DateTime<Utc>) -> Response {
    let found = id.parse::<i64>().ok().and_then(|id| data.bounces.iter().find(|b| b.id == id && b.bounced_at >= cutoff));
    match found {
        Some(b) if dump_available(b) => json_response(
            json!({"Body": format!("Received: from mx1.example.net\r\nTo: {}\r\nSubject: Undelivered Mail (bounce {})\r\n\r\n550 5.1.1 user unknown", b.email, b.id)}).to_string(),
        ),
        _ => api_error(StatusCode::UNPROCESSABLE_ENTITY, 1001, "The bounce was not found or its dump is no longer available."),
    }
}

/// Three inbound rule triggers per server, paged like the real list (ErrorCode 800).
fn inbound_rules(server: &Server, query: &[(String, String)]) -> Response {
    let (count, offset) = match paging(query, 800) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all: Vec<Value> = ["spammer@example.net", "bulk.example.org", "noreply@lists.example.com"]
        .iter()
        .enumerate()
        .map(|(i, rule)| json!({"ID": server.id * 10 + i as i64, "Rule": rule}))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset as usize).take(count as usize).cloned().collect();
    json_response(json!({"TotalCount": all.len(), "InboundRules": page}).to_string())
}

fn delivery_stats(data: &Data, cutoff: DateTime<Utc>) -> Response {
    let visible: Vec<_> = data.bounces.iter().filter(|b| b.bounced_at >= cutoff).collect();
    let mut by_type: BTreeMap<&str, i64> = BTreeMap::new();
    for b in &visible {
        *by_type.entry(b.kind.as_str()).or_default() += 1;
    }
    let mut items = vec![json!({"Name": "All", "Count": visible.len()})];
    items.extend(by_type.iter().map(|(t, c)| json!({"Type": t, "Name": bounce_name(t), "Count": c})));
    let inactive: std::collections::BTreeSet<&str> = visible.iter().filter(|b| b.inactive).map(|b| b.email.as_str()).collect();
    json_response(json!({"InactiveMails": inactive.len(), "Bounces": items}).to_string())
}

fn suppressions(data: &Data, stream: &str, cutoff: DateTime<Utc>) -> Response {
    if !stream_exists(data, stream) {
        return unknown_stream();
    }
    let mut seen = std::collections::BTreeMap::new();
    for b in data.bounces.iter().rev().filter(|b| b.stream.eq_ignore_ascii_case(stream) && b.inactive && b.bounced_at >= cutoff) {
        seen.entry(b.email.clone()).or_insert_with(|| {
            json!({"EmailAddress": b.email, "SuppressionReason": if b.kind == "SpamComplaint" { "SpamComplaint" } else { "HardBounce" },
                "Origin": "Recipient", "CreatedAt": postmark_timestamp(b.bounced_at)})
        });
    }
    json_response(json!({"Suppressions": seen.into_values().collect::<Vec<_>>()}).to_string())
}

fn inbound(data: &Data, query: &[(String, String)], cutoff: DateTime<Utc>) -> Response {
    let Search { count, offset, from, to } = match search(query, 700) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = get(query, "status").unwrap_or("processed");
    let matching: Vec<_> = in_range(&data.inbound, |i| i.received_at, from, to, cutoff)
        .iter()
        .filter(|i| i.status.eq_ignore_ascii_case(status))
        .collect();
    let items: Vec<Value> = matching
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|i| {
            let local = i.received_at.with_timezone(&chrono_tz::America::New_York);
            json!({
                "From": i.from, "FromName": "", "FromFull": {"Email": i.from, "Name": "", "MailboxHash": ""},
                "To": "\"Support\" <abc123+ticket42@inbound.postmarkapp.com>",
                "ToFull": [{"Email": "abc123+ticket42@inbound.postmarkapp.com", "Name": "Support", "MailboxHash": "ticket42"}],
                "Cc": "", "CcFull": [], "ReplyTo": "", "OriginalRecipient": "abc123+ticket42@inbound.postmarkapp.com",
                "Subject": i.subject, "MessageID": i.id, "Date": local.to_rfc2822(), "MailboxHash": "ticket42",
                "Tag": "", "Status": i.status, "MessageStream": "inbound",
                "Attachments": [{"Name": "photo.jpg", "ContentType": "image/jpeg", "ContentLength": 1024, "ContentID": ""}]
            })
        })
        .collect();
    json_response(json!({"TotalCount": matching.len(), "InboundMessages": items}).to_string())
}

fn templates(server: &Server, query: &[(String, String)]) -> Response {
    let (count, offset) = match paging(query, 1100) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all: Vec<Value> = (0..7)
        .map(|i| {
            let layout = i == 0;
            json!({"TemplateId": server.id * 100 + i, "Name": if layout { "Base layout".to_string() } else { format!("Template {i}") },
                "Alias": if i % 2 == 0 { json!(format!("template-{i}")) } else { Value::Null },
                "Active": i != 6, "TemplateType": if layout { "Layout" } else { "Standard" },
                "LayoutTemplate": if layout { Value::Null } else { json!("base-layout") }})
        })
        .collect();
    let page: Vec<Value> = all.iter().skip(offset as usize).take(count as usize).cloned().collect();
    json_response(json!({"TotalCount": all.len(), "Templates": page}).to_string())
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
