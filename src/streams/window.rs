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

fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
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

    /// Splits a window whose query matched `total` rows into enough parts that each should fit
    /// under `reach` (aiming at three quarters of it, so uneven traffic rarely needs a second
    /// split). A part that still matches too many rows is split again by the caller.
    pub fn split_for_total(&self, total: u64, reach: u64) -> Result<Vec<Window>, CannotSplit> {
        let parts = total.div_ceil((reach * 3 / 4).max(1)).clamp(2, 1_000) as u32;
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

/// A window small enough to page, found by [`LeafPlanner`], with what its probe fetched.
#[derive(Debug)]
pub struct Leaf<P> {
    pub window: Window,
    /// The probe's count of the window's rows.
    pub total: u64,
    /// What the probe fetched besides the count (the runner's first page).
    pub probe: P,
    /// Splits made since the leaf before (their sum is the range's splits).
    pub splits: u64,
}

/// A window holds more than the reach and cannot be divided further.
#[derive(Debug, thiserror::Error)]
#[error("{total} rows in {source}")]
pub struct TooDense {
    pub total: u64,
    pub source: CannotSplit,
}

/// Where a window of the range stands.
#[derive(Debug)]
enum Planned<P> {
    Unprobed(Window),
    Probing(Window),
    Leaf(Leaf<P>),
}

/// The windows of a range small enough to page, found by probing: `probe` counts a window's
/// rows (production asks the API for its first page, the property tests ask an oracle); a
/// window above `reach` is split and its parts are probed in turn, so no row is read from a
/// window before it is known to fit. Probes may run side by side and answer in any order
/// ([`next_probe`](Self::next_probe) hands out windows, [`probed`](Self::probed) takes their
/// counts); leaves still come out oldest first ([`next_leaf`](Self::next_leaf)).
#[derive(Debug)]
pub struct LeafPlanner<P> {
    /// The range's windows, oldest first.
    windows: std::collections::VecDeque<Planned<P>>,
    reach: u64,
    /// Splits not yet reported with a leaf.
    splits: u64,
}

impl<P> LeafPlanner<P> {
    pub fn new(root: Window, reach: u64) -> Self {
        LeafPlanner {
            windows: [Planned::Unprobed(root)].into(),
            reach,
            splits: 0,
        }
    }

    /// The oldest window not yet handed out, to probe, while `in_flight` probes run: none when
    /// `in_flight` and the leaves found but not yet taken reach `ahead` (their first pages are in
    /// memory), except when no probe runs at all, so that the oldest window (which the leaves
    /// taken next wait for) is always being probed.
    pub fn next_probe(&mut self, in_flight: usize, ahead: usize) -> Option<Window> {
        if in_flight > 0 && in_flight + self.leaves_held() >= ahead {
            return None;
        }
        self.windows.iter_mut().find_map(|planned| match *planned {
            Planned::Unprobed(window) => {
                *planned = Planned::Probing(window);
                Some(window)
            }
            _ => None,
        })
    }

    /// A probe's count of `window` (handed out by `next_probe`) and what it fetched. A window
    /// above the reach is replaced by its parts, to be probed in turn.
    pub fn probed(&mut self, window: Window, total: u64, fetched: P) -> Result<(), TooDense> {
        let Some(at) = self.windows.iter().position(|p| matches!(p, Planned::Probing(w) if *w == window)) else {
            return Ok(());
        };
        if total <= self.reach {
            self.windows[at] = Planned::Leaf(Leaf {
                window,
                total,
                probe: fetched,
                splits: 0,
            });
            return Ok(());
        }
        let parts = window.split_for_total(total, self.reach).map_err(|source| TooDense { total, source })?;
        self.splits += 1;
        self.windows.remove(at);
        for (i, part) in parts.into_iter().enumerate() {
            self.windows.insert(at + i, Planned::Unprobed(part));
        }
        Ok(())
    }

    /// Whether [`next_leaf`](Self::next_leaf) has a leaf to give.
    pub fn has_next_leaf(&self) -> bool {
        matches!(self.windows.front(), Some(Planned::Leaf(_)))
    }

    /// The oldest window, once it is a leaf.
    pub fn next_leaf(&mut self) -> Option<Leaf<P>> {
        if !self.has_next_leaf() {
            return None;
        }
        match self.windows.pop_front() {
            Some(Planned::Leaf(leaf)) => Some(Leaf {
                splits: std::mem::take(&mut self.splits),
                ..leaf
            }),
            _ => None,
        }
    }

    /// Leaves found and not yet handed on (their first pages are held).
    pub fn leaves_held(&self) -> usize {
        self.windows.iter().filter(|p| matches!(p, Planned::Leaf(_))).count()
    }

    /// Every window of the range has been handed on as a leaf.
    pub fn is_done(&self) -> bool {
        self.windows.is_empty()
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
