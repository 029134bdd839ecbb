//! Bounces and their dumps, inbound messages and rules, delivery stats, suppressions, templates.

use super::*;

pub(super) fn bounce_name(kind: &str) -> &'static str {
    match kind {
        "HardBounce" => "Hard bounce",
        "SoftBounce" => "Soft bounce",
        "Transient" => "Message delayed",
        "SpamComplaint" => "Spam complaint",
        "SMTPApiError" => "SMTP API error",
        _ => "Unknown",
    }
}

pub(super) fn bounces(data: &Data, query: &[(String, String)], span: Span) -> Response {
    let Search { count, offset, from, to } = match search(query, 1000, span.reading) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    if !stream_exists(data, &stream) {
        return unknown_stream();
    }
    let matching: Vec<_> = in_range(&data.bounces, |b| b.bounced_at, from, to, span)
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
                "DumpAvailable": dump_available(b, span.now), "Inactive": b.inactive, "CanActivate": b.kind != "SpamComplaint", "Subject": "Your receipt"
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
pub(super) fn dump_available(b: &crate::Bounce, now: DateTime<Utc>) -> bool {
    b.bounced_at >= now - ChronoDuration::days(30)
}

pub(super) fn bounce_dump(data: &Data, id: &str, span: Span) -> Response {
    let found = id
        .parse::<i64>()
        .ok()
        .and_then(|id| data.bounces.iter().find(|b| b.id == id && b.bounced_at >= span.cutoff));
    match found {
        Some(b) if dump_available(b, span.now) => json_response(
            json!({"Body": format!("Received: from mx1.example.net\r\nTo: {}\r\nSubject: Undelivered Mail (bounce {})\r\n\r\n550 5.1.1 user unknown", b.email, b.id)}).to_string(),
        ),
        _ => api_error(StatusCode::UNPROCESSABLE_ENTITY, 1001, "The bounce was not found or its dump is no longer available."),
    }
}

/// Three inbound rule triggers per server, paged like the real list (ErrorCode 800).
pub(super) fn inbound_rules(server: &Server, query: &[(String, String)]) -> Response {
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

pub(super) fn delivery_stats(data: &Data, span: Span) -> Response {
    let visible: Vec<_> = data.bounces.iter().filter(|b| b.bounced_at >= span.cutoff).collect();
    let mut by_type: BTreeMap<&str, i64> = BTreeMap::new();
    for b in &visible {
        *by_type.entry(b.kind.as_str()).or_default() += 1;
    }
    let mut items = vec![json!({"Name": "All", "Count": visible.len()})];
    items.extend(by_type.iter().map(|(t, c)| json!({"Type": t, "Name": bounce_name(t), "Count": c})));
    let inactive: std::collections::BTreeSet<&str> = visible.iter().filter(|b| b.inactive).map(|b| b.email.as_str()).collect();
    json_response(json!({"InactiveMails": inactive.len(), "Bounces": items}).to_string())
}

pub(super) fn suppressions(data: &Data, stream: &str, span: Span) -> Response {
    if !stream_exists(data, stream) {
        return unknown_stream();
    }
    let mut seen = std::collections::BTreeMap::new();
    for b in data
        .bounces
        .iter()
        .rev()
        .filter(|b| b.stream.eq_ignore_ascii_case(stream) && b.inactive && b.bounced_at >= span.cutoff)
    {
        seen.entry(b.email.clone()).or_insert_with(|| {
            json!({"EmailAddress": b.email, "SuppressionReason": if b.kind == "SpamComplaint" { "SpamComplaint" } else { "HardBounce" },
                "Origin": "Recipient", "CreatedAt": postmark_timestamp(b.bounced_at)})
        });
    }
    json_response(json!({"Suppressions": seen.into_values().collect::<Vec<_>>()}).to_string())
}

pub(super) fn inbound(data: &Data, query: &[(String, String)], span: Span) -> Response {
    let Search { count, offset, from, to } = match search(query, 700, span.reading) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = get(query, "status").unwrap_or("processed");
    let matching: Vec<_> = in_range(&data.inbound, |i| i.received_at, from, to, span)
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

pub(super) fn templates(server: &Server, query: &[(String, String)]) -> Response {
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
