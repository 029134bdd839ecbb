//! Runs the fake Postmark server on loopback with a generated data set, for trying postmark-elt
//! by hand and for benchmarks. Loopback only: it is a test tool, not a service.

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use fake_postmark::{DateReading, FakeConfig, FakePostmark, default_streams, generate};

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
    /// With it above --latency-ms, each answer's delay is drawn from latency-ms..=latency-max-ms.
    #[arg(long, default_value_t = 0)]
    latency_max_ms: u64,
    /// Share of requests (0..1) answered with a random 429 or 503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// The fake's clock minus the host's, in minutes (its data, date filters and `Date` header).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_minutes: i64,
    /// Late indexing: messages show in search up to this many seconds after `ReceivedAt`.
    #[arg(long, default_value_t = 0)]
    index_delay_seconds: i64,
    /// New messages arriving before each outbound search answer.
    #[arg(long, default_value_t = 0)]
    arrivals_per_search: usize,
    /// How `fromdate`/`todate` are read: eastern (the reference), eastern-whole-second,
    /// fixed-utc-minus-5, bare-date-whole-day.
    #[arg(long, default_value = "eastern")]
    date_reading: String,
}

fn main() {
    let args = Args::parse();
    if !args.listen.starts_with("127.") && !args.listen.starts_with("localhost") && !args.listen.starts_with("[::1]") {
        eprintln!("fake-postmark listens on loopback only (127.0.0.0/8 or [::1])");
        std::process::exit(2);
    }
    let date_reading = match args.date_reading.as_str() {
        "eastern" => DateReading::Eastern,
        "eastern-whole-second" => DateReading::EasternWholeSecond,
        "fixed-utc-minus-5" => DateReading::FixedUtcMinus5,
        "bare-date-whole-day" => DateReading::BareDateWholeDay,
        other => {
            eprintln!("unknown --date-reading `{other}`: use eastern, eastern-whole-second, fixed-utc-minus-5 or bare-date-whole-day");
            std::process::exit(2);
        }
    };
    let config = FakeConfig {
        server_token: args.token.clone(),
        latency: Duration::from_millis(args.latency_ms),
        latency_max: Duration::from_millis(args.latency_max_ms),
        error_rate: args.error_rate,
        chaos_seed: args.seed,
        clock_offset: chrono::Duration::minutes(args.clock_offset_minutes),
        index_delay: chrono::Duration::seconds(args.index_delay_seconds),
        arrivals_per_search: args.arrivals_per_search,
        arrival_seed: args.seed,
        date_reading,
        ..FakeConfig::default()
    };
    let fake_now = Utc::now() + config.clock_offset;
    let today = fake_now.with_timezone(&chrono_tz::America::New_York).date_naive();
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
    let now = fake.now();
    let inbound = (args.per_day / 20).max(1) * args.days as usize;
    fake.with_data(0, |d| {
        d.add_inbound(generate::inbound(args.seed, now - chrono::Duration::days(args.days), now, inbound))
    });
    println!("fake Postmark on {} with {total} messages; server token: {}", fake.base_url(), fake.token());
    fake.wait();
}
