//! A reader polling the DuckDB file once a second while a sync writes it, as an analyst's
//! notebook or dashboard would: each poll opens the file read-only twice, once without waiting
//! (as DuckDB's own clients do: fails if a commit holds the file) and once as `postmark-elt
//! query` does (waits for the commit), and runs a count on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postmark_elt::sinks::duckdb::open::{Access, open_waiting};

#[derive(Debug, Default)]
pub struct ReaderFigures {
    pub polls: u32,
    /// Opens without waiting that failed: a commit held the file.
    pub plain_failed: u32,
    /// How long each waiting open took, in ms, until its count returned.
    pub waits_ms: Vec<f64>,
}

pub fn poll_while(path: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<ReaderFigures> {
    std::thread::spawn(move || {
        let mut figures = ReaderFigures::default();
        while !stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            if path.exists() {
                figures.polls += 1;
                if open_waiting(&path, Access::ReadOnly, Duration::ZERO, "bench").is_err() {
                    figures.plain_failed += 1;
                }
                let started = Instant::now();
                let counted = postmark_elt::sinks::duckdb::read_only(&path, "main", Duration::from_secs(120)).map(|c| {
                    // The table appears with the first commit.
                    let _ = c.query_row("SELECT count(*) FROM messages_outbound", [], |r| r.get::<_, i64>(0));
                });
                if counted.is_ok() {
                    figures.waits_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
            std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
        }
        figures
    })
}
