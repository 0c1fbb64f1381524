//! The write-ahead log: a push is acknowledged only once it is in a segment file on
//! local disk and fsync'ed.
//!
//! One thread owns the open segment. Handlers send it their records; it takes every
//! record that arrived while it was busy, writes them with one `write`, syncs once
//! (group commit) and only then answers them all, so the cost of an fsync is shared by
//! every push that waited for it. Records synced are also kept in memory for the
//! flusher, which takes them together with a rotation: the segment is closed and a new
//! one opened, so the records taken are exactly those of the segments up to the closed
//! one, and those segments may be deleted once the rows are durable in the warehouse.
//!
//! Segment files `<id, 20 digits>.wal` hold records `[len u32][crc32 u32][payload]`
//! (little-endian), payload `[kind u8][received_at ms i64][json]`. On start every segment
//! is read in order; a record whose length runs past the end of its file or whose
//! checksum fails is a torn write of a crash: it and anything after it in that segment
//! were never acknowledged, so they are ignored.

use crate::core::push::PushKind;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

/// A segment is closed and a new one started past this size even without a flush, so
/// no single file grows without bound while the warehouse is unreachable.
const SEGMENT_BYTES: u64 = 64 << 20;
/// At most this many records per write+fsync (bounds one write's buffer).
const GROUP_MAX: usize = 8192;

/// One acknowledged push as the flusher needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: PushKind,
    pub received_ms: i64,
    pub json: String,
    /// The segment it is in.
    pub segment: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {message}")]
    Io { path: String, message: String },
    #[error("the write-ahead log has stopped")]
    Stopped,
}

enum Cmd {
    Append {
        kind: PushKind,
        received_ms: i64,
        json: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Close the segment, start the next; answer with the synced records not yet taken
    /// and the id of the last closed segment (everything up to it is in those records or
    /// was taken before).
    Rotate(oneshot::Sender<Result<(Vec<Entry>, u64), String>>),
}

/// Handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
    dir: PathBuf,
    status: Arc<Status>,
}

/// What the rest of the receiver may read without asking the thread.
#[derive(Default)]
pub struct Status {
    /// The last write+fsync failed (or the thread stopped): pushes cannot be made durable.
    pub failing: AtomicBool,
    /// Synced records not yet taken by a rotation.
    pub pending: AtomicUsize,
    /// Arrival (ms) of the oldest of them; `i64::MAX` when none.
    pub oldest_ms: AtomicI64,
}

impl Wal {
    /// Opens the folder (creating it), reads every segment in it and starts the writer
    /// thread on a new segment. Returns the records found: they were acknowledged once
    /// and are not yet known to be in the warehouse.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Entry>), WalError> {
        let io = |e: std::io::Error| WalError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut ids = segment_ids(dir).map_err(io)?;
        ids.sort_unstable();
        let mut replayed = Vec::new();
        for &id in &ids {
            let path = segment_path(dir, id);
            let bytes = std::fs::read(&path).map_err(|e| WalError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let (entries, torn) = decode_segment(&bytes, id);
            if torn {
                tracing::warn!(
                    segment = %path.display(),
                    "a torn record at the end of a write-ahead log segment was ignored (a crash during its write; it was never acknowledged)"
                );
            }
            replayed.extend(entries);
        }
        let next = ids.last().map_or(1, |l| l + 1);
        let status = Arc::new(Status {
            failing: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            oldest_ms: AtomicI64::new(i64::MAX),
        });
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            id: next,
            file: None,
            written: 0,
            pending: Vec::new(),
            status: status.clone(),
        };
        writer.open_segment().map_err(|message| WalError::Io {
            path: dir.display().to_string(),
            message,
        })?;
        std::thread::Builder::new()
            .name("receive-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok((
            Wal {
                tx,
                dir: dir.to_path_buf(),
                status,
            },
            replayed,
        ))
    }

    /// Appends a push and resolves once it is on disk (fsync'ed).
    pub async fn append(
        &self,
        kind: PushKind,
        received_ms: i64,
        json: String,
    ) -> Result<(), WalError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Cmd::Append {
                kind,
                received_ms,
                json,
                done,
            })
            .map_err(|_| WalError::Stopped)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(WalError::Io {
                path: self.dir.display().to_string(),
                message,
            }),
            Err(_) => Err(WalError::Stopped),
        }
    }

    /// Takes the synced records and closes their segments (see [`Cmd::Rotate`]).
    pub async fn rotate(&self) -> Result<(Vec<Entry>, u64), WalError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Cmd::Rotate(done))
            .map_err(|_| WalError::Stopped)?;
        match wait.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(message)) => Err(WalError::Io {
                path: self.dir.display().to_string(),
                message,
            }),
            Err(_) => Err(WalError::Stopped),
        }
    }

    /// Deletes every closed segment with an id up to `through`: their records are in
    /// the warehouse.
    pub fn delete_through(&self, through: u64) -> Result<(), WalError> {
        let io = |e: std::io::Error| WalError::Io {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        };
        for id in segment_ids(&self.dir).map_err(io)? {
            if id <= through {
                std::fs::remove_file(segment_path(&self.dir, id)).map_err(io)?;
            }
        }
        Ok(())
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether pushes can be made durable now.
    pub fn healthy(&self) -> bool {
        !self.status.failing.load(Ordering::Relaxed)
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn segment_ids(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Appends one record's bytes to `buf`.
fn encode_record(buf: &mut Vec<u8>, kind: PushKind, received_ms: i64, json: &str) {
    let len = 1 + 8 + json.len();
    let start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind.code());
    buf.extend_from_slice(&received_ms.to_le_bytes());
    buf.extend_from_slice(json.as_bytes());
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The records of one segment, and whether it ended in a torn record.
fn decode_segment(bytes: &[u8], segment: u64) -> (Vec<Entry>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 8) else {
            return (out, true);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            return (out, true);
        };
        if len < 9 || crc32fast::hash(payload) != crc {
            return (out, true);
        }
        let Some(kind) = PushKind::from_code(payload[0]) else {
            return (out, true);
        };
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&payload[1..9]);
        let Ok(json) = std::str::from_utf8(&payload[9..]) else {
            return (out, true);
        };
        out.push(Entry {
            kind,
            received_ms: i64::from_le_bytes(ms),
            json: json.to_string(),
            segment,
        });
        at += 8 + len;
    }
    (out, false)
}

struct Writer {
    dir: PathBuf,
    id: u64,
    file: Option<File>,
    written: u64,
    pending: Vec<Entry>,
    status: Arc<Status>,
}

impl Writer {
    fn open_segment(&mut self) -> Result<(), String> {
        let path = segment_path(&self.dir, self.id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        // The new name must survive a crash too.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", self.dir.display()))?;
        self.file = Some(file);
        self.written = 0;
        Ok(())
    }

    /// Closes the segment; the next write opens `id + 1`. Returns the closed id.
    fn close_segment(&mut self) -> u64 {
        self.file = None;
        let closed = self.id;
        self.id += 1;
        closed
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            let mut waiting: Vec<(Entry, oneshot::Sender<Result<(), String>>)> = Vec::new();
            for cmd in group {
                match cmd {
                    Cmd::Append {
                        kind,
                        received_ms,
                        json,
                        done,
                    } => {
                        encode_record(&mut buf, kind, received_ms, &json);
                        waiting.push((
                            Entry {
                                kind,
                                received_ms,
                                json,
                                segment: self.id,
                            },
                            done,
                        ));
                    }
                    Cmd::Rotate(done) => {
                        self.commit(&mut buf, &mut waiting);
                        let closed = self.close_segment();
                        let taken = std::mem::take(&mut self.pending);
                        self.status.pending.store(0, Ordering::Relaxed);
                        self.status.oldest_ms.store(i64::MAX, Ordering::Relaxed);
                        let _ = done.send(Ok((taken, closed)));
                    }
                }
            }
            self.commit(&mut buf, &mut waiting);
        }
        self.status.failing.store(true, Ordering::Relaxed);
    }

    /// Writes and syncs the buffered records, then answers their senders.
    fn commit(
        &mut self,
        buf: &mut Vec<u8>,
        waiting: &mut Vec<(Entry, oneshot::Sender<Result<(), String>>)>,
    ) {
        if waiting.is_empty() {
            return;
        }
        let result = self.write_sync(buf);
        buf.clear();
        if buf.capacity() > 8 << 20 {
            buf.shrink_to(1 << 20);
        }
        match result {
            Ok(()) => {
                self.status.failing.store(false, Ordering::Relaxed);
                for (entry, done) in waiting.drain(..) {
                    if self.pending.is_empty() {
                        self.status
                            .oldest_ms
                            .store(entry.received_ms, Ordering::Relaxed);
                    }
                    self.pending.push(entry);
                    // A handler that gave up (client gone) still has its push durable.
                    let _ = done.send(Ok(()));
                }
                self.status
                    .pending
                    .store(self.pending.len(), Ordering::Relaxed);
            }
            Err(message) => {
                tracing::error!(error = %message, "cannot make pushes durable");
                self.status.failing.store(true, Ordering::Relaxed);
                // What was written may be torn: start a new segment for the next group,
                // so no later acknowledged record sits behind the torn one.
                self.close_segment();
                for (_, done) in waiting.drain(..) {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
    }

    fn write_sync(&mut self, buf: &[u8]) -> Result<(), String> {
        if self.file.is_none() || self.written > SEGMENT_BYTES {
            if self.file.is_some() {
                self.close_segment();
            }
            self.open_segment()?;
        }
        let path = segment_path(&self.dir, self.id);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| format!("{} is not open", path.display()))?;
        file.write_all(buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let mut buf = Vec::new();
        encode_record(&mut buf, PushKind::Talk, 5, r#"{"a":1}"#);
        encode_record(&mut buf, PushKind::CallEvent, 6, r#"{"b":2}"#);
        let (all, torn) = decode_segment(&buf, 3);
        assert!(!torn);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].kind, PushKind::CallEvent);
        assert_eq!(all[1].json, r#"{"b":2}"#);
        // Cut anywhere inside the second record: only the first survives.
        let first_len = 8 + 9 + 7;
        for cut in first_len + 1..buf.len() {
            let (some, torn) = decode_segment(&buf[..cut], 3);
            assert!(torn);
            assert_eq!(some.len(), 1, "cut at {cut}");
        }
        // A flipped byte fails the checksum.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode_segment(&bad, 3).0.len(), 1);
    }

    #[tokio::test]
    async fn appended_records_are_replayed_until_rotated_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, replayed) = Wal::open(dir.path()).unwrap();
            assert!(replayed.is_empty());
            wal.append(PushKind::Talk, 1, "{}".into()).await.unwrap();
            wal.append(PushKind::Party, 2, "{}".into()).await.unwrap();
        }
        let (wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed.len(), 2);
        wal.append(PushKind::Talk, 3, "{}".into()).await.unwrap();
        let (taken, closed) = wal.rotate().await.unwrap();
        assert_eq!(taken.len(), 1);
        wal.delete_through(closed).unwrap();
        drop(wal);
        let (_wal, replayed) = Wal::open(dir.path()).unwrap();
        assert!(replayed.is_empty());
    }
}
