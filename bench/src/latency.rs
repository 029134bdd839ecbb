//! Scenarios bound by the API's latency, not by the machine: the fake answers after a delay
//! (fixed, drawn per request, or with random 429/503s), and the figure is the share of the
//! ideal that `max_concurrency` slots allow. The ideal and the critical-path minimum come from
//! the requests the fake served in the same run (their own delays), so they need no guess.

use super::*;

/// Request slots in the latency scenarios.
pub(super) const SLOTS: usize = 8;

pub(super) struct LatencyScenario {
    pub name: &'static str,
    pub latency: Duration,
    pub latency_max: Duration,
    pub error_rate: f64,
}

pub(super) const SCENARIOS: [LatencyScenario; 3] = [
    LatencyScenario {
        name: "100 ms",
        latency: Duration::from_millis(100),
        latency_max: Duration::ZERO,
        error_rate: 0.0,
    },
    LatencyScenario {
        name: "50-400 ms",
        latency: Duration::from_millis(50),
        latency_max: Duration::from_millis(400),
        error_rate: 0.0,
    },
    LatencyScenario {
        name: "100 ms, 2% 429/503",
        latency: Duration::from_millis(100),
        latency_max: Duration::ZERO,
        error_rate: 0.02,
    },
];

/// One latency scenario's medians.
pub(super) struct LatencyFigures {
    pub name: &'static str,
    pub records: u64,
    /// Records/s against `SLOTS` x 500 / (the mean delay of the answered requests).
    pub share_of_ideal: f64,
    pub records_per_s: f64,
    /// Answered page requests of the two streams against the pages they hold.
    pub requests: f64,
    pub minimum: u64,
    /// Random errors the fake answered (each retried).
    pub errors: f64,
    /// Mean requests in flight at the fake (sum of delays / wall time).
    pub in_flight: f64,
}

/// Messages and opens (as the throughput rows) behind a slow API, synced to Singer (the
/// lightest sink: the API is the bound).
pub(super) fn measure(scenario: &LatencyScenario, records: u64, runs: usize) -> Result<LatencyFigures, String> {
    let config = FakeConfig {
        latency: scenario.latency,
        latency_max: scenario.latency_max,
        error_rate: scenario.error_rate,
        chaos_seed: 7,
        gzip: false,
        ..FakeConfig::default()
    };
    let (fake, m, o) = start_fake_with(records, config);
    let minimum = m.div_ceil(PAGE) + o.div_ceil(PAGE);
    let (mut shares, mut rates, mut requests, mut in_flight, mut errors) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let run = run_once(&fake, &Spec::two_streams("singer", SLOTS))?;
        let mean_delay = run.served.latency_sum_s / run.served.requests.max(1) as f64;
        let ideal = SLOTS as f64 * PAGE as f64 / mean_delay.max(1e-9);
        let rate = (m + o) as f64 / run.seconds;
        shares.push(rate / ideal);
        rates.push(rate);
        requests.push(run.requests as f64);
        in_flight.push(run.served.latency_sum_s / run.seconds);
        errors.push(run.served.errors as f64);
    }
    Ok(LatencyFigures {
        name: scenario.name,
        records: m + o,
        share_of_ideal: median(shares),
        records_per_s: median(rates),
        requests: median(requests),
        minimum,
        in_flight: median(in_flight),
        errors: median(errors),
    })
}

/// A whole default sync (every default stream) into DuckDB at 150 ms a request: wall time
/// against the critical-path minimum, the sum over the served requests of their delay / slots.
pub(super) struct WholeSync {
    pub records: u64,
    pub seconds: f64,
    pub minimum_s: f64,
    pub requests: u64,
    pub peak_rss_mib: f64,
}

pub(super) fn whole_sync(messages_per_day: usize, runs: usize) -> Result<WholeSync, String> {
    let config = FakeConfig {
        latency: Duration::from_millis(150),
        gzip: false,
        ..FakeConfig::default()
    };
    let now = Utc::now();
    let today = now.with_timezone(&chrono_tz::America::New_York).date_naive();
    let mut messages = Vec::new();
    for d in 1..=10 {
        messages.extend(generate::day(100 + d, "outbound", today - ChronoDuration::days(d as i64), messages_per_day));
    }
    let fake = FakePostmark::start(config, default_streams(), messages);
    fake.generate_events(5);
    let truth = fake.visible(0);
    let records = (truth.messages.len() + truth.opens.len() + truth.clicks.len() + truth.bounces.len()) as u64;
    let (mut seconds, mut minimum, mut requests, mut rss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let run = run_once(
            &fake,
            &Spec {
                two_streams: false,
                ..Spec::two_streams("duckdb", SLOTS)
            },
        )?;
        seconds.push(run.seconds);
        minimum.push(run.served.latency_sum_s / SLOTS as f64);
        requests.push(run.served.requests as f64);
        rss.push(run.peak_rss_mib);
    }
    Ok(WholeSync {
        records,
        seconds: median(seconds),
        minimum_s: median(minimum),
        requests: median(requests) as u64,
        peak_rss_mib: median(rss),
    })
}
