//! Output that a killed writer cannot leave half a line of.
//!
//! A Singer target reads the tap's stdout line by line and refuses a line cut short: the
//! Meltano SDK's targets (target-postgres) stop with "Unable to parse" and emit no state, so a
//! tap killed with SIGKILL while it writes would cost the target everything since its last
//! drain. A pipe takes a write of at most `PIPE_BUF` bytes whole or not at all (POSIX), so lines
//! are handed on in writes of whole lines of at most that size; only a line longer than it is
//! written on its own, and could still be cut.

use std::io::{self, Write};

/// The size POSIX guarantees pipe writes are atomic up to (4096 on Linux and macOS).
pub const PIPE_BUF: usize = 4096;

pub struct WholeLines<W: Write> {
    inner: W,
    /// Bytes not yet written: whole lines, then the start of the next one.
    pending: Vec<u8>,
}

impl<W: Write> WholeLines<W> {
    pub fn new(inner: W) -> Self {
        WholeLines {
            inner,
            pending: Vec::with_capacity(2 * PIPE_BUF),
        }
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes whole lines out of `pending`, `PIPE_BUF` bytes at most per write, while at least
    /// that much is waiting (or, with `all`, everything that ends a line; then what is left).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        let mut start = 0;
        while self.pending.len() - start >= PIPE_BUF || (all && start < self.pending.len()) {
            let rest = &self.pending[start..];
            let window = &rest[..rest.len().min(PIPE_BUF)];
            let end = match window.iter().rposition(|&b| b == b'\n') {
                Some(last) => last + 1,
                // A line longer than PIPE_BUF goes alone; an unfinished one waits for its end.
                None => match rest.iter().position(|&b| b == b'\n') {
                    Some(newline) => newline + 1,
                    None if all => rest.len(),
                    None => break,
                },
            };
            self.inner.write_all(&rest[..end])?;
            start += end;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

impl<W: Write> Write for WholeLines<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= PIPE_BUF {
            self.drain(false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain(true)?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.push(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every write is whole lines of at most PIPE_BUF bytes, except a longer line on its own;
    /// the bytes come out unchanged and in order, also when lines arrive in pieces.
    #[test]
    fn writes_are_whole_lines_within_pipe_buf() {
        let mut lines: Vec<String> = (0..2_000).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 300))).collect();
        lines.insert(700, format!("{}\n", "y".repeat(3 * PIPE_BUF)));
        let mut out = WholeLines::new(Writes::default());
        for line in &lines {
            // In three pieces, as the Singer sink writes a record.
            let (a, b) = line.split_at(line.len() / 3);
            let (b, c) = b.split_at(b.len() / 2);
            for piece in [a, b, c] {
                out.write_all(piece.as_bytes()).unwrap();
            }
        }
        out.flush().unwrap();
        let writes = out.into_inner().0;
        // Grouped (not a write per line), and handed on as they came (not all held to the end).
        let total: usize = lines.iter().map(String::len).sum();
        assert!(
            (total / PIPE_BUF..=2 * total / PIPE_BUF).contains(&writes.len()),
            "{} writes of {total} bytes",
            writes.len()
        );
        for w in &writes {
            assert_eq!(w.last(), Some(&b'\n'), "a write ends mid-line");
            assert!(
                w.len() <= PIPE_BUF || !w[..w.len() - 1].contains(&b'\n'),
                "a write of {} bytes holds several lines",
                w.len()
            );
        }
        assert_eq!(writes.concat(), lines.concat().into_bytes());
    }
}
