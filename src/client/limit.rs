//! The client's concurrency limit: additive increase, multiplicative decrease on 429s.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many requests may be in flight: additive increase, multiplicative decrease. A 429 that
/// follows another within `2 x limit` successful answers halves the limit (a rate limit pushes
/// back on several requests in a row); a lone 429 is only retried, so that a flaky answer now
/// and then does not idle half the slots. Every `limit` successes in a row add one, up to
/// `max_concurrency`. A rate limit therefore slows the run down instead of failing it.
///
/// Slots are a tokio [`Semaphore`]: waiters get them first come, first served (a page asked
/// for earlier is sent earlier, which keeps in-order reads moving), and a freed slot wakes one
/// waiter, not all of them (reads keep many requests waiting ahead).
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    slots: Arc<Semaphore>,
    state: std::sync::Mutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    /// Slots to take out of circulation as they are freed (the limit was cut below what is in
    /// flight).
    excess: usize,
    successes: usize,
    /// Successful answers since the last 429 (`None`: none yet).
    since_rate_limited: Option<usize>,
}

/// A slot of the limit, released on drop (or retired, when the limit was cut). It owns its
/// share of the limit, so a request can hold it on a task of its own.
pub struct Slot {
    limit: Arc<AdaptiveLimit>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let retire = {
            let mut s = self.limit.lock();
            let retire = s.excess > 0;
            s.excess = s.excess.saturating_sub(usize::from(retire));
            retire
        };
        if let (true, Some(permit)) = (retire, self.permit.take()) {
            permit.forget();
        }
    }
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        AdaptiveLimit {
            max,
            slots: Arc::new(Semaphore::new(max)),
            state: std::sync::Mutex::new(LimitState {
                limit: max,
                excess: 0,
                successes: 0,
                since_rate_limited: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn acquire(self: &Arc<Self>) -> Slot {
        // The semaphore is never closed, so acquiring fails only in theory; a slot without a
        // permit then just does not count.
        Slot {
            limit: self.clone(),
            permit: self.slots.clone().acquire_owned().await.ok(),
        }
    }

    pub fn on_success(&self) {
        let mut s = self.lock();
        s.successes += 1;
        s.since_rate_limited = s.since_rate_limited.map(|n| n + 1);
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            if s.excess > 0 {
                s.excess -= 1;
            } else {
                self.slots.add_permits(1);
            }
        }
    }

    /// Counts a 429; returns whether it cut the limit.
    pub fn on_rate_limited(&self) -> bool {
        let mut s = self.lock();
        let burst = s.since_rate_limited.is_some_and(|n| n < 2 * s.limit);
        s.since_rate_limited = Some(0);
        s.successes = 0;
        if !burst || s.limit == 1 {
            return false;
        }
        let cut = s.limit - (s.limit / 2).max(1);
        s.limit -= cut;
        // Free slots are retired now; those in flight as they come back.
        let mut left = cut;
        while left > 0 {
            match self.slots.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    left -= 1;
                }
                Err(_) => break,
            }
        }
        s.excess += left;
        true
    }

    pub fn current(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone 429 keeps the limit; a second one close behind halves it, and so on; successes
    /// grow it back one at a time; slots are counted, also those retired while in flight.
    #[tokio::test]
    async fn adaptive_limit_halves_on_bursts_and_grows() {
        let l = Arc::new(AdaptiveLimit::new(8));
        assert!(!l.on_rate_limited(), "a lone 429 is only retried");
        assert_eq!(l.current(), 8);
        assert!(l.on_rate_limited());
        assert_eq!(l.current(), 4);
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
}
