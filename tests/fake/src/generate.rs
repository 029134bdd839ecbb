//! Reproducible data sets: messages spread over US-Eastern days, or packed into bursts.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::{Bounce, Event, Inbound, Message, rng, uuid};

/// The UTC instants where a New York calendar day starts and ends (23 or 25 hours on DST days).
pub fn eastern_day(date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |d: NaiveDate| {
        New_York
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .expect("midnight exists in New York")
            .with_timezone(&Utc)
    };
    (start(date), start(date + Duration::days(1)))
}

/// One message at `t`, with the field variety real data has: absent, empty and set tags;
/// empty display names; false booleans; empty and filled metadata.
pub fn message(rng: &mut StdRng, stream: &str, t: DateTime<Utc>) -> Message {
    let id = uuid(rng);
    let tag = match rng.random_range(0..10) {
        0 | 1 => None,
        2 => Some(String::new()),
        3..=5 => Some("receipt".to_string()),
        6 | 7 => Some("password-reset".to_string()),
        _ => Some("welcome".to_string()),
    };
    let recipients = rng.random_range(1..=2);
    let to = (0..recipients)
        .map(|i| {
            let n: u32 = rng.random_range(0..100_000);
            let name = if rng.random_bool(0.3) { String::new() } else { format!("Customer {n}") };
            (format!("user{n}.{i}@example.net"), name)
        })
        .collect();
    let metadata = if rng.random_bool(0.5) {
        Vec::new()
    } else {
        vec![("order_id".to_string(), rng.random_range(1000..99_999).to_string())]
    };
    Message {
        id,
        stream: stream.to_string(),
        received_at: t,
        tag,
        to,
        subject: if rng.random_bool(0.05) { String::new() } else { "Your receipt".to_string() },
        track_opens: rng.random_bool(0.7),
        metadata,
        rendered: Default::default(),
    }
}

/// `count` messages at random instants (100 ns resolution) in `[from, to)`.
pub fn between(seed: u64, stream: &str, from: DateTime<Utc>, to: DateTime<Utc>, count: usize) -> Vec<Message> {
    let mut rng = rng(seed);
    let span = (to - from).num_nanoseconds().unwrap_or(i64::MAX).max(1) / 100;
    (0..count)
        .map(|_| {
            let t = from + Duration::nanoseconds(rng.random_range(0..span) * 100);
            message(&mut rng, stream, t)
        })
        .collect()
}

/// `count` messages spread over the New York calendar day `date`.
pub fn day(seed: u64, stream: &str, date: NaiveDate, count: usize) -> Vec<Message> {
    let (from, to) = eastern_day(date);
    between(seed, stream, from, to, count)
}

const CLIENTS: &[&str] = &["Gmail", "Apple Mail", "Outlook", "Thunderbird", "Yahoo Mail"];
const BROWSERS: &[&str] = &["Google Chrome", "Safari", "Firefox", "Microsoft Edge"];
const PLATFORMS: &[&str] = &["Desktop", "Mobile", "WebMail", "Unknown"];

/// Opens, clicks and bounces for messages: some opens and clicks come days after the send
/// (late events), some recipients open several times; about 3% of recipients bounce. Events
/// that would lie in the future are left out, so ground truth does not change while a test runs
/// (tests add late events explicitly).
pub fn events(seed: u64, messages: &[Message]) -> (Vec<Event>, Vec<Event>, Vec<Bounce>) {
    events_until(seed, messages, Utc::now())
}

/// [`events`] as of the instant `now` (a fake whose clock differs from the host's).
pub fn events_until(seed: u64, messages: &[Message], now: DateTime<Utc>) -> (Vec<Event>, Vec<Event>, Vec<Bounce>) {
    let (mut opens, mut clicks, mut bounces) = events_at_any_time(seed, messages);
    let now = now - Duration::seconds(1);
    opens.retain(|e| e.received_at <= now);
    clicks.retain(|e| e.received_at <= now);
    bounces.retain(|b| b.bounced_at <= now);
    (opens, clicks, bounces)
}

fn events_at_any_time(seed: u64, messages: &[Message]) -> (Vec<Event>, Vec<Event>, Vec<Bounce>) {
    let mut rng = rng(seed);
    let (mut opens, mut clicks, mut bounces) = (Vec::new(), Vec::new(), Vec::new());
    let mut bounce_id = 4_000_000_000 + (seed as i64) * 1_000_000;
    for m in messages {
        for (email, _) in &m.to {
            if rng.random_bool(0.03) {
                let kinds = [
                    ("HardBounce", 1, true),
                    ("SoftBounce", 4096, false),
                    ("Transient", 2, false),
                    ("SpamComplaint", 100001, true),
                    ("SMTPApiError", 100007, false),
                ];
                let (kind, code, inactive) = kinds[rng.random_range(0..kinds.len())];
                bounce_id += 1;
                bounces.push(Bounce {
                    id: bounce_id,
                    message_id: m.id.clone(),
                    stream: m.stream.clone(),
                    kind: kind.to_string(),
                    type_code: code,
                    email: email.clone(),
                    bounced_at: m.received_at + Duration::seconds(rng.random_range(5..3600)),
                    tag: m.tag.clone(),
                    inactive,
                });
                continue;
            }
            if !m.track_opens || !rng.random_bool(0.45) {
                continue;
            }
            let opens_here = rng.random_range(1..=3);
            for n in 0..opens_here {
                // Mostly within hours, sometimes days later.
                let delay = if rng.random_bool(0.2) {
                    Duration::hours(rng.random_range(24..24 * 9))
                } else {
                    Duration::seconds(rng.random_range(30..6 * 3600))
                };
                let at = m.received_at + delay + Duration::nanoseconds(rng.random_range(0..10_000_000) * 100);
                opens.push(event(&mut rng, m, email, at, n == 0, false));
                if n == 0 && rng.random_bool(0.4) {
                    let click_at = at + Duration::seconds(rng.random_range(1..600));
                    clicks.push(event(&mut rng, m, email, click_at, false, true));
                }
            }
        }
    }
    (opens, clicks, bounces)
}

/// One open or click of `m` by `recipient` at `at`.
pub fn event(rng: &mut StdRng, m: &Message, recipient: &str, at: DateTime<Utc>, first_open: bool, is_click: bool) -> Event {
    let family = if is_click {
        BROWSERS[rng.random_range(0..BROWSERS.len())]
    } else {
        CLIENTS[rng.random_range(0..CLIENTS.len())]
    };
    let platforms = if is_click { &PLATFORMS[..2] } else { PLATFORMS };
    Event {
        message_id: m.id.clone(),
        stream: m.stream.clone(),
        recipient: recipient.to_string(),
        received_at: at,
        tag: m.tag.clone(),
        platform: platforms[rng.random_range(0..platforms.len())].to_string(),
        client_family: family.to_string(),
        read_seconds: rng.random_range(0..40),
        first_open,
        is_click,
        link: format!("https://shop.example/p/{}", rng.random_range(1..4)),
        location: if rng.random_bool(0.8) { "HTML".to_string() } else { "Text".to_string() },
        rendered: Default::default(),
    }
}

/// `count` inbound messages in `[from, to)`, most processed, some blocked or failed.
pub fn inbound(seed: u64, from: DateTime<Utc>, to: DateTime<Utc>, count: usize) -> Vec<Inbound> {
    let mut rng = rng(seed);
    let span = (to - from).num_seconds().max(1);
    (0..count)
        .map(|i| Inbound {
            id: uuid(&mut rng),
            received_at: from + Duration::seconds(rng.random_range(0..span)),
            from: format!("customer{i}@example.org"),
            subject: format!("Question {i}"),
            status: match rng.random_range(0..10) {
                0 => "Blocked",
                1 => "Failed",
                _ => "Processed",
            }
            .to_string(),
        })
        .collect()
}
