//! Runs the fake Postmark server on loopback with a generated data set, for trying postmark-elt
//! by hand and for benchmarks. Loopback only: it is a test tool, not a service.

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use fake_postmark::{FakeConfig, FakePostmark, default_streams, generate};

/// A fake Postmark API on loopback, serving generated mail (for tests, benchmarks and demos).
#[derive(Parser)]
#[command(name = "fake-postmark", version)]
struct Args {
    /// Address to listen on; loopback only (127.0.0.0/8, localhost or [::1]).
    #[arg(long, default_value = "127.0.0.1:8025")]
    listen: String,
    /// Days of mail before today.
    #[arg(long, default_value_t = 14)]
    days: i64,
    /// Outbound messages per day (broadcasts get a tenth as many).
    #[arg(long, default_value_t = 1000)]
    per_day: usize,
    /// Messages of the day before yesterday, above the 10,000-row paging limit by default.
    #[arg(long, default_value_t = 25_000)]
    hot_day: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server token the fake accepts.
    #[arg(long, default_value = "fake-server-token-0000")]
    token: String,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

fn main() {
    let args = Args::parse();
    if !args.listen.starts_with("127.") && !args.listen.starts_with("localhost") && !args.listen.starts_with("[::1]") {
        eprintln!("fake-postmark listens on loopback only (127.0.0.0/8 or [::1])");
        std::process::exit(2);
    }
    let config = FakeConfig {
        server_token: args.token.clone(),
        latency: Duration::from_millis(args.latency_ms),
        ..FakeConfig::default()
    };
    let today = Utc::now().with_timezone(&chrono_tz::America::New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=args.days {
        let date = today - chrono::Duration::days(d);
        let count = if d == 2 { args.hot_day } else { args.per_day };
        messages.extend(generate::day(args.seed + d as u64, "outbound", date, count));
        messages.extend(generate::day(args.seed + 1000 + d as u64, "broadcast", date, args.per_day / 10));
    }
    let total = messages.len();
    let fake = FakePostmark::start_on(&args.listen, config, default_streams(), messages);
    fake.generate_events(args.seed);
    let now = Utc::now();
    let inbound = (args.per_day / 20).max(1) * args.days as usize;
    fake.with_data(0, |d| {
        d.add_inbound(generate::inbound(args.seed, now - chrono::Duration::days(args.days), now, inbound))
    });
    println!("fake Postmark on {} with {total} messages; server token: {}", fake.base_url(), fake.token());
    fake.wait();
}
