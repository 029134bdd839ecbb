//! The retry schedule: the waits between attempts, their cap, and the worst-case time one
//! request can take to fail (which the README states for the defaults).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::Config;

/// The longest wait between two attempts, jitter and `Retry-After` included (the README's cap).
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The first wait after a connection that could not be opened; doubles from there.
const CONNECT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The waits between attempts on 429, 5xx, timeouts and broken bodies: doubling from `initial`,
/// `max_retries` of them, with jitter (which may double a step, up to the cap) when `jitter`.
pub(super) fn retry_backoff(initial: Duration, max_retries: u32, jitter: bool) -> impl Iterator<Item = Duration> {
    let builder = ExponentialBuilder::default()
        .with_min_delay(initial.min(MAX_RETRY_WAIT))
        .with_max_delay(MAX_RETRY_WAIT)
        .with_factor(2.0)
        .with_max_times(max_retries as usize);
    if jitter { builder.with_jitter() } else { builder }.build()
}

/// The waits after connections that could not be opened: 1, 2, 4 ... s, without jitter.
pub(super) fn connect_backoff(max_connect_retries: u32) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(CONNECT_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_WAIT)
        .with_factor(2.0)
        .with_max_times(max_connect_retries as usize)
        .build()
}

/// The wait before the next attempt: the backoff step, or the server's `Retry-After`; neither
/// jitter nor `Retry-After` passes the documented cap.
pub(super) fn retry_wait(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or(backoff).min(MAX_RETRY_WAIT)
}

/// The longest one request can take to fail with these settings, every attempt timing out and
/// every wait at its longest: (the host cannot be reached, the host answers with errors).
pub fn worst_case_to_fail(config: &Config) -> (Duration, Duration) {
    let connect_timeout = config.connect_timeout.min(config.request_timeout);
    let unreachable = connect_timeout * (config.max_connect_retries + 1) + connect_backoff(config.max_connect_retries).sum::<Duration>();
    let jittered: Duration = retry_backoff(config.retry_initial_delay, config.max_retries, false)
        .map(|step| (step * 2).min(MAX_RETRY_WAIT))
        .sum();
    (unreachable, config.request_timeout * (config.max_retries + 1) + jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No wait passes 60 s: not a jittered backoff step (checked over many draws of the
    /// schedule the client uses), not a Retry-After of five minutes.
    #[test]
    fn waits_stay_under_the_cap() {
        for _ in 0..200 {
            let waits: Vec<Duration> = retry_backoff(Duration::from_millis(500), 20, true).collect();
            assert_eq!(waits.len(), 20);
            assert!(waits.iter().all(|w| retry_wait(*w, None) <= MAX_RETRY_WAIT), "{waits:?}");
        }
        assert_eq!(retry_wait(Duration::from_secs(1), Some(Duration::from_secs(300))), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(Duration::from_secs(1), Some(Duration::from_secs(7))), Duration::from_secs(7));
        let connect: Vec<u64> = connect_backoff(3).map(|d| d.as_secs()).collect();
        assert_eq!(connect, [1, 2, 4]);
    }

    /// The README's worst-case times to fail are the defaults' (27 s unreachable, 723 s when
    /// every answer is an error or a timeout).
    #[test]
    fn worst_case_of_the_defaults_is_documented() {
        let loaded = Config::from_map(
            &[
                ("server_token".to_string(), serde_json::json!("t")),
                ("start_date".to_string(), serde_json::json!("2026-01-01")),
            ]
            .into(),
            None,
            chrono::Utc::now(),
        );
        let Ok(loaded) = loaded else { panic!("default config") };
        let (unreachable, answered) = worst_case_to_fail(&loaded.config);
        let readme = include_str!("../../README.md");
        let text = format!("{} s when the host cannot be reached, {} s", unreachable.as_secs(), answered.as_secs());
        assert!(readme.contains(&text), "README should say: {text}");
    }
}
