//! The pages of a range's leaf windows: the planner ([`LeafPlanner`]) sends the requests it
//! asks for beside the pages of the leaves it found, and the pages come out in order.

use futures::future::{self, BoxFuture, FutureExt};
use futures::{StreamExt, stream};

use crate::streams::MAX_REACH;
use crate::streams::context::Ctx;
use crate::streams::error::SyncError;
use crate::streams::extract::Page;
use crate::streams::planner::{Ask, Leaf, LeafPlanner, TooDense};
use crate::streams::read::ahead::ReadAhead;
use crate::streams::read::paging::time_range;
use crate::streams::runner::Extractor;
use crate::streams::window::Window;

/// One page of a leaf window, and where it sits in it.
pub(super) struct LeafPage {
    pub(super) window: Window,
    /// The bounds the page was asked with (`window`, or the dense window it was cut from).
    pub(super) query: Window,
    /// Whether the leaf is the newest reach of a denser query ([`Leaf::is_cut`]).
    pub(super) cut: bool,
    /// The query's TotalCount, from its first page.
    pub(super) total: u64,
    /// Splits made on the way to the window.
    pub(super) splits: u64,
    pub(super) index: usize,
    pub(super) pages: usize,
    pub(super) page: Page,
}

/// The pages of every leaf window of `root`, oldest first, with requests ahead of the page handed
/// on as [`Extractor::ahead`] allows (the client's limit decides how many are in flight).
/// Leaves are found by [`plan_leaves`], which runs beside the pages: the next windows are
/// probed while the pages of the one before download.
pub(super) fn leaf_pages<'s>(
    ex: &'s Extractor<'s>,
    ctx: &'s Ctx<'s>,
    root: Window,
    root_probe: Option<Page>,
    cutting: bool,
) -> impl futures::Stream<Item = Result<LeafPage, SyncError>> + 's {
    let page_size = ex.page_size();
    let (leaves_tx, leaves_rx) = tokio::sync::mpsc::channel(ex.leaves_ahead());
    let pages = stream::unfold(leaves_rx, |mut rx| async move { rx.recv().await.map(|leaf| (leaf, rx)) })
        .flat_map(move |leaf| {
            let pages: Vec<BoxFuture<'s, Result<LeafPage, SyncError>>> = match leaf {
                Err(e) => vec![future::ready(Err(e)).boxed()],
                Ok(Leaf {
                    window,
                    query,
                    total,
                    probe: first,
                    deepest,
                    splits,
                }) => {
                    let cut = deepest.is_some();
                    // A cut leaf's pages run up to its deepest page, which the planner fetched.
                    let end = if cut { deepest_offset(page_size) } else { total };
                    let offsets: Vec<u64> = (page_size..end).step_by(page_size as usize).collect();
                    let count = offsets.len() + 1 + usize::from(cut);
                    let at = move |index: usize, page: Page| LeafPage {
                        window,
                        query,
                        cut,
                        total,
                        splits,
                        index,
                        pages: count,
                        page,
                    };
                    let fetched = offsets.into_iter().enumerate().map(move |(i, offset)| {
                        async move {
                            let page = ex.fetch_window_page(ctx, query, offset, page_size.min(MAX_REACH - offset)).await?;
                            Ok(at(i + 1, page))
                        }
                        .boxed()
                    });
                    std::iter::once(future::ready(Ok(at(0, first))).boxed())
                        .chain(fetched)
                        .chain(deepest.map(|page| future::ready(Ok(at(count - 1, page))).boxed()))
                        .collect()
                }
            };
            stream::iter(pages)
        })
        .read_ahead(ex.ahead());
    // The planner yields no pages of its own; it is polled with them, and dropped with them.
    let planner = stream::once(plan_leaves(ex, ctx, root, root_probe, cutting, leaves_tx)).filter_map(|()| future::ready(None));
    stream::select(planner, pages)
}

/// Finds the leaf windows of `root` with the [`LeafPlanner`] and HTTP, and sends them oldest
/// first, each with the pages the planner fetched (first, and deepest for a cut leaf). The
/// planner's requests run ahead of the pages, up to [`Extractor::probes_ahead`] of them and of
/// the pages it holds together, so the next windows are known before the pages of the one
/// before run out. Answers are taken while a leaf waits for room in the channel, so that a
/// retried request does not wait behind a full channel.
async fn plan_leaves(
    ex: &Extractor<'_>,
    ctx: &Ctx<'_>,
    root: Window,
    root_probe: Option<Page>,
    cutting: bool,
    leaves: tokio::sync::mpsc::Sender<Result<Leaf<Page>, SyncError>>,
) {
    let page_size = ex.page_size();
    // Until the first leaf is handed on, the reads hold no page: the planner may use their
    // share too, so that the windows after the first are probed and cut while its cuts follow
    // one another (every slot busy from the start).
    let mut ahead = ex.probes_ahead() + ex.read_ahead();
    let mut planner = LeafPlanner::new(root, MAX_REACH, cutting);
    let mut asks = futures::stream::FuturesUnordered::new();
    // A root the caller probed already: handed out to that probe, answered by its page.
    if let Some(first) = root_probe
        && let Some(ask) = planner.next_ask(0, ahead)
    {
        asks.push(future::ready((ask, Ok(first))).boxed());
    }
    loop {
        while let Some(ask) = planner.next_ask(asks.len(), ahead) {
            let (window, offset) = match ask {
                Ask::Count(window) => (window, 0),
                Ask::Deepest(window) => (window, deepest_offset(page_size)),
            };
            // Before the pages waiting for a slot: the reads wait for the leaves it finds.
            asks.push(async move { (ask, ex.fetch_planning_page(ctx, window, offset, page_size).await) }.boxed());
        }
        let front_ready = planner.has_next_leaf();
        let answer = tokio::select! {
            room = leaves.reserve(), if front_ready => {
                let (Ok(room), Some(leaf)) = (room, planner.next_leaf()) else { return };
                if leaf.splits > 0 {
                    tracing::debug!(stream = ctx.def.name, splits = leaf.splits, "Window above the offset limit; split.");
                }
                room.send(Ok(leaf));
                ahead = ex.probes_ahead();
                continue;
            }
            Some(answer) = asks.next(), if !asks.is_empty() => answer,
            // Every window was probed and handed on (`read_windows` checks that the leaves
            // covered the range).
            else => return,
        };
        let failure = match answer {
            (ask, Ok(page)) => {
                let total = page.total.unwrap_or(page.batch.num_rows() as u64);
                let planned = match ask {
                    Ask::Count(window) => planner.counted(window, total, page),
                    Ask::Deepest(window) => {
                        let oldest = ctx.def.cursor_field.and_then(|c| time_range(&page.batch, c).0);
                        planner.deepest(window, total, page, oldest)
                    }
                };
                match planned {
                    Ok(()) => continue,
                    Err(TooDense { total, source }) => SyncError::TooDense {
                        stream: ctx.def.name,
                        at: ctx.at(None),
                        total,
                        source,
                    },
                }
            }
            (_, Err(e)) => e,
        };
        // The read stops at the failure; the requests still in flight are dropped.
        let _ = leaves.send(Err(failure)).await;
        return;
    }
}

/// The offset of a dense window's deepest page: the last whole page under the reach.
pub(super) fn deepest_offset(page_size: u64) -> u64 {
    (MAX_REACH / page_size.max(1)).saturating_sub(1) * page_size
}
