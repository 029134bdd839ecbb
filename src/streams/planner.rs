//! Which date windows a range is read in, found by asking the API (pure: the caller sends the
//! requests and hands back the answers, in any order).
//!
//! Postmark lists newest first and serves only the newest 10,000 rows (the reach) of a query.
//! A window whose count fits is a leaf, read whole. A denser window is cut where its reach
//! ends: its deepest reachable page (offset `reach - page`) shows the oldest instant the reach
//! gets to, and everything from the next second on is a leaf read with the window's own query
//! (all its pages full), while the older rest is planned again the same way. That chain costs
//! no request beyond the pages themselves; splitting into equal-time parts (the fallback, and
//! for ranges far above the reach, where a chain would run too long before its oldest leaf is
//! known) wastes a probe and leaves each part's last page part-filled.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use crate::streams::window::{CannotSplit, Window, ceil_unambiguous, floor_second};

/// A window small enough to page, found by [`LeafPlanner`], with what its probes fetched.
#[derive(Debug)]
pub struct Leaf<P> {
    /// The rows it stands for (and the bookmark it completes).
    pub window: Window,
    /// The bounds its pages are asked with: `window` itself, or for a cut window the dense
    /// window it was cut from (`query.to == window.to`), whose newest `reach` rows hold every
    /// row of `window`; rows of `query` older than `window.from` belong to the leaf before.
    pub query: Window,
    /// The probe's count of `query`'s rows (above the reach for a cut window).
    pub total: u64,
    /// The first page of `query` (offset 0).
    pub probe: P,
    /// The deepest reachable page of `query` (offset `reach - page`), for a cut window.
    pub deepest: Option<P>,
    /// Splits made since the leaf before (their sum is the range's splits).
    pub splits: u64,
}

impl<P> Leaf<P> {
    /// Whether this leaf is the newest reach of a denser query: complete once its query's
    /// first `reach` rows arrived at an unchanged count, not once `total` rows did.
    pub fn is_cut(&self) -> bool {
        self.deepest.is_some()
    }
}

/// A window holds more than the reach and cannot be divided further.
#[derive(Debug, thiserror::Error)]
#[error("{total} rows in {source}")]
pub struct TooDense {
    pub total: u64,
    pub source: CannotSplit,
}

/// A request the planner wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The window's first page (offset 0), for its count.
    Count(Window),
    /// The window's deepest reachable page (offset `reach - page`), for where its reach ends.
    Deepest(Window),
}

/// One answer of a window not yet a leaf.
#[derive(Debug)]
enum Step<T> {
    Unwanted,
    Wanted,
    Asked,
    Got(T),
}

impl<T> Step<T> {
    fn held(&self) -> usize {
        usize::from(matches!(self, Step::Got(_)))
    }
}

/// A deepest page: its count of the window, the page, and its oldest instant.
type Deep<P> = (u64, P, Option<DateTime<Utc>>);

#[derive(Debug)]
enum Planned<P> {
    Open {
        window: Window,
        count: Step<(u64, P)>,
        deepest: Step<Deep<P>>,
    },
    Leaf(Leaf<P>),
}

/// The leaf windows of a range, found by probing ([`next_ask`](Self::next_ask) hands out
/// requests, oldest window first; [`counted`](Self::counted) and [`deepest`](Self::deepest)
/// take their answers in any order); no row is read from a window before it is known to be
/// reachable. Leaves come out oldest first ([`next_leaf`](Self::next_leaf)).
#[derive(Debug)]
pub struct LeafPlanner<P> {
    /// The range's windows, oldest first; they tile it.
    windows: VecDeque<Planned<P>>,
    reach: u64,
    /// Windows up to this count are cut along their reach; denser ones are split into
    /// equal-time parts of about three quarters of it first. `reach` turns cutting off (for a
    /// stream without a cursor, or an API whose order is not newest first).
    chain_max: u64,
    /// Splits not yet reported with a leaf.
    splits: u64,
}

/// How far above the reach a window is still cut along its reach rather than split: four
/// cuts at most before its oldest leaf is known.
pub const CHAIN_REACHES: u64 = 8;

impl<P> LeafPlanner<P> {
    /// A planner of `root`; `cut` says whether dense windows may be cut along their reach.
    pub fn new(root: Window, reach: u64, cut: bool) -> Self {
        LeafPlanner {
            windows: [Self::open(root, false)].into(),
            reach,
            chain_max: if cut { reach * CHAIN_REACHES } else { reach },
            splits: 0,
        }
    }

    fn open(window: Window, dense: bool) -> Planned<P> {
        Planned::Open {
            window,
            count: Step::Wanted,
            deepest: if dense { Step::Wanted } else { Step::Unwanted },
        }
    }

    /// The next request to send, oldest window first, while `in_flight` requests run. The
    /// front window (the one the next leaf waits for) always asks; others only while
    /// `in_flight` and the pages held (answers not yet handed on) stay under `ahead`. Memory
    /// stays bounded: leaves ahead of an open window wait for the reader, and the front one
    /// holds at most a chain's pages.
    pub fn next_ask(&mut self, in_flight: usize, ahead: usize) -> Option<Ask> {
        let room = in_flight + self.pages_held() < ahead;
        self.windows.iter_mut().enumerate().find_map(|(i, planned)| match planned {
            Planned::Open { window, count, deepest } if room || i == 0 => {
                if matches!(count, Step::Wanted) {
                    *count = Step::Asked;
                    Some(Ask::Count(*window))
                } else if matches!(deepest, Step::Wanted) {
                    *deepest = Step::Asked;
                    Some(Ask::Deepest(*window))
                } else {
                    None
                }
            }
            _ => None,
        })
    }

    fn position(&self, window: Window) -> Option<usize> {
        self.windows.iter().position(|p| matches!(p, Planned::Open { window: w, .. } if *w == window))
    }

    /// The count of `window` (asked by [`Ask::Count`]) and its first page.
    pub fn counted(&mut self, window: Window, total: u64, first: P) -> Result<(), TooDense> {
        let Some(at) = self.position(window) else { return Ok(()) };
        if total <= self.reach {
            self.windows[at] = Planned::Leaf(Leaf {
                window,
                query: window,
                total,
                probe: first,
                deepest: None,
                splits: 0,
            });
            return Ok(());
        }
        if total > self.chain_max {
            return self.split(at, window, total, self.chain_max);
        }
        if let Planned::Open { count, deepest, .. } = &mut self.windows[at] {
            *count = Step::Got((total, first));
            if matches!(deepest, Step::Unwanted) {
                *deepest = Step::Wanted;
            }
        }
        self.try_cut(at)
    }

    /// The deepest reachable page of `window` (asked by [`Ask::Deepest`]): the count it
    /// reported, the page, and the oldest instant on it (`None` when it has none).
    pub fn deepest(&mut self, window: Window, total: u64, page: P, oldest: Option<DateTime<Utc>>) -> Result<(), TooDense> {
        let Some(at) = self.position(window) else { return Ok(()) };
        if let Planned::Open { deepest, .. } = &mut self.windows[at] {
            *deepest = Step::Got((total, page, oldest));
        }
        self.try_cut(at)
    }

    /// Cuts the window at `at` once both its pages are in: the newest reach becomes a leaf,
    /// the rest a window planned again (dense for sure when the count leaves more than a
    /// reach below the cut, so its deepest page is asked with its count).
    fn try_cut(&mut self, at: usize) -> Result<(), TooDense> {
        let Planned::Open { window, count, deepest } = &self.windows[at] else {
            return Ok(());
        };
        let (Step::Got((total, _)), Step::Got((_, _, oldest))) = (count, deepest) else {
            return Ok(());
        };
        let (window, total) = (*window, *total);
        if self.chain_max <= self.reach {
            return self.split(at, window, total, self.reach);
        }
        // Past the oldest instant the reach got to: every row from this second on is newer,
        // so among the reach. A cut that would not divide the window falls back to a split.
        let cut = oldest.map(|t| ceil_unambiguous(floor_second(t) + Duration::seconds(1)));
        let Some(cut) = cut.filter(|c| *c > window.from && *c < window.to) else {
            return self.split(at, window, total, self.reach);
        };
        let Some(Planned::Open {
            count: Step::Got((_, first)),
            deepest: Step::Got((_, deep, _)),
            ..
        }) = self.windows.remove(at)
        else {
            return Ok(());
        };
        self.splits += 1;
        let rest = Window { from: window.from, to: cut };
        self.windows.insert(at, Self::open(rest, total.saturating_sub(self.reach) > self.reach));
        self.windows.insert(
            at + 1,
            Planned::Leaf(Leaf {
                window: Window { from: cut, to: window.to },
                query: window,
                total,
                probe: first,
                deepest: Some(deep),
                splits: 0,
            }),
        );
        Ok(())
    }

    /// Replaces the window at `at` by equal-time parts of about three quarters of `target`
    /// rows each, to be probed in turn.
    fn split(&mut self, at: usize, window: Window, total: u64, target: u64) -> Result<(), TooDense> {
        let parts = window.split_for_total(total, target).map_err(|source| TooDense { total, source })?;
        self.splits += 1;
        self.windows.remove(at);
        for (i, part) in parts.into_iter().enumerate() {
            self.windows.insert(at + i, Self::open(part, false));
        }
        Ok(())
    }

    /// No more cuts along the reach (their pages were not newest first): dense windows are
    /// split into equal-time parts from now on (those already asked for their deepest page
    /// once it answers).
    pub fn stop_cutting(&mut self) {
        self.chain_max = self.reach;
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

    /// Pages fetched and not yet handed on with a leaf.
    pub fn pages_held(&self) -> usize {
        self.windows
            .iter()
            .map(|p| match p {
                Planned::Leaf(leaf) => 1 + usize::from(leaf.is_cut()),
                Planned::Open { count, deepest, .. } => count.held() + deepest.held(),
            })
            .sum()
    }

    /// Every window of the range has been handed on as a leaf.
    pub fn is_done(&self) -> bool {
        self.windows.is_empty()
    }
}
