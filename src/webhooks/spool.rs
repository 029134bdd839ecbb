//! The durable spool: an append-only file of JSON lines, one accepted event per line.
//!
//! Appends are group-committed: the writer thread takes every event waiting, writes them, calls
//! fsync once, then acknowledges each (only then does the HTTP handler answer 200). The current
//! file is rotated into numbered segments, which [`merge`](crate::webhooks::merge) loads. A
//! crash leaves at worst a half-written last line, which was never acknowledged and is skipped.
//! A write that fails (disk full, EIO) may leave a partial line too: the file is cut back to its
//! last synced length (or, if that fails, set aside as a segment) before anything else is
//! written, so a later line never follows a partial one; until that succeeds, appends fail.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;

const CURRENT: &str = "current.jsonl";
/// Events written with one fsync at most.
const GROUP: usize = 4096;

struct Job {
    line: Vec<u8>,
    ack: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Appends events durably; see the module documentation.
pub struct SpoolWriter {
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Segments waiting to be merged, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Renames the current file into a segment, if it holds anything. Returns whether it did.
fn rotate(dir: &Path, file: &mut Option<File>) -> std::io::Result<bool> {
    let current = dir.join(CURRENT);
    let size = fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Ok(false);
    }
    if let Some(f) = file.take() {
        f.sync_all()?;
    }
    // Nanoseconds keep names unique and ordered.
    let name = format!("segment-{:020}.jsonl", Utc::now().timestamp_nanos_opt().unwrap_or(0));
    fs::rename(&current, dir.join(name))?;
    fsync_dir(dir)?;
    Ok(true)
}

fn open_current(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))
}

/// The file being appended to, and its length after the last write that was synced.
struct Current {
    dir: PathBuf,
    file: Option<File>,
    good_len: u64,
    /// A write failed and the file could not be cut back yet: nothing may be appended.
    torn: bool,
}

impl Current {
    /// Writes `buf` and syncs it; on failure, cuts the file back to its last good length.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.heal()?;
        if self.file.is_none() {
            let file = open_current(&self.dir)?;
            self.good_len = file.metadata()?.len();
            self.file = Some(file);
        }
        let f = self.file.as_mut().ok_or_else(|| std::io::Error::other("no spool file"))?;
        let written = f.write_all(buf).and_then(|()| f.sync_data());
        match written {
            Ok(()) => {
                self.good_len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.torn = true;
                if let Err(cut) = self.heal() {
                    tracing::error!(error = %cut, "Cannot cut the webhook spool back after a failed write; refusing events until it can.");
                }
                Err(e)
            }
        }
    }

    /// After a failed write: the file back to its last good length, synced; if that fails, the
    /// file renamed into a segment (its partial last line is skipped as torn) and a new one begun.
    fn heal(&mut self) -> std::io::Result<()> {
        if !self.torn {
            return Ok(());
        }
        let cut = match self.file.as_ref() {
            Some(f) => f.set_len(self.good_len).and_then(|()| f.sync_all()),
            None => Ok(()),
        };
        if cut.is_err() {
            self.file = None;
            rotate(&self.dir, &mut None)?;
            self.good_len = 0;
        }
        self.torn = false;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<bool> {
        self.heal()?;
        self.good_len = 0;
        rotate(&self.dir, &mut self.file)
    }
}

impl SpoolWriter {
    /// Starts the writer thread on `dir`. A current file left by a crash becomes a segment.
    /// The merger finds segments by listing the folder on its own timer.
    pub fn start(dir: &Path, rotate_every: Duration) -> std::io::Result<SpoolWriter> {
        fs::create_dir_all(dir)?;
        rotate(dir, &mut None)?;
        let dir = dir.to_path_buf();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("spool".to_string()).spawn(move || {
            let mut current = Current {
                dir,
                file: None,
                good_len: 0,
                torn: false,
            };
            let mut last_rotation = Instant::now();
            loop {
                let wait = rotate_every.saturating_sub(last_rotation.elapsed()).max(Duration::from_millis(1));
                let mut jobs = Vec::new();
                let disconnected = match rx.recv_timeout(wait) {
                    Ok(job) => {
                        jobs.push(job);
                        while jobs.len() < GROUP {
                            match rx.try_recv() {
                                Ok(j) => jobs.push(j),
                                Err(_) => break,
                            }
                        }
                        false
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    Err(mpsc::RecvTimeoutError::Disconnected) => true,
                };
                if !jobs.is_empty() {
                    let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.line.len() + 1).sum());
                    for j in &jobs {
                        buf.extend_from_slice(&j.line);
                        buf.push(b'\n');
                    }
                    let outcome = current.append(&buf).map_err(|e| format!("spool write failed: {e}"));
                    for j in jobs {
                        j.ack.send(outcome.clone()).ok();
                    }
                }
                if disconnected || last_rotation.elapsed() >= rotate_every {
                    if let Err(e) = current.rotate() {
                        tracing::error!(error = %e, "Cannot rotate the webhook spool.");
                    }
                    last_rotation = Instant::now();
                }
                if disconnected {
                    break;
                }
            }
        })?;
        Ok(SpoolWriter {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends one event line; returns once it is on disk.
    pub async fn append(&self, line: Vec<u8>) -> Result<(), String> {
        let (ack, done) = tokio::sync::oneshot::channel();
        {
            let tx = self.tx.lock().map_err(|_| "the spool is broken")?;
            tx.as_ref()
                .ok_or("the spool is closed")?
                .send(Job { line, ack })
                .map_err(|_| "the spool writer stopped".to_string())?;
        }
        done.await.map_err(|_| "the spool writer stopped".to_string())?
    }

    /// Stops the writer after everything queued is written, and rotates the last file.
    /// Appends after this fail (and are answered 503).
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            t.join().ok();
        }
    }
}
