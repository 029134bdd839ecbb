//! The commit queue's rows on disk. Commits are applied in groups of a few row groups (see
//! `GROUP_COMMIT_ROWS`), and the rows waiting for the next durable commit once took up to
//! 100 MiB of memory; they now wait in Arrow IPC files beside the database, written as each
//! commit is queued and read back, batch by batch, when the group is applied. A spill file
//! holds only rows whose commit has not reached the database, so it is worth nothing after a
//! crash (the next run reads those rows again) and the next sink on the file removes it.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

/// One queued commit's rows of one stream, in a file of their own.
pub(super) struct Spilled {
    path: PathBuf,
    pub rows: usize,
}

/// Where the spill files of the database at `db` go: beside it (on the disk that takes the
/// rows anyway, not a temporary directory that may live in memory), hidden.
fn prefix(db: &Path) -> (PathBuf, String) {
    let dir = db.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (dir, format!(".{name}.queue-"))
}

impl Spilled {
    /// Writes `batches` (all of `schema`) to the `n`th spill file of the database at `db`.
    pub fn write(db: &Path, n: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Spilled, ArrowError> {
        let (dir, prefix) = prefix(db);
        let path = dir.join(format!("{prefix}{n}.arrow"));
        // Made first, so that a failed write removes what it wrote.
        let mut spilled = Spilled { path, rows: 0 };
        let mut writer = StreamWriter::try_new(BufWriter::new(File::create(&spilled.path)?), schema)?;
        for batch in batches {
            writer.write(batch)?;
            spilled.rows += batch.num_rows();
        }
        writer.finish()?;
        Ok(spilled)
    }

    /// The rows, batch by batch.
    pub fn read(&self) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>>, ArrowError> {
        StreamReader::try_new(BufReader::new(File::open(&self.path)?), None)
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        // Applied or abandoned: either way the rows are no longer needed.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes spill files a crashed run left beside the database at `db` (its rows were never
/// committed). Called with the destination's lock held, so no other sink is using them.
pub(super) fn remove_leftovers(db: &Path) {
    let (dir, prefix) = prefix(db);
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
