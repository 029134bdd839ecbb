//! Outbound messages, their opens and clicks, and a message's details.

use super::*;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Address<'a> {
    email: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
pub(super) struct OutboundItem<'a> {
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

pub(super) fn outbound_item(m: &Message) -> OutboundItem<'_> {
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

pub(super) fn outbound_messages(data: &Data, query: &[(String, String)], span: Span) -> Response {
    let Search { count, offset, from, to } = match search(query, 700, span.reading) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    if !stream_exists(data, &stream) {
        return unknown_stream();
    }
    let empty = Vec::new();
    let all = data.messages.get(&stream).unwrap_or(&empty);
    let in_window = in_range(all, |m| m.received_at, from, to, span);
    // Late indexing: a message received inside the window may not be searchable yet.
    let matching: Vec<&Message> = if span.index_delay > ChronoDuration::zero() {
        in_window.iter().filter(|m| m.searchable_at(span.index_delay) <= span.now).collect()
    } else {
        in_window.iter().collect()
    };
    let items: Vec<&str> = matching
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|m| m.rendered.get_or_init(|| serde_json::to_string(&outbound_item(m)).unwrap_or_default()).as_str())
        .collect();
    json_response(format!("{{\"TotalCount\":{},\"Messages\":[{}]}}", matching.len(), items.join(",")))
}

pub(super) fn event_json(e: &Event) -> Value {
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

pub(super) fn events_list(all: &[Event], query: &[(String, String)], span: Span, key: &str, date_filters: bool) -> Response {
    let (count, offset) = match paging(query, 700) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (from, to) = if date_filters {
        match date_range(query, 700, span.reading) {
            Ok(r) => r,
            Err(r) => return r,
        }
    } else {
        (None, None)
    };
    let stream = get(query, "messagestream").unwrap_or("outbound").to_ascii_lowercase();
    let recipient = get(query, "recipient");
    let visible = in_range(all, |e| e.received_at, from, to, span);
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

pub(super) fn events_of_message(all: &[Event], id: &str, query: &[(String, String)], span: Span, key: &str) -> Response {
    let (count, offset) = match paging(query, 700) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let visible = in_range(all, |e| e.received_at, None, None, span);
    let matching: Vec<&Event> = visible.iter().filter(|e| e.message_id.eq_ignore_ascii_case(id)).collect();
    let items: Vec<Value> = matching.iter().skip(offset as usize).take(count as usize).map(|e| event_json(e)).collect();
    json_response(json!({"TotalCount": matching.len(), key: items}).to_string())
}

pub(super) fn message_details(data: &Data, id: &str, span: Span) -> Response {
    let Some(m) = data.message(id).filter(|m| m.received_at >= span.cutoff) else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, 701, "This message was not found.");
    };
    let now = span.now;
    let mut events: Vec<(DateTime<Utc>, Value)> =
        m.to.iter()
            .map(|(email, _)| {
                let at = m.received_at + ChronoDuration::seconds(2);
                (
                    at,
                    json!({"Recipient": email, "Type": "Delivered", "ReceivedAt": postmark_timestamp(at),
                "Details": {"DeliveryMessage": "250 2.0.0 OK", "DestinationServer": "mx1.example.net", "DestinationIP": "198.51.100.7"}}),
                )
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
        events.push((
            b.bounced_at,
            json!({"Recipient": b.email, "Type": "Bounced", "ReceivedAt": postmark_timestamp(b.bounced_at),
            "Details": {"Summary": b.kind, "BounceID": b.id.to_string()}}),
        ));
    }
    events.sort_by_key(|(t, _)| *t);
    let mut v = serde_json::to_value(outbound_item(m)).unwrap_or(Value::Null);
    v["TextBody"] = json!("Thanks for your order.");
    v["HtmlBody"] = json!("<p>Thanks for your order.</p>");
    v["Body"] = json!("");
    v["MessageEvents"] = Value::Array(events.into_iter().map(|(_, e)| e).collect());
    json_response(v.to_string())
}
