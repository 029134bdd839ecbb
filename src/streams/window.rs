//! Time windows for Postmark's date filters.
//!
//! Postmark reads `fromdate`/`todate` as US-Eastern wall-clock times (America/New_York, with
//! daylight saving), inclusive at both ends, to the second. Windows are kept as UTC instants and
//! turned into wall-clock text only for the query. Two rules keep them exact:
//!
//! - a bound is never placed where its wall-clock text is ambiguous (the repeated hour when
//!   clocks fall back), because the API could read it as either instant: such bounds are moved
//!   outward (for a range) or past the repeated hour (for a split point);
//! - neighbouring windows share their boundary second (both bounds are inclusive and records
//!   carry fractions of a second), so nothing falls between them; rows read twice are dropped on
//!   the primary key.

use chrono::{DateTime, Duration, DurationRound, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;

/// The format Postmark documents for date-time filters.
const QUERY_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive, whole second, unambiguous in New York.
    pub from: DateTime<Utc>,
    /// Inclusive, whole second, unambiguous in New York.
    pub to: DateTime<Utc>,
}

pub fn eastern_wall_clock(t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&New_York).naive_local()
}

/// True when the instant's New York wall-clock time also names another instant.
pub fn is_ambiguous(t: DateTime<Utc>) -> bool {
    matches!(New_York.from_local_datetime(&eastern_wall_clock(t)), LocalResult::Ambiguous(..))
}

pub fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_second(t);
    if f == t { f } else { f + Duration::seconds(1) }
}

/// The latest whole second at or before `t` whose wall-clock text is unambiguous: the last
/// second before the repeated hour when `t` is inside it.
pub fn floor_unambiguous(t: DateTime<Utc>) -> DateTime<Utc> {
    let mut t = floor_second(t);
    if !is_ambiguous(t) {
        return t;
    }
    // The repeated span is two real hours: at most ~120 minute steps, then ~60 second steps.
    while is_ambiguous(t) {
        t -= Duration::minutes(1);
    }
    while !is_ambiguous(t + Duration::seconds(1)) {
        t += Duration::seconds(1);
    }
    t
}

/// The earliest whole second at or after `t` whose wall-clock text is unambiguous: the first
/// second after the repeated hour when `t` is inside it.
pub fn ceil_unambiguous(t: DateTime<Utc>) -> DateTime<Utc> {
    let mut t = ceil_second(t);
    if !is_ambiguous(t) {
        return t;
    }
    while is_ambiguous(t) {
        t += Duration::minutes(1);
    }
    while !is_ambiguous(t - Duration::seconds(1)) {
        t -= Duration::seconds(1);
    }
    t
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window {from} .. {to} (US-Eastern {from_wall} .. {to_wall}) cannot be split further")]
pub struct CannotSplit {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub from_wall: String,
    pub to_wall: String,
}

impl Window {
    /// The window covering `[start, end]`, widened to whole unambiguous seconds.
    pub fn covering(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
        Window {
            from: floor_unambiguous(start),
            to: ceil_unambiguous(end.max(start)),
        }
    }

    /// `(fromdate, todate)` as Postmark expects them.
    pub fn query_bounds(&self) -> (String, String) {
        (
            eastern_wall_clock(self.from).format(QUERY_FORMAT).to_string(),
            eastern_wall_clock(self.to).format(QUERY_FORMAT).to_string(),
        )
    }

    /// Splits a window whose query matched `total` rows into enough parts that each should
    /// hold at most `target` (aiming at three quarters of it, so uneven traffic rarely needs a
    /// second split). A part that still matches too many rows is split again by the caller.
    pub fn split_for_total(&self, total: u64, target: u64) -> Result<Vec<Window>, CannotSplit> {
        let parts = total.div_ceil((target * 3 / 4).max(1)).clamp(2, 1_000) as u32;
        self.split(parts)
    }

    /// Splits into about `parts` windows of equal length, oldest first. Neighbours share their
    /// boundary second. Split points avoid ambiguous wall-clock times.
    pub fn split(&self, parts: u32) -> Result<Vec<Window>, CannotSplit> {
        let total = (self.to - self.from).num_seconds();
        let parts = i64::from(parts.max(2)).min(total.max(1));
        let mut bounds = vec![self.from];
        for i in 1..parts {
            let ideal = self.from + Duration::seconds(total * i / parts);
            let last = *bounds.last().unwrap_or(&self.from);
            // Past the repeated hour if that stays inside the window, else before it.
            let cut = [ceil_unambiguous(ideal), floor_unambiguous(ideal)]
                .into_iter()
                .find(|c| *c > last && *c < self.to);
            if let Some(cut) = cut {
                bounds.push(cut);
            }
        }
        bounds.push(self.to);
        if bounds.len() < 3 {
            let (from_wall, to_wall) = self.query_bounds();
            return Err(CannotSplit {
                from: self.from,
                to: self.to,
                from_wall,
                to_wall,
            });
        }
        Ok(bounds.windows(2).map(|b| Window { from: b[0], to: b[1] }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Query text is New York wall-clock time, with daylight saving.
    #[test]
    fn query_bounds_follow_daylight_saving() {
        let summer = Window::covering(utc("2026-07-01T04:00:00Z"), utc("2026-07-02T03:59:59Z"));
        assert_eq!(summer.query_bounds(), ("2026-07-01T00:00:00".into(), "2026-07-01T23:59:59".into()));
        let winter = Window::covering(utc("2026-01-15T05:00:00Z"), utc("2026-01-15T05:00:00.2Z"));
        assert_eq!(winter.query_bounds(), ("2026-01-15T00:00:00".into(), "2026-01-15T00:00:01".into()));
    }

    /// On 2026-11-01 01:00-01:59 happens twice; bounds there are moved out of it.
    #[test]
    fn bounds_never_land_in_the_repeated_hour() {
        // 05:30Z is 01:30 EDT (first pass), 06:30Z is 01:30 EST (second pass).
        assert!(is_ambiguous(utc("2026-11-01T05:30:00Z")));
        assert!(is_ambiguous(utc("2026-11-01T06:30:00Z")));
        let w = Window::covering(utc("2026-11-01T06:30:00Z"), utc("2026-11-01T05:30:00Z"));
        assert!(!is_ambiguous(w.from) && !is_ambiguous(w.to));
        assert!(w.from <= utc("2026-11-01T05:00:00Z"));
        assert!(w.to >= utc("2026-11-01T07:00:00Z"));
        // The last second before the repeated hour, the first after its second pass.
        assert_eq!(w.query_bounds(), ("2026-11-01T00:59:59".to_string(), "2026-11-01T02:00:00".to_string()));
        let inside = Window {
            from: utc("2026-11-01T04:51:06Z"),
            to: utc("2026-11-01T07:00:00Z"),
        };
        assert!(inside.split(3).is_ok(), "a window reaching into the repeated hour can still be cut before it");
    }

    /// Split windows tile the parent exactly, share boundaries and skip ambiguous cut points.
    #[test]
    fn split_tiles_the_parent() {
        let w = Window::covering(utc("2026-11-01T04:00:00Z"), utc("2026-11-02T05:00:00Z"));
        for parts in [2, 3, 7, 24, 100, 5000] {
            let subs = w.split(parts).unwrap();
            assert_eq!(subs.first().unwrap().from, w.from);
            assert_eq!(subs.last().unwrap().to, w.to);
            for pair in subs.windows(2) {
                assert_eq!(pair[0].to, pair[1].from);
                assert!(pair[0].from < pair[0].to);
            }
            assert!(subs.iter().all(|s| !is_ambiguous(s.from) && !is_ambiguous(s.to)));
        }
    }

    /// A one-second window cannot be split: the caller must report it, never truncate.
    #[test]
    fn one_second_cannot_split() {
        let t = utc("2026-03-03T12:00:00Z");
        let w = Window {
            from: t,
            to: t + Duration::seconds(1),
        };
        assert!(w.split(4).is_err());
        let w2 = Window {
            from: t,
            to: t + Duration::seconds(2),
        };
        assert_eq!(w2.split(4).unwrap().len(), 2);
    }
}
