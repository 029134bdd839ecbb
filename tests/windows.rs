//! Property tests of the window planner: for random traffic, the windows cover the range with no
//! gap, every window fits under the offset limit, and daylight-saving changes in New York
//! neither skip nor double an hour.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;

use postmark_elt::streams::planner::{Ask, LeafPlanner, TooDense};
use postmark_elt::streams::window::{CannotSplit, Window};
use proptest::prelude::*;

const REACH: u64 = 10_000;
const PAGE: u64 = 500;
/// The offset of a dense window's deepest page, as the reader asks it.
const DEEPEST: u64 = REACH - PAGE;

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

/// The rows of `w` as Postmark would list them, newest first: the instant at `rank`.
fn ranked(times: &[DateTime<Utc>], w: &Window, rank: u64) -> Option<DateTime<Utc>> {
    let hi = times.partition_point(|x| *x <= w.to);
    let n = count(times, w);
    (rank < n).then(|| times[hi - 1 - rank as usize])
}

/// What a plan found: its leaves, oldest first, and the requests a read of them sends (the
/// planner's asks and every further page of the leaves).
struct Plan {
    leaves: Vec<Window>,
    requests: u64,
}

/// The runner's planner itself ([`LeafPlanner`]), with a counting oracle instead of HTTP: up to
/// `ahead` requests out at once, answered in an order drawn from `seed` (the API answers in any
/// order); leaves, which must come out oldest first, each reachable from its query.
fn plan(root: Window, times: &[DateTime<Utc>], ahead: usize, seed: u64, cut: bool) -> Result<Plan, CannotSplit> {
    let mut planner = LeafPlanner::new(root, REACH, cut);
    let mut leaves: Vec<Window> = Vec::new();
    let mut out: Vec<Ask> = Vec::new();
    let mut requests = 0;
    let mut x = seed | 1;
    loop {
        while let Some(ask) = planner.next_ask(out.len(), ahead) {
            requests += 1;
            out.push(ask);
        }
        let mut taken = false;
        while let Some(leaf) = planner.next_leaf() {
            taken = true;
            assert_eq!(leaf.total, count(times, &leaf.query), "the leaf carries its probe's count");
            assert!(leaves.last().is_none_or(|l| l.to == leaf.window.from), "leaves come out in order");
            if leaf.is_cut() {
                assert_eq!(leaf.query.to, leaf.window.to, "a cut leaf is the newest part of its query");
                assert!(leaf.query.from < leaf.window.from);
                // Its rows are the newest of the query, so all among the pages read of it.
                assert!(count(times, &leaf.window) <= DEEPEST + PAGE, "a cut leaf's rows lie beyond the reach");
                requests += DEEPEST / PAGE - 1;
            } else {
                assert_eq!(leaf.query, leaf.window);
                requests += leaf.total.div_ceil(PAGE).saturating_sub(1);
            }
            leaves.push(leaf.window);
        }
        if out.is_empty() && taken {
            // Taking leaves makes room for the next requests.
            continue;
        }
        if out.is_empty() {
            assert!(planner.is_done(), "{planner:?}");
            return Ok(Plan { leaves, requests });
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let answered = match out.swap_remove((x % out.len() as u64) as usize) {
            Ask::Count(w) => planner.counted(w, count(times, &w), ()),
            // The deepest page holds the rows ranked DEEPEST.. (newest first); its oldest is the
            // last of them.
            Ask::Deepest(w) => {
                let n = count(times, &w);
                let oldest = (n > DEEPEST).then(|| ranked(times, &w, n.min(DEEPEST + PAGE) - 1)).flatten();
                planner.deepest(w, n, (), oldest)
            }
        };
        if let Err(TooDense { total, source }) = answered {
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
    fn windows_cover_everything_under_the_limit((begin, end, times) in traffic(), ahead in 1usize..17, seed in any::<u64>(), cut in any::<bool>()) {
        let root = Window::covering(begin, end);
        prop_assert!(root.from <= begin && root.to >= end);
        let leaves = match plan(root, &times, ahead, seed, cut) {
            Ok(p) => p.leaves,
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
        let leaves = plan(Window::covering(begin, end), &times, 4, day_start as u64, true).unwrap().leaves;
        assert!(leaves.len() >= 3, "{name}");
        let total: u64 = leaves.iter().map(|w| count(&times, w)).sum();
        assert!(total >= 24_000 && total <= 24_000 + leaves.len() as u64, "{name}: {total}");
        let wall_hours: f64 = leaves.iter().map(|w| (w.to - w.from).num_seconds() as f64 / 3600.0).sum();
        assert!((wall_hours - 6.0).abs() < 1.5, "{name}: windows span {wall_hours} h of real time");
    }
}

/// Cutting dense windows along their reach reads a day of steady or uneven traffic in hardly
/// more requests than its rows fill pages; equal-time parts alone leave a part-filled page per
/// part and probe every split window in vain.
#[test]
fn cuts_along_the_reach_cost_about_the_pages_alone() {
    let begin = instant(1_795_000_000);
    let days = 10;
    let mut x = 12_345u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Steady: 50,000 a day; uneven: most mail in a few busy hours of each day.
    let steady: Vec<DateTime<Utc>> = (0..500_000)
        .map(|_| begin + Duration::milliseconds((next() % (days * 86_400_000)) as i64))
        .collect();
    let uneven: Vec<DateTime<Utc>> = (0..500_000)
        .map(|i| {
            let day = (i % days) as i64;
            let second = if i % 5 == 0 { next() % 86_400 } else { 36_000 + next() % 10_800 };
            begin + Duration::days(day) + Duration::seconds(second as i64) + Duration::milliseconds((next() % 1000) as i64)
        })
        .collect();
    for (name, mut times) in [("steady", steady), ("uneven", uneven)] {
        times.sort();
        let root = Window::covering(begin, begin + Duration::days(days as i64));
        let minimum = (times.len() as u64).div_ceil(PAGE);
        let cut = plan(root, &times, 8, 7, true).unwrap();
        let split = plan(root, &times, 8, 7, false).unwrap();

        let covered: u64 = cut.leaves.iter().map(|w| count(&times, w)).sum();
        assert!(covered >= times.len() as u64, "{name}: every row in a leaf");
        assert!(
            cut.requests as f64 <= 1.01 * minimum as f64,
            "{name}: {} requests with cuts for {minimum} pages of rows",
            cut.requests
        );
        assert!(split.requests > cut.requests, "{name}: equal-time parts alone: {} requests", split.requests);
    }
}
