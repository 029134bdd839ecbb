//! Postmark's clock, as its responses tell it: the `Date` header of every answer.
//!
//! A run's reads end at Postmark's "now", not the host's: a host clock ahead of Postmark's
//! would otherwise move bookmarks past mail Postmark has not yet received (and skip it for
//! ever). `Date` has a resolution of one second and is written before the answer travels, so
//! `Date - host time at arrival` is a lower bound of how far Postmark's clock is ahead of ours;
//! the largest such bound seen is kept, and [`ApiClock::now`] never runs ahead of Postmark.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Default)]
pub struct ApiClock {
    /// The tightest lower bound of (Postmark's clock - the host's) seen so far.
    offset: Mutex<Option<Duration>>,
}

impl ApiClock {
    /// Takes one answer's `Date` header, received at `host_now`. An unreadable header is ignored
    /// (a proxy may rewrite it); if none is ever readable, [`ApiClock::now`] says so.
    pub fn observe(&self, date_header: Option<&str>, host_now: DateTime<Utc>) {
        let Some(date) = date_header.and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok()) else {
            return;
        };
        let bound = date.with_timezone(&Utc) - host_now;
        if let Ok(mut offset) = self.offset.lock() {
            *offset = Some(offset.map_or(bound, |o| o.max(bound)));
        }
    }

    /// How far Postmark's clock is ahead of the host's (negative: behind), if an answer told.
    pub fn offset(&self) -> Option<Duration> {
        self.offset.lock().ok().and_then(|o| *o)
    }

    /// Postmark's time now, never later than Postmark's own clock; `None` before any answer
    /// with a readable `Date`.
    pub fn now(&self, host_now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.offset().map(|o| host_now + o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset is the largest lower bound: Date (whole seconds) minus the arrival time.
    #[test]
    fn keeps_the_tightest_lower_bound() {
        let clock = ApiClock::default();
        let host = DateTime::parse_from_rfc3339("2026-12-01T12:00:00.700Z").map(|t| t.with_timezone(&Utc));
        let Ok(host) = host else { panic!("test instant") };
        assert_eq!(clock.now(host), None);
        clock.observe(Some("Tue, 01 Dec 2026 09:00:00 GMT"), host);
        assert_eq!(clock.offset(), Some(Duration::milliseconds(-(3 * 3600 * 1000 + 700))));
        clock.observe(Some("Tue, 01 Dec 2026 09:00:01 GMT"), host + Duration::milliseconds(400));
        assert_eq!(clock.offset(), Some(Duration::milliseconds(-(3 * 3600 * 1000 + 100))));
        // An older bound and a header that is not a date change nothing.
        clock.observe(Some("Tue, 01 Dec 2026 08:59:00 GMT"), host);
        clock.observe(Some("yesterday"), host);
        assert_eq!(clock.now(host), Some(host - Duration::milliseconds(3 * 3600 * 1000 + 100)));
    }
}
