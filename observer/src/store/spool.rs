//! The spool: batches the store could not take yet, in one append-only file, sent
//! oldest first when it comes back.
//!
//! Each batch is a header line `B <run_id> <first_seq> <rows> <start_min> <start_max>
//! <body_len>\n` followed
//! by its body (the `JSONEachRow` insert body, verbatim). Every append is fsynced, so a
//! batch acknowledged as spooled survives a crash of the observer or the machine. A
//! batch sent is only forgotten in memory until the whole file is sent; then the file
//! is truncated. A restart therefore sends the spool from its start again, and the
//! sink's look-up by `(run_id, seq)` range skips what is already stored.
//!
//! The file is created mode 0600 under the rules of `live::outfile` (it holds peer
//! names and IDs, and a live observer opens it as root).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::live::outfile::{open_output, Existing};

use super::Batch;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: batch at byte {offset} changed on disk")]
    Changed { path: PathBuf, offset: u64 },
    #[error(transparent)]
    Output(#[from] crate::live::outfile::OutputError),
}

/// Where a batch is in the file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    len: u64,
    rows: u64,
}

pub struct Spool {
    path: PathBuf,
    /// Appends (`O_APPEND`) and truncation.
    writer: File,
    /// Reads back; the same file as `writer`, checked at open.
    file: File,
    max_bytes: u64,
    /// File length: the end of the last complete batch.
    end: u64,
    /// Batches not sent yet, oldest first.
    pending: VecDeque<Entry>,
}

impl Spool {
    /// Opens (or creates) the spool at `path`; batches an earlier run left are
    /// pending. A batch cut short by a crash while it was appended is removed.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Opened under the rules of the live outputs (no symlink, ours, one link, a safe
        // directory: a live observer starts as root), then once more for reading, which
        // must be the very file the checks passed.
        let writer = open_output(path, Existing::Append)?;
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        let (w, r) = (writer.metadata().map_err(io)?, file.metadata().map_err(io)?);
        if (w.dev(), w.ino()) != (r.dev(), r.ino()) {
            return Err(SpoolError::Changed {
                path: path.to_path_buf(),
                offset: 0,
            });
        }
        let len = file.metadata().map_err(io)?.len();
        let mut pending = VecDeque::new();
        let mut reader = BufReader::new(&mut file);
        let mut offset = 0u64;
        while offset < len {
            match read_header(&mut reader) {
                Ok(Some(h)) if offset + h.len + h.body_len <= len => {
                    reader.seek_relative(h.body_len as i64).map_err(io)?;
                    let entry_len = h.len + h.body_len;
                    pending.push_back(Entry {
                        offset,
                        len: entry_len,
                        rows: h.rows,
                    });
                    offset += entry_len;
                }
                _ => break,
            }
        }
        if offset < len {
            tracing::warn!(
                path = %path.display(),
                bytes = len - offset,
                "spool ends with an incomplete batch (a crash while appending): removed"
            );
            writer.set_len(offset).map_err(io)?;
            writer.sync_all().map_err(io)?;
        }
        Ok(Spool {
            path: path.to_path_buf(),
            writer,
            file,
            max_bytes,
            end: offset,
            pending,
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> SpoolError + '_ {
        |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn pending_records(&self) -> u64 {
        self.pending.iter().map(|e| e.rows).sum()
    }

    /// Bytes still to send (what the bound is about is the file: see [`Self::append`]).
    pub fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|e| e.len).sum()
    }

    /// Appends `batch` and fsyncs; `false` (nothing written) when the file would
    /// outgrow the bound.
    pub fn append(&mut self, batch: &Batch) -> Result<bool, SpoolError> {
        let header = format!(
            "B {} {} {} {} {} {}\n",
            batch.run_id,
            batch.first_seq,
            batch.rows,
            batch.starts.0,
            batch.starts.1,
            batch.body.len()
        );
        let len = (header.len() + batch.body.len()) as u64;
        if self.end + len > self.max_bytes {
            return Ok(false);
        }
        let end = self.end;
        let r = (|| {
            self.writer.write_all(header.as_bytes())?;
            self.writer.write_all(&batch.body)?;
            self.writer.sync_data()
        })();
        if let Err(e) = r {
            // Leave no partial batch behind for the next open to trip on.
            let _ = self.writer.set_len(end);
            return Err(self.io()(e));
        }
        self.end += len;
        self.pending.push_back(Entry {
            offset: end,
            len,
            rows: batch.rows,
        });
        Ok(true)
    }

    /// The oldest batch not sent yet.
    pub fn peek(&mut self) -> Result<Option<Batch>, SpoolError> {
        let Some(entry) = self.pending.front().copied() else {
            return Ok(None);
        };
        let changed = || SpoolError::Changed {
            path: self.path.clone(),
            offset: entry.offset,
        };
        self.file
            .seek(SeekFrom::Start(entry.offset))
            .map_err(self.io())?;
        let mut reader = BufReader::new(&mut self.file);
        let h = read_header(&mut reader)
            .map_err(|source| SpoolError::Io {
                path: self.path.clone(),
                source,
            })?
            .ok_or_else(changed)?;
        if h.len + h.body_len != entry.len || h.rows != entry.rows {
            return Err(changed());
        }
        let mut body = vec![0; h.body_len as usize];
        reader
            .read_exact(&mut body)
            .map_err(|source| SpoolError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(Some(Batch {
            run_id: h.run_id,
            first_seq: h.first_seq,
            rows: h.rows,
            starts: h.starts,
            body,
        }))
    }

    /// Removes the file when nothing waits in it (the end of a run that stored
    /// everything leaves no empty spool behind). A live observer that dropped root
    /// may not be allowed to: the file then stays, empty.
    pub fn remove_if_empty(&self) {
        if self.pending.is_empty() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::debug!(path = %self.path.display(), error = %e, "empty spool left in place");
            }
        }
    }

    /// Forgets the oldest batch (it is stored); empties the file once all are.
    pub fn pop(&mut self) -> Result<(), SpoolError> {
        self.pending.pop_front();
        if self.pending.is_empty() {
            self.writer.set_len(0).map_err(self.io())?;
            self.writer.sync_all().map_err(self.io())?;
            self.end = 0;
        }
        Ok(())
    }
}

/// A batch's header line, parsed.
struct Header {
    /// Bytes of the line, newline included.
    len: u64,
    run_id: String,
    first_seq: u64,
    rows: u64,
    starts: (u64, u64),
    body_len: u64,
}

/// The next header; `None` when the bytes are not a complete one.
fn read_header(reader: &mut impl BufRead) -> std::io::Result<Option<Header>> {
    // A header is short; a longer "line" is not one.
    let mut line = Vec::new();
    let n = reader.take(256).read_until(b'\n', &mut line)?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(&line[..n - 1]) else {
        return Ok(None);
    };
    let words: Vec<&str> = text.split(' ').collect();
    let ["B", run, numbers @ ..] = words.as_slice() else {
        return Ok(None);
    };
    let numbers: Option<Vec<u64>> = numbers.iter().map(|w| w.parse().ok()).collect();
    let Some(&[first_seq, rows, min, max, body_len]) = numbers.as_deref() else {
        return Ok(None);
    };
    Ok(Some(Header {
        len: n as u64,
        run_id: (*run).to_string(),
        first_seq,
        rows,
        starts: (min, max),
        body_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u64, rows: u64) -> Batch {
        Batch {
            run_id: "r1".into(),
            first_seq: first,
            rows,
            starts: (first, first + rows),
            body: format!("{{\"seq\":{first}}}\n")
                .repeat(rows as usize)
                .into_bytes(),
        }
    }

    #[test]
    fn batches_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool");
        let mut s = Spool::open(&path, 1 << 20).expect("open");
        assert!(s.is_empty());
        for i in 0..3 {
            assert!(s.append(&batch(i * 10, 10)).expect("append"));
        }
        assert_eq!(s.peek().expect("peek"), Some(batch(0, 10)));
        s.pop().expect("pop");
        drop(s);
        // A reopen sends everything again (the sink skips what is stored).
        let mut s = Spool::open(&path, 1 << 20).expect("reopen");
        assert_eq!(s.pending_records(), 30);
        let mut got = Vec::new();
        while let Some(b) = s.peek().expect("peek") {
            got.push(b.first_seq);
            s.pop().expect("pop");
        }
        assert_eq!(got, [0, 10, 20]);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);
        s.remove_if_empty();
        assert!(!path.exists());
    }

    #[test]
    fn a_symlink_is_refused_and_a_new_spool_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"not ours to touch").expect("write");
        let link = dir.path().join("spool");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(Spool::open(&link, 1 << 20).is_err());
        assert_eq!(std::fs::read(&target).expect("read"), b"not ours to touch");
        let fresh = dir.path().join("fresh");
        Spool::open(&fresh, 1 << 20).expect("open");
        let mode = std::fs::metadata(&fresh)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_bound_refuses_and_a_torn_tail_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool");
        let (one, two) = (batch(0, 5), batch(5, 5));
        let size = |b: &Batch| {
            let h = format!(
                "B r1 {} 5 {} {} {}\n",
                b.first_seq,
                b.starts.0,
                b.starts.1,
                b.body.len()
            );
            (h.len() + b.body.len()) as u64
        };
        let both = size(&one) + size(&two);
        let mut s = Spool::open(&path, both + 1).expect("open");
        assert!(s.append(&one).expect("append"));
        assert!(s.append(&two).expect("append"));
        assert!(!s.append(&batch(10, 5)).expect("append"), "over the bound");
        drop(s);
        // A crash in the middle of an append.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"B r1 10 5 10 15 999\n{\"seq\"")
            .expect("write");
        drop(f);
        let s = Spool::open(&path, 1 << 20).expect("reopen");
        assert_eq!(s.pending_records(), 10);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), both);
    }
}
