//! The advisory lock every destination holds while a run writes it (an exclusive `flock` on a
//! lock file beside it): one sync or webhook merge at a time. Readers do not take it; DuckDB's
//! own file lock is what they wait for (`duckdb::open`). "Locked" is known from this lock alone,
//! never from the text of another error.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::sinks::SinkError;

/// A held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DestinationLock {
    _file: File,
}

/// The lock file of a destination: `postmark.duckdb` -> `postmark.duckdb.lock`; a Parquet
/// directory's is inside it.
pub fn lock_path(dest: &Path, is_dir: bool) -> PathBuf {
    if is_dir {
        return dest.join(".postmark-elt.lock");
    }
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    dest.with_file_name(name)
}

impl DestinationLock {
    /// The writer's lock: fails with [`SinkError::Locked`] while any other run holds it.
    pub fn exclusive(path: &Path, dest: &str) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let outcome = file.try_lock();
        held(file, outcome, path, dest)
    }
}

/// The lock, or why it was not taken: another run holds it, or the lock file failed.
fn held(file: File, outcome: Result<(), std::fs::TryLockError>, path: &Path, dest: &str) -> Result<DestinationLock, SinkError> {
    match outcome {
        Ok(()) => Ok(DestinationLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(SinkError::Locked { dest: dest.to_string() }),
        Err(std::fs::TryLockError::Error(source)) => Err(SinkError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One writer at a time; a missing folder is an I/O error naming the path, not "locked".
    #[test]
    fn writers_exclude_writers() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_path(&dir.path().join("blocks.duckdb"), false);
        assert!(lock.ends_with("blocks.duckdb.lock"));
        let writer = DestinationLock::exclusive(&lock, "d").unwrap();
        assert!(matches!(DestinationLock::exclusive(&lock, "d"), Err(SinkError::Locked { .. })));
        drop(writer);
        assert!(DestinationLock::exclusive(&lock, "d").is_ok(), "released when dropped");
        let missing = lock_path(&dir.path().join("no/such/folder/locked.duckdb"), false);
        assert!(matches!(DestinationLock::exclusive(&missing, "d"), Err(SinkError::Io { .. })));
    }
}
