//! `Kind::FullTable`: the whole list every run (paged or in one request); the rows of the
//! server are replaced in one commit.

use futures::{StreamExt, TryStreamExt, stream};

use crate::streams::context::Ctx;
use crate::streams::discovery::{PartitionValue, ServerScope};
use crate::streams::error::SyncError;
use crate::streams::extract::{Page, PageDecoder};
use crate::streams::read::FirstRequest;
use crate::streams::read::ahead::ReadAhead;
use crate::streams::runner::{Extractor, page_query};
use crate::streams::summary::PartitionReport;
use crate::streams::{MAX_PAGE_SIZE, MAX_REACH, StreamDef};

pub fn first_request(ctx: &Ctx<'_>, paged: bool) -> FirstRequest {
    FirstRequest {
        path: ctx.path(None),
        query: ctx.query(if paged { page_query(0, MAX_PAGE_SIZE) } else { Vec::new() }),
        then: if paged {
            "pages of 500, replacing the server's rows"
        } else {
            "one request, replacing the server's rows"
        },
    }
}

/// Reads every partition of `server` and replaces its rows with them.
pub async fn read(
    ex: &Extractor<'_>,
    def: &'static StreamDef,
    decoder: &PageDecoder,
    server: &ServerScope,
    partitions: &[PartitionValue],
    paged: bool,
) -> Result<PartitionReport, SyncError> {
    let mut batches = Vec::new();
    let label = if partitions.len() == 1 {
        partitions[0].label.clone()
    } else {
        "all".to_string()
    };
    let mut report = PartitionReport::empty(def, server.id, &label);
    for partition in partitions {
        let ctx = Ctx::new(def, decoder, server, partition);
        if !paged {
            batches.push(ex.get_page(&ctx, &ctx.path(None), &ctx.query(Vec::new()), None).await?.batch);
            continue;
        }
        let first = ex.get_page(&ctx, &ctx.path(None), &ctx.query(page_query(0, MAX_PAGE_SIZE)), None).await?;
        let total = first.total.unwrap_or(first.batch.num_rows() as u64);
        if total > MAX_REACH {
            return Err(SyncError::TooManyRows {
                stream: def.name,
                at: ctx.at(None),
                total,
            });
        }
        let offsets: Vec<u64> = (MAX_PAGE_SIZE..total).step_by(MAX_PAGE_SIZE as usize).collect();
        let rest: Vec<Page> = stream::iter(offsets)
            .map(|offset| {
                let query = ctx.query(page_query(offset, MAX_PAGE_SIZE.min(MAX_REACH - offset)));
                let ctx = &ctx;
                async move { ex.get_page(ctx, &ctx.path(None), &query, None).await }
            })
            .read_ahead(ex.ahead())
            .try_collect()
            .await?;
        batches.push(first.batch);
        batches.extend(rest.into_iter().map(|p| p.batch));
    }
    report.records = batches.iter().map(|b| b.num_rows() as u64).sum();
    report.windows = 1;
    // Replace this server's rows (or all rows, for account-level streams) in one commit.
    ex.commits.replace(def, server.id, batches).await?;
    Ok(report)
}
