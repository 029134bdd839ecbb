//! Property tests of the window planner: for random traffic, the windows cover the range with no
//! gap, every window fits under the offset limit, and daylight-saving changes in New York
//! neither skip nor double an hour.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;

use postmark_elt::streams::window::{CannotSplit, LeafPlanner, TooDense, Window};
use proptest::prelude::*;

const REACH: u64 = 10_000;

/// What Postmark would count for a window: rows whose instant lies within the query text read
/// back as New York time (inclusive, to the second).
fn count(times: &[DateTime<Utc>], w: &Window) -> u64 {
    let (from, to) = w.query_bounds();
    let read = |s: &str| match New_York.from_local_datetime(&NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        other => panic!("query bound {s} is not a single instant: {other:?}"),
    };
    let (f, t) = (read(&from), read(&to));
    assert_eq!((f, t), (w.from, w.to), "query text does not name the window's instants");
    let lo = times.partition_point(|x| *x < f);
    let hi = times.partition_point(|x| *x <= t);
    (hi - lo) as u64
}

/// The runner's planner itself ([`LeafPlanner`]), with a counting oracle instead of HTTP: up to
/// `ahead` probes out at once, answered in an order drawn from `seed` (the API answers in any
/// order); leaves, which must come out oldest first.
fn plan(root: Window, times: &[DateTime<Utc>], ahead: usize, seed: u64) -> Result<Vec<Window>, CannotSplit> {
    let mut planner = LeafPlanner::new(root, REACH);
    let mut leaves: Vec<Window> = Vec::new();
    let mut out: Vec<Window> = Vec::new();
    let mut x = seed | 1;
    loop {
        while let Some(w) = planner.next_probe(out.len(), ahead) {
            out.push(w);
        }
        while let Some(leaf) = planner.next_leaf() {
            assert_eq!(leaf.total, count(times, &leaf.window), "the leaf carries its probe's count");
            assert!(leaves.last().is_none_or(|l| l.to == leaf.window.from), "leaves come out in order");
            leaves.push(leaf.window);
        }
        if out.is_empty() {
            assert!(planner.is_done());
            return Ok(leaves);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = out.swap_remove((x % out.len() as u64) as usize);
        let total = count(times, &w);
        if let Err(TooDense { total, source }) = planner.probed(w, total, ()) {
            assert!(total > REACH, "only a window above the reach is refused");
            return Err(source);
        }
    }
}

fn instant(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap()
}

prop_compose! {
    /// A range in 2026 that often spans a DST change, with background traffic and bursts.
    fn traffic()(
        start in prop_oneof![
            Just(1_772_928_000i64 - 3 * 86_400), // a few days before 2026-03-08
            Just(1_793_491_200i64 - 3 * 86_400), // a few days before 2026-11-01
            1_767_225_600i64..1_798_761_600i64,  // anywhere in 2026
        ],
        days in 1i64..8,
        background in 0usize..30_000,
        bursts in prop::collection::vec((0u32..1_000, 1i64..7_200, 1_000usize..25_000), 0..3),
        seed in any::<u64>(),
    ) -> (DateTime<Utc>, DateTime<Utc>, Vec<DateTime<Utc>>) {
        let begin = instant(start);
        let end = begin + Duration::days(days);
        let span_ms = (end - begin).num_milliseconds();
        let mut x = seed | 1;
        let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let mut times: Vec<DateTime<Utc>> = (0..background)
            .map(|_| begin + Duration::milliseconds((next() % span_ms as u64) as i64))
            .collect();
        for (at_permille, width_s, n) in bursts {
            let at = begin + Duration::milliseconds(span_ms * i64::from(at_permille) / 1000);
            for _ in 0..n {
                let t = at + Duration::milliseconds((next() % (width_s as u64 * 1000)) as i64);
                if t < end { times.push(t); }
            }
        }
        times.sort();
        (begin, end, times)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Windows tile the range, fit under the limit, and every row is in some window.
    #[test]
    fn windows_cover_everything_under_the_limit((begin, end, times) in traffic(), ahead in 1usize..9, seed in any::<u64>()) {
        let root = Window::covering(begin, end);
        prop_assert!(root.from <= begin && root.to >= end);
        let leaves = match plan(root, &times, ahead, seed) {
            Ok(l) => l,
            // Only a window no wall-clock query can divide may refuse: a second or two, or the
            // repeated hour of a fall-back night (two real hours).
            Err(e) => {
                prop_assert!(e.to - e.from <= Duration::hours(2) + Duration::seconds(2), "refused to split {e}");
                return Ok(());
            }
        };
        prop_assert_eq!(leaves.first().unwrap().from, root.from);
        prop_assert_eq!(leaves.last().unwrap().to, root.to);
        for pair in leaves.windows(2) {
            prop_assert_eq!(pair[0].to, pair[1].from, "gap or overlap between windows");
        }
        let mut covered = 0u64;
        for w in &leaves {
            let n = count(&times, w);
            prop_assert!(n <= REACH, "a window holds {} rows", n);
            covered += n;
        }
        // Shared boundary seconds may count a row twice, never zero times.
        prop_assert!(covered >= times.len() as u64);
    }
}

/// On the fall-back night the repeated hour is covered once per pass, never skipped; on the
/// spring-forward night the missing hour produces no empty or doubled window.
#[test]
fn dst_nights_neither_skip_nor_double() {
    for (day_start, name) in [(1_793_505_600i64, "2026-11-01"), (1_772_946_000i64, "2026-03-08")] {
        let begin = instant(day_start);
        let end = begin + Duration::hours(6);
        // One row every 0.9 s over six hours: 24,000 rows, so the night must be split.
        let times: Vec<DateTime<Utc>> = (0..24_000).map(|i| begin + Duration::milliseconds(i * 900)).collect();
        let leaves = plan(Window::covering(begin, end), &times, 4, day_start as u64).unwrap();
        assert!(leaves.len() >= 3, "{name}");
        let total: u64 = leaves.iter().map(|w| count(&times, w)).sum();
        assert!(total >= 24_000 && total <= 24_000 + leaves.len() as u64, "{name}: {total}");
        let wall_hours: f64 = leaves.iter().map(|w| (w.to - w.from).num_seconds() as f64 / 3600.0).sum();
        assert!((wall_hours - 6.0).abs() < 1.5, "{name}: windows span {wall_hours} h of real time");
    }
}
