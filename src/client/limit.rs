//! The client's concurrency limit: additive increase, multiplicative decrease on 429s, with
//! a lane for the requests others wait on.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

/// How many requests may be in flight: additive increase, multiplicative decrease. A 429 that
/// is the third within `2 x limit` answers halves the limit (a rate limit pushes back on most
/// of the requests in flight, so three come quickly); 429s further apart are only retried, so
/// that a flaky answer now and then does not idle half the slots: with 1% of answers a random
/// 429, one in two of them followed another within 16 answers and kept the limit near 4 of 8
/// (`bench`, 2% 429/503: 87.7% of the ideal against 90.4% with no cut at all). A cut starts the
/// count again, so the answers to requests sent before it cut once, not once each. Every
/// `limit` successes in a row add one, up to `max_concurrency`. A rate limit therefore slows
/// the run down instead of failing it.
///
/// Waiters get slots first come, first served (a page asked for earlier is sent earlier, which
/// keeps in-order reads moving), except that those who asked with [`acquire_first`]
/// (Self::acquire_first) go before the others: a window planner's probes, which the reads
/// after them wait for, do not queue behind the read-ahead of every stream. A freed slot wakes
/// one waiter, not all of them. Hand-written rather than a tokio `Semaphore`, which has one
/// queue only.
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    state: std::sync::Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    /// Slots free now.
    free: usize,
    /// Slots to take out of circulation as they are freed (the limit was cut below what is in
    /// flight).
    excess: usize,
    successes: usize,
    /// Answers counted so far (successes and 429s).
    answers: u64,
    /// The answer numbers of the last two 429s since the last cut, older first.
    recent_rate_limited: [Option<u64>; 2],
    /// Waiters, in the order they came: those that go first, and the others.
    first: VecDeque<oneshot::Sender<()>>,
    waiting: VecDeque<oneshot::Sender<()>>,
}

impl LimitState {
    /// Hands a slot to the next waiter still waiting, or keeps it free.
    fn hand_on(&mut self) {
        while let Some(next) = self.first.pop_front().or_else(|| self.waiting.pop_front()) {
            if next.send(()).is_ok() {
                return;
            }
        }
        self.free += 1;
    }
}

/// A slot of the limit, released on drop (or retired, when the limit was cut). It owns its
/// share of the limit, so a request can hold it on a task of its own.
pub struct Slot {
    limit: Arc<AdaptiveLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.limit.lock();
        if s.excess > 0 {
            s.excess -= 1;
        } else {
            s.hand_on();
        }
    }
}

/// A waiter's side of a handed-on slot: dropped before it was taken (the request was
/// abandoned), a slot already handed to it goes on to the next waiter.
struct Waiting {
    limit: Arc<AdaptiveLimit>,
    slot: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.slot.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                drop(Slot { limit: self.limit.clone() });
            }
        }
    }
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        AdaptiveLimit {
            max,
            state: std::sync::Mutex::new(LimitState {
                limit: max,
                free: max,
                excess: 0,
                successes: 0,
                answers: 0,
                recent_rate_limited: [None, None],
                first: VecDeque::new(),
                waiting: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot, after those asked for before.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        self.wait(false).await
    }

    /// A slot, before every waiter that asked with [`acquire`](Self::acquire).
    pub async fn acquire_first(self: &Arc<Self>) -> Slot {
        self.wait(true).await
    }

    async fn wait(self: &Arc<Self>, first: bool) -> Slot {
        let rx = {
            let mut s = self.lock();
            let ahead = s.first.len() + if first { 0 } else { s.waiting.len() };
            if s.free > 0 && ahead == 0 {
                s.free -= 1;
                return Slot { limit: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            if first {
                s.first.push_back(tx)
            } else {
                s.waiting.push_back(tx)
            }
            rx
        };
        let mut waiting = Waiting {
            limit: self.clone(),
            slot: Some(rx),
        };
        if let Some(rx) = waiting.slot.as_mut() {
            // The sender is dropped only after a send (or never: the limit outlives its slots).
            let _ = rx.await;
        }
        waiting.slot = None;
        Slot { limit: self.clone() }
    }

    pub fn on_success(&self) {
        let mut s = self.lock();
        s.successes += 1;
        s.answers += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            if s.excess > 0 {
                s.excess -= 1;
            } else {
                s.hand_on();
            }
        }
    }

    /// Counts a 429; returns whether it cut the limit.
    pub fn on_rate_limited(&self) -> bool {
        let mut s = self.lock();
        s.answers += 1;
        s.successes = 0;
        let answer = s.answers;
        let [older, last] = s.recent_rate_limited;
        let burst = older.is_some_and(|first| answer - first < 2 * s.limit as u64);
        if !burst || s.limit == 1 {
            s.recent_rate_limited = [last, Some(answer)];
            return false;
        }
        s.recent_rate_limited = [None, None];
        let cut = s.limit - (s.limit / 2).max(1);
        s.limit -= cut;
        // Free slots are retired now; those in flight as they come back.
        let now = cut.min(s.free);
        s.free -= now;
        s.excess += cut - now;
        true
    }

    pub fn current(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 429s further apart than `2 x limit` answers keep the limit; the third within that span
    /// halves it, and the count starts again after a cut; successes grow it back one at a time;
    /// slots are counted, also those retired while in flight.
    #[tokio::test]
    async fn adaptive_limit_halves_on_bursts_and_grows() {
        let l = Arc::new(AdaptiveLimit::new(8));
        // Three 429s over 17 answers (limit 8: a span of 16 is a burst, 17 is not).
        for _ in 0..2 {
            assert!(!l.on_rate_limited(), "429s spread out are only retried");
            for _ in 0..7 {
                l.on_success();
            }
        }
        assert!(!l.on_rate_limited(), "the first of these three was 17 answers ago");
        assert_eq!(l.current(), 8);
        // The span now holds the last two 429s: one more within it is the third.
        assert!(l.on_rate_limited());
        assert_eq!(l.current(), 4);
        assert!(!l.on_rate_limited(), "the count starts again after a cut");
        assert!(!l.on_rate_limited());
        assert!(l.on_rate_limited());
        assert_eq!(l.current(), 2);
        for _ in 0..2 {
            l.on_success();
        }
        assert_eq!(l.current(), 3);
        let a = l.acquire().await;
        let b = l.acquire().await;
        let c = l.acquire().await;
        // A fourth waits until a slot is freed.
        let short = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(short, l.acquire()).await.is_err());
        drop(a);
        let d = tokio::time::timeout(short, l.acquire()).await.expect("a freed slot is handed on");
        // Cut while three are in flight: 3 -> 1 (halved, at least one). Two slots retire as
        // they come back, so one more is available only after all three are back.
        l.on_success();
        assert!(!l.on_rate_limited());
        assert!(!l.on_rate_limited());
        assert!(l.on_rate_limited());
        assert_eq!(l.current(), 1);
        drop((b, c));
        assert!(tokio::time::timeout(short, l.acquire()).await.is_err(), "retired slots are not handed on");
        drop(d);
        let e = tokio::time::timeout(short, l.acquire()).await.expect("the one slot left");
        drop(e);
        // 1 -> 6 after 1 + 2 + 3 + 4 + 5 successes; a 429 this far from the last is lone.
        for _ in 0..20 {
            l.on_success();
        }
        assert_eq!(l.current(), 6);
        assert!(!l.on_rate_limited());
        assert_eq!(l.current(), 6);
    }

    /// A waiter that asked to go first gets the next freed slot before those waiting longer;
    /// among each kind, first come first served; an abandoned waiter's slot goes on.
    #[tokio::test]
    async fn first_lane_goes_before_the_queue() {
        let short = std::time::Duration::from_millis(50);
        let l = Arc::new(AdaptiveLimit::new(1));
        let held = l.acquire().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, first) in [("page 1", false), ("page 2", false), ("probe 1", true), ("probe 2", true)] {
            let (l, order) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = if first { l.acquire_first().await } else { l.acquire().await };
                order.lock().unwrap().push(name);
                drop(slot);
            }));
            // Each is queued before the next asks.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Abandoned while waiting: it must not keep the slot handed to it.
        let abandoned = tokio::time::timeout(short, l.acquire_first()).await;
        assert!(abandoned.is_err());
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["probe 1", "probe 2", "page 1", "page 2"]);
        let again = tokio::time::timeout(short, l.acquire()).await;
        assert!(again.is_ok(), "the slot was lost");
    }
}
