//! Ordered read-ahead that keeps request slots busy while the page at the head waits.
//!
//! futures' `buffered(n)` holds at most `n` futures, done or not. When the page at the head
//! waits for a retry (a backoff of 0.5-1 s), the pages behind it finish, stay held, and no new
//! request starts until the head comes: the slots go idle. [`ReadAhead::read_ahead`] counts
//! the futures not yet done apart from those done and held: it keeps up to `pending` of them,
//! and while the head is not ready it starts new ones in place of those done behind it, up to
//! `held` in all. A consumer that finds the head ready (a sink slower than the API) sees
//! `buffered(pending)`, so memory when nothing waits is unchanged; `held` bounds it while a
//! retry waits. Hand-written because futures has no buffered stream with two bounds; kept
//! because it measured better with errors (README, "Performance").

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::stream::{self, Fuse, FusedStream, FuturesOrdered, Stream, StreamExt};

/// How far a read runs ahead of the page it hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// The most futures started and not yet done.
    pub pending: usize,
    /// The most futures held in all, done or not, while the head is not ready (at least
    /// `pending`).
    pub held: usize,
}

pub trait ReadAhead: Stream + Sized
where
    Self::Item: Future,
{
    /// The outputs of this stream's futures in order, run as [`Ahead`] allows.
    fn read_ahead(self, ahead: Ahead) -> impl Stream<Item = <Self::Item as Future>::Output>;
}

impl<St> ReadAhead for St
where
    St: Stream,
    St::Item: Future,
{
    fn read_ahead(self, ahead: Ahead) -> impl Stream<Item = <Self::Item as Future>::Output> {
        let pending = ahead.pending.max(1);
        let held = ahead.held.max(pending);
        let mut source = Box::pin(self.fuse());
        let mut queue = FuturesOrdered::new();
        let undone = Arc::new(AtomicUsize::new(0));
        stream::poll_fn(move |cx| {
            start(source.as_mut(), &mut queue, &undone, pending, pending, cx);
            loop {
                match queue.poll_next_unpin(cx) {
                    Poll::Ready(Some(output)) => return Poll::Ready(Some(output)),
                    Poll::Ready(None) if source.is_terminated() => return Poll::Ready(None),
                    // Nothing held and the source has nothing yet: it wakes us.
                    Poll::Ready(None) => return Poll::Pending,
                    Poll::Pending => {}
                }
                // The head waits: start new futures in place of those done behind it, and poll
                // them (a new future is polled only by the queue's next poll).
                if !start(source.as_mut(), &mut queue, &undone, pending, held, cx) {
                    return Poll::Pending;
                }
            }
        })
    }
}

/// Takes futures from `source` while fewer than `limit` are held and fewer than `pending` are
/// undone; true when one was taken.
fn start<St>(
    mut source: Pin<&mut Fuse<St>>,
    queue: &mut FuturesOrdered<Counted<St::Item>>,
    undone: &Arc<AtomicUsize>,
    pending: usize,
    limit: usize,
    cx: &mut Context<'_>,
) -> bool
where
    St: Stream,
    St::Item: Future,
{
    let mut started = false;
    while queue.len() < limit && undone.load(Ordering::Relaxed) < pending {
        let Poll::Ready(Some(future)) = source.as_mut().poll_next(cx) else { break };
        undone.fetch_add(1, Ordering::Relaxed);
        queue.push_back(Counted {
            future: Box::pin(future),
            undone: undone.clone(),
        });
        started = true;
    }
    started
}

/// A future that counts itself out of `undone` when it is done.
struct Counted<F> {
    future: Pin<Box<F>>,
    undone: Arc<AtomicUsize>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let output = std::task::ready!(self.future.as_mut().poll(cx));
        self.undone.fetch_sub(1, Ordering::Relaxed);
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::FutureExt;
    use futures::channel::oneshot;

    const AHEAD: Ahead = Ahead { pending: 2, held: 5 };

    /// A source of futures numbered from 0 that records how many were taken from it; future 0
    /// waits for `head`, every other is ready at once.
    fn source(head: oneshot::Receiver<()>, taken: Arc<AtomicUsize>) -> impl Stream<Item = futures::future::BoxFuture<'static, usize>> {
        let mut head = Some(head);
        stream::iter(0..20usize).map(move |i| {
            taken.fetch_add(1, Ordering::Relaxed);
            match head.take() {
                Some(rx) => async move { rx.await.map_or(usize::MAX, |()| 0) }.boxed(),
                None => futures::future::ready(i).boxed(),
            }
        })
    }

    /// While the head waits, futures done behind it are replaced by new ones until `held` are
    /// held; released, the head comes first and every output follows in order.
    #[tokio::test]
    async fn a_waiting_head_lets_new_futures_start_up_to_held() {
        let (tx, rx) = oneshot::channel();
        let taken = Arc::new(AtomicUsize::new(0));
        let mut outputs = Box::pin(source(rx, taken.clone()).read_ahead(AHEAD));
        assert!(futures::poll!(outputs.next()).is_pending());
        assert_eq!(taken.load(Ordering::Relaxed), AHEAD.held, "buffered would stop at {}", AHEAD.pending);
        tx.send(()).ok();
        let all: Vec<usize> = outputs.collect().await;
        assert_eq!(all, (0..20).collect::<Vec<_>>());
    }

    /// With every future ready, no more than `pending` are taken ahead of what was handed on:
    /// a consumer slower than the futures holds what `buffered(pending)` would.
    #[tokio::test]
    async fn a_ready_head_holds_no_more_than_pending() {
        let (tx, rx) = oneshot::channel();
        tx.send(()).ok();
        let taken = Arc::new(AtomicUsize::new(0));
        let mut outputs = Box::pin(source(rx, taken.clone()).read_ahead(AHEAD));
        let mut handed = 0;
        while let Some(i) = outputs.next().await {
            assert_eq!(i, handed);
            handed += 1;
            assert!(
                taken.load(Ordering::Relaxed) <= handed + AHEAD.pending,
                "{} taken, {handed} handed on",
                taken.load(Ordering::Relaxed)
            );
        }
        assert_eq!(handed, 20);
    }
}
