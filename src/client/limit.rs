//! The client's concurrency limit: additive increase, multiplicative decrease on 429s.

use tokio::sync::Notify;

/// How many requests may be in flight: additive increase, multiplicative decrease. A 429 halves
/// the limit; every `limit` successes in a row add one, up to `max_concurrency`. A rate limit
/// therefore slows the run down instead of failing it.
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    state: std::sync::Mutex<LimitState>,
    freed: Notify,
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    in_flight: usize,
    successes: usize,
}

/// A slot of the limit, released on drop.
pub struct Slot<'a>(&'a AdaptiveLimit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.0.freed.notify_waiters();
    }
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        AdaptiveLimit {
            max: max.max(1),
            state: std::sync::Mutex::new(LimitState {
                limit: max.max(1),
                in_flight: 0,
                successes: 0,
            }),
            freed: Notify::new(),
        }
    }

    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Slot(self);
                }
            }
            notified.await;
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.successes += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            drop(s);
            self.freed.notify_waiters();
        }
    }

    pub fn on_rate_limited(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
    }

    pub fn current(&self) -> usize {
        self.state.lock().map(|s| s.limit).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 429 halves the limit; successes grow it back one at a time; slots are counted.
    #[tokio::test]
    async fn adaptive_limit_halves_and_grows() {
        let l = AdaptiveLimit::new(8);
        assert_eq!(l.current(), 8);
        l.on_rate_limited();
        l.on_rate_limited();
        assert_eq!(l.current(), 2);
        for _ in 0..2 {
            l.on_success();
        }
        assert_eq!(l.current(), 3);
        let a = l.acquire().await;
        let b = l.acquire().await;
        let c = l.acquire().await;
        // A fourth waits until a slot is freed.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(waiting.is_err());
        drop(a);
        let d = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(d.is_ok());
        drop((b, c));
    }
}
