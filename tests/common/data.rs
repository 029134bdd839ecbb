//! The data set of the stream tests: a few busy days on two message streams, events, inbound
//! mail; and how the tests spell keys and instants.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::America::New_York;
use fake_postmark::{Event, FakeConfig, generate};
use serde_json::{Value, json};

use super::{Env, eastern_days_ago};

pub fn busy_env(config: FakeConfig) -> Env {
    let mut messages = Vec::new();
    for d in 1..=3 {
        let date = Utc::now().with_timezone(&New_York).date_naive() - Duration::days(d);
        messages.extend(generate::day(d as u64, "outbound", date, 1_500));
        messages.extend(generate::day(50 + d as u64, "broadcast", date, 300));
    }
    let env = Env::with_config(config, messages);
    env.fake.generate_events(7);
    let now = Utc::now();
    env.fake
        .with_data(0, |d| d.add_inbound(generate::inbound(3, now - Duration::days(3), now, 400)));
    env
}

/// A catalog with every stream selected, message_events included.
pub fn all_streams_catalog(env: &Env) -> String {
    let cfg = env.config(eastern_days_ago(4), json!({}));
    let out = env.run(&["discover", "--config", cfg.to_str().unwrap()]);
    let mut cat: Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in cat["streams"].as_array_mut().unwrap() {
        s["metadata"][0]["metadata"]["selected"] = json!(true);
    }
    std::fs::write(env.path("all.json"), cat.to_string()).unwrap();
    env.path("all.json").to_str().unwrap().to_string()
}

pub fn ts(t: DateTime<Utc>) -> String {
    // DuckDB renders TIMESTAMP as `YYYY-MM-DD HH:MM:SS.ffffff` (trailing zeros of the fraction dropped).
    let s = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn event_keys(events: &[Event], with_link: bool) -> HashSet<String> {
    events
        .iter()
        .map(|e| {
            let at = ts(e.received_at.with_timezone(&Utc).trunc_micros());
            if with_link {
                format!("{}|{}|{}|{at}", e.message_id, e.recipient, e.link)
            } else {
                format!("{}|{}|{at}", e.message_id, e.recipient)
            }
        })
        .collect()
}

pub trait TruncMicros {
    fn trunc_micros(self) -> Self;
}

impl TruncMicros for DateTime<Utc> {
    fn trunc_micros(self) -> Self {
        DateTime::from_timestamp_micros(self.timestamp_micros()).unwrap()
    }
}
