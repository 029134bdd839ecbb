//! Reproducible data sets: messages spread over US-Eastern days, or packed into bursts.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::{Message, rng, uuid};

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
