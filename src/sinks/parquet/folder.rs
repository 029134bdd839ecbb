//! Folder operations of the Parquet sink: replacing several files of a partition at once
//! (exchanging it with a staging copy in one rename), writing a file atomically, and removing
//! what a crash left.

use super::*;

/// Exchanges two folders in one rename (`renameat2(RENAME_EXCHANGE)`, or `renamex_np` with
/// `RENAME_SWAP` on macOS). `Ok(false)`: the platform or file system cannot.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
pub(super) fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::NOTSUP || e == Errno::PERM => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
pub(super) fn exchange(_: &Path, _: &Path) -> std::io::Result<bool> {
    Ok(false)
}

impl ParquetSink {
    /// Replaces several files of a partition at once: a staging folder gets hard links to the
    /// files that stay and the merged file (named as the newest file it replaces), then it is
    /// exchanged with the partition's folder in one rename, so a reader sees the old files or
    /// the new ones, never old and new copies of a key together, nor neither.
    pub(super) fn swap_partition(
        &self,
        folder: &Path,
        files: &[PartFile],
        rewrite: &[usize],
        fill: impl FnOnce(&mut File) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let staging = self
            .dir
            .join(STAGING_DIR)
            .join(folder.strip_prefix(&self.dir).unwrap_or(folder).to_string_lossy().replace(['/', '\\'], "~"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let newest = rewrite.iter().map(|&i| &files[i]).max_by_key(|f| f.seq).map(|f| f.name()).unwrap_or_default();
        let merged = staging.join(&newest);
        let mut file = File::create(&merged).map_err(io(&merged))?;
        fill(&mut file)?;
        file.sync_all().map_err(io(&merged))?;
        drop(file);
        let linked = files
            .iter()
            .enumerate()
            .filter(|(i, _)| !rewrite.contains(i))
            .try_for_each(|(_, f)| fs::hard_link(&f.path, staging.join(f.name())));
        let swapped = self.exchange_folders
            && linked.is_ok()
            && File::open(&staging).and_then(|d| d.sync_all()).is_ok()
            && exchange(&staging, folder).map_err(io(folder))?;
        if !swapped {
            // No hard links or no atomic exchange here: the merged file replaces the newest old
            // one, then the others go. A crash in between leaves old copies of the new keys,
            // which the next run (reading from the same bookmark) removes.
            fs::rename(&merged, folder.join(&newest)).map_err(io(folder))?;
            for f in rewrite.iter().map(|&i| &files[i]).filter(|f| f.name() != newest) {
                fs::remove_file(&f.path).map_err(io(&f.path))?;
            }
        }
        if let Some(parent) = folder.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
        }
        File::open(folder).and_then(|d| d.sync_all()).map_err(io(folder))?;
        // The staging folder now holds the replaced files.
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
        let _ = fs::remove_dir(self.dir.join(STAGING_DIR));
        Ok(())
    }
}

pub(super) fn remove_leftovers(dir: &Path) {
    // A staging folder left by a crash holds copies of files, or files already replaced.
    let _ = fs::remove_dir_all(dir.join(STAGING_DIR));
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_leftovers(&path);
        } else if is_temporary(&path) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The temporary name of a file being written: `.NAME.tmp-PID` beside it. The leading dot makes
/// every folder reader skip it (pyarrow's dataset, Spark and Hive skip names starting with `.`
/// or `_`; DuckDB's `*.parquet` glob does not match it), even while a crash leaves it behind.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A temporary file a crash left: ours (`.NAME.tmp-PID`), or an earlier version's `NAME.tmp-PID`.
fn is_temporary(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.contains(".tmp-") && (name.starts_with('.') || path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.starts_with("tmp-")))
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
pub(super) fn write_atomically(path: &Path, fill: impl FnOnce(&mut File) -> Result<(), SinkError>) -> Result<(), SinkError> {
    let tmp = temporary_name(path);
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    fill(&mut file)?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        // The rename is durable only once the directory is synced.
        File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file being written, or left by a crash, has a name folder readers skip (a leading dot,
    /// as pyarrow's dataset, Spark and Hive skip); opening the sink removes it, and an earlier
    /// version's `NAME.tmp-PID` too.
    #[test]
    fn temporary_files_are_hidden_from_readers_and_cleaned() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let part = dir.path().join("messages_outbound/date=2026-11-30");
        fs::create_dir_all(&part).unwrap_or_else(|e| panic!("{e}"));
        let tmp = temporary_name(&part.join("part-000001.parquet"));
        let name = tmp.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(name.starts_with(".part-000001.parquet.tmp-"), "{name}");
        let old_style = part.join("part-000002.tmp-77");
        let data = part.join("part-000001.parquet");
        for f in [&tmp, &old_style, &data] {
            fs::write(f, b"x").unwrap_or_else(|e| panic!("{e}"));
        }
        remove_leftovers(dir.path());
        assert!(!tmp.exists() && !old_style.exists());
        assert!(data.exists(), "a data file was removed");
    }
}
