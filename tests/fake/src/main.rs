//! Runs the fake Postmark server on loopback with a generated data set, for trying postmark-elt
//! by hand and for benchmarks. Loopback only: it is a test tool, not a service.
//!
//! fake-postmark [--listen 127.0.0.1:8025] [--days 14] [--per-day 1000] [--hot-day 25000]
//!               [--seed 1] [--token fake-server-token-0000] [--latency-ms 0]

use std::time::Duration;

use chrono::Utc;
use fake_postmark::{FakeConfig, FakePostmark, default_streams, generate};

fn main() {
    let mut listen = "127.0.0.1:8025".to_string();
    let mut days: i64 = 14;
    let mut per_day: usize = 1000;
    let mut hot_day: usize = 25_000;
    let mut seed: u64 = 1;
    let mut config = FakeConfig::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = || value.parse::<u64>().unwrap_or_else(|_| usage(&args[i]));
        match args[i].as_str() {
            "--listen" => listen = value.clone(),
            "--days" => days = number() as i64,
            "--per-day" => per_day = number() as usize,
            "--hot-day" => hot_day = number() as usize,
            "--seed" => seed = number(),
            "--token" => config.server_token = value.clone(),
            "--latency-ms" => config.latency = Duration::from_millis(number()),
            _ => usage(&args[i]),
        }
        i += 2;
    }
    if !listen.starts_with("127.") && !listen.starts_with("localhost") && !listen.starts_with("[::1]") {
        eprintln!("fake-postmark listens on loopback only (127.0.0.0/8 or [::1])");
        std::process::exit(2);
    }
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=days {
        let date = today - chrono::Duration::days(d);
        let count = if d == 2 { hot_day } else { per_day };
        messages.extend(generate::day(seed + d as u64, "outbound", date, count));
        messages.extend(generate::day(seed + 1000 + d as u64, "broadcast", date, per_day / 10));
    }
    let total = messages.len();
    let fake = FakePostmark::start_on(&listen, config, default_streams(), messages);
    fake.generate_events(seed);
    let now = Utc::now();
    fake.with_data(0, |d| d.add_inbound(generate::inbound(seed, now - chrono::Duration::days(days), now, (per_day / 20).max(1) * days as usize)));
    println!("fake Postmark on {} with {total} messages; server token: {}", fake.base_url(), fake.token());
    fake.wait();
}

fn usage(arg: &str) -> ! {
    eprintln!("fake-postmark: bad argument {arg}\nusage: fake-postmark [--listen 127.0.0.1:8025] [--days 14] [--per-day 1000] [--hot-day 25000] [--seed 1] [--token T] [--latency-ms 0]");
    std::process::exit(2)
}
