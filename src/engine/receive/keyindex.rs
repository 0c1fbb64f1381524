//! The keys of one push partition (`<table>/dt=YYYY-MM-DD`) on local disk, so the flusher
//! can tell an exact "already stored" without holding every key in memory.
//!
//! Layout, under `<SOBOT_SYNC_RECEIVE_WAL>/keys/<table>/dt=YYYY-MM-DD/`:
//! - `run-<id, 20 digits>.keys`: an immutable run, the sorted distinct 128-bit key hashes
//!   `[magic "SOBKEYS1"][count u64][count x key u128][crc32 of the keys u32]`
//!   (little-endian), written sequentially to a temporary name, synced, then renamed;
//! - `MANIFEST`: JSON naming the durable runs and the warehouse files whose keys they
//!   hold (replaced atomically: temporary file, sync, rename, sync of the folder).
//!
//! In memory: per run a Bloom filter (10 bits, about 1.25 bytes, per key; about 1% false
//! positives) and one fence key per [`BLOCK_KEYS`] keys (0.03 bytes per key), plus the keys
//! added since the last spill ([`PartitionKeys::add_file`]). A filter positive is confirmed
//! by reading the one block of the run file the fences point at (a single `pread`), so
//! the answer is exact: a false positive costs a read, never a dropped push.
//!
//! Runs are merged size-tiered: when [`FANOUT`] runs of the same size class (a power of
//! four) exist they are merged into one by a streaming k-way merge (buffered readers and
//! writer; memory does not grow with the partition), so a key is rewritten about
//! log4(partition keys / [`SPILL_KEYS`]) times and a partition has a few dozen runs at
//! most.
//!
//! The warehouse stays the source of truth: the flusher reads the keys of any file the
//! manifest does not cover, and rebuilds the index when it names a file that is gone or
//! when anything here is unreadable (see `flush.rs`). Keys added but not spilled are lost
//! in a crash, and so is nothing else: their files are not in the manifest yet, so their
//! keys are read again from the warehouse on the next start.

use fastbloom::BloomFilter;
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A partition's added keys are written to a run once this many are held.
pub const SPILL_KEYS: usize = 65_536;
/// Runs of one size class merged at once.
pub const FANOUT: usize = 4;
/// Keys per fence (one `pread` of 8 KiB confirms a filter positive).
pub const BLOCK_KEYS: usize = 512;
/// Bloom filter bits per key, and hashes (about 1% false positives).
const BITS_PER_KEY: usize = 10;
const HASHES: u32 = 7;
const MAGIC: &[u8; 8] = b"SOBKEYS1";
const HEADER: u64 = 16;
const MANIFEST: &str = "MANIFEST";
/// Runs below this size class share one (a few tiny spills at eviction are merged
/// together rather than each kept).
const MIN_CLASS: u32 = 5;
/// Buffer of each reader and of the writer of a merge.
const IO_BUF: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("key index {path}: {message}")]
    Io { path: String, message: String },
    /// A run or the manifest does not read back as written (truncated, bit rot, an
    /// unknown format): the partition's index must be rebuilt from the warehouse.
    #[error("key index {path} is damaged: {why}")]
    Damaged { path: String, why: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |e| IndexError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn damaged(path: &Path, why: impl Into<String>) -> IndexError {
    IndexError::Damaged {
        path: path.display().to_string(),
        why: why.into(),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    next_run: u64,
    runs: Vec<RunMeta>,
    /// Warehouse files (names inside the partition folder) whose keys are in the runs.
    files: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RunMeta {
    id: u64,
    keys: u64,
}

/// One immutable run: its file (kept open for reads), filter and fences.
struct Run {
    id: u64,
    count: u64,
    file: File,
    filter: BloomFilter,
    /// The first key of each block of [`BLOCK_KEYS`].
    fences: Vec<u128>,
}

impl Run {
    fn class(&self) -> u32 {
        size_class(self.count)
    }

    /// Whether `key` is in the run: the filter, then one block read from disk.
    fn contains(&self, key: u128, path: &Path) -> Result<bool, IndexError> {
        if !self.filter.contains_hash(key as u64) {
            return Ok(false);
        }
        let i = self.fences.partition_point(|f| *f <= key);
        if i == 0 {
            return Ok(false);
        }
        let start = (i - 1) * BLOCK_KEYS;
        let n = (self.count as usize - start).min(BLOCK_KEYS);
        let mut buf = [0u8; BLOCK_KEYS * 16];
        let buf = &mut buf[..n * 16];
        read_at(&self.file, buf, HEADER + start as u64 * 16).map_err(io_err(path))?;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = key_at(buf, mid);
            match k.cmp(&key) {
                std::cmp::Ordering::Equal => return Ok(true),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(false)
    }

    fn memory(&self) -> usize {
        self.filter.num_bits() / 8 + self.fences.capacity() * 16
    }
}

fn key_at(buf: &[u8], i: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[i * 16..i * 16 + 16]);
    u128::from_le_bytes(b)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// The size class of a run of `count` keys: floor(log4(count)), at least [`MIN_CLASS`].
fn size_class(count: u64) -> u32 {
    ((64 - count.max(1).leading_zeros()) / 2).max(MIN_CLASS)
}

fn empty_filter(keys: usize) -> BloomFilter {
    BloomFilter::with_num_bits((keys.max(1) * BITS_PER_KEY).max(64)).hashes(HASHES)
}

/// The keys of one partition: durable runs plus the keys added since the last spill.
pub struct PartitionKeys {
    dir: PathBuf,
    runs: Vec<Run>,
    /// Keys of stored files not yet in a run.
    unspilled: HashSet<u128>,
    /// Files whose keys are in `unspilled` (covered once it is spilled).
    pending_files: Vec<String>,
    /// Files whose keys are in the runs.
    covered: BTreeSet<String>,
    next_run: u64,
}

impl PartitionKeys {
    /// Opens the index in `dir` (an empty one when there is none). Run files the
    /// manifest does not name (a crash between writing a run and the manifest, or
    /// between the manifest and deleting merged runs) are deleted. Every run is read
    /// through once to check it and to build its filter.
    pub fn open(dir: &Path) -> Result<PartitionKeys, IndexError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mpath = dir.join(MANIFEST);
        let manifest = match std::fs::read(&mpath) {
            Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes)
                .map_err(|e| damaged(&mpath, format!("unreadable manifest: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest {
                version: 1,
                next_run: 1,
                runs: Vec::new(),
                files: Vec::new(),
            },
            Err(e) => return Err(io_err(&mpath)(e)),
        };
        if manifest.version != 1 {
            return Err(damaged(
                &mpath,
                format!("unknown manifest version {}", manifest.version),
            ));
        }
        let named: HashSet<u64> = manifest.runs.iter().map(|r| r.id).collect();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stray =
                name.ends_with(".tmp") || run_id(&name).is_some_and(|id| !named.contains(&id));
            if stray {
                std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            }
        }
        let mut runs = Vec::with_capacity(manifest.runs.len());
        for meta in &manifest.runs {
            runs.push(load_run(&run_path(dir, meta.id), meta.id, meta.keys)?);
        }
        Ok(PartitionKeys {
            dir: dir.to_path_buf(),
            runs,
            unspilled: HashSet::new(),
            pending_files: Vec::new(),
            covered: manifest.files.into_iter().collect(),
            next_run: manifest.next_run,
        })
    }

    /// Deletes whatever index `dir` holds and opens an empty one (a rebuild: the
    /// caller then adds every warehouse file of the partition).
    pub fn reset(dir: &Path) -> Result<PartitionKeys, IndexError> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dir)(e)),
        }
        Self::open(dir)
    }

    /// Whether the keys of warehouse file `name` (inside the partition) are known.
    pub fn covers(&self, name: &str) -> bool {
        self.covered.contains(name) || self.pending_files.iter().any(|f| f == name)
    }

    /// Files whose keys are in durable runs.
    pub fn covered_files(&self) -> impl Iterator<Item = &str> {
        self.covered.iter().map(String::as_str)
    }

    /// Whether `key` was added (exact).
    pub fn contains(&self, key: u128) -> Result<bool, IndexError> {
        if self.unspilled.contains(&key) {
            return Ok(true);
        }
        for run in &self.runs {
            if run.contains(key, &run_path(&self.dir, run.id))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records the keys of a stored warehouse file. They are held in memory until
    /// [`Self::spill`]; call [`Self::spill_if_full`] after.
    pub fn add_file(&mut self, name: String, keys: impl IntoIterator<Item = u128>) {
        self.unspilled.extend(keys);
        self.pending_files.push(name);
    }

    /// Keys held in memory (not yet in a run).
    pub fn unspilled(&self) -> usize {
        self.unspilled.len()
    }

    /// Durable runs now (tests, logs).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Keys in durable runs.
    pub fn durable_keys(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum()
    }

    /// Bytes of memory the filters, fences and unspilled keys take (approximately).
    pub fn memory(&self) -> usize {
        self.runs.iter().map(Run::memory).sum::<usize>() + self.unspilled.capacity() * 17
    }

    /// Spills once [`SPILL_KEYS`] keys are held.
    pub fn spill_if_full(&mut self) -> Result<(), IndexError> {
        if self.unspilled.len() >= SPILL_KEYS {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the keys held in memory as a new run, records it and the files it covers
    /// in the manifest, then merges runs of a size class that has [`FANOUT`]. On an
    /// error nothing in memory changed (the keys stay held; a run written before the
    /// manifest failed is a stray file, deleted on the next open).
    pub fn spill(&mut self) -> Result<(), IndexError> {
        if self.pending_files.is_empty() && self.unspilled.is_empty() {
            return Ok(());
        }
        let mut new_run = None;
        if !self.unspilled.is_empty() {
            let mut keys: Vec<u128> = self.unspilled.iter().copied().collect();
            keys.sort_unstable();
            let id = self.take_id();
            let n = keys.len();
            new_run = Some(write_run(&self.dir, id, keys.into_iter().map(Ok), n)?);
        }
        let mut covered = self.covered.clone();
        covered.extend(self.pending_files.iter().cloned());
        let mut metas: Vec<RunMeta> = self.runs.iter().map(meta).collect();
        metas.extend(new_run.iter().map(meta));
        self.write_manifest(&metas, &covered)?;
        self.covered = covered;
        self.runs.extend(new_run);
        self.pending_files.clear();
        self.unspilled = HashSet::new();
        self.merge_full_classes()
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_run;
        self.next_run += 1;
        id
    }

    /// Merges [`FANOUT`] runs of one size class while some class has that many.
    fn merge_full_classes(&mut self) -> Result<(), IndexError> {
        loop {
            let mut classes: Vec<u32> = self.runs.iter().map(Run::class).collect();
            classes.sort_unstable();
            let full = classes
                .windows(FANOUT)
                .find(|w| w[0] == w[FANOUT - 1])
                .map(|w| w[0]);
            let Some(class) = full else {
                return Ok(());
            };
            let picked: Vec<usize> = (0..self.runs.len())
                .filter(|&i| self.runs[i].class() == class)
                .take(FANOUT)
                .collect();
            self.merge(&picked)?;
        }
    }

    /// Streams the runs at `picked` into one new run, records it, deletes the old ones.
    fn merge(&mut self, picked: &[usize]) -> Result<(), IndexError> {
        let total: u64 = picked.iter().map(|&i| self.runs[i].count).sum();
        let mut readers = Vec::with_capacity(picked.len());
        for &i in picked {
            let run = &self.runs[i];
            readers.push(RunReader::open(&run_path(&self.dir, run.id), run.count)?);
        }
        let id = self.take_id();
        let merged = write_run(&self.dir, id, KWayMerge::new(readers)?, total as usize)?;
        let mut metas: Vec<RunMeta> = self
            .runs
            .iter()
            .enumerate()
            .filter(|(i, _)| !picked.contains(i))
            .map(|(_, r)| meta(r))
            .collect();
        metas.push(meta(&merged));
        let covered = self.covered.clone();
        self.write_manifest(&metas, &covered)?;
        let mut old = Vec::new();
        let mut kept = Vec::new();
        for (i, r) in std::mem::take(&mut self.runs).into_iter().enumerate() {
            if picked.contains(&i) {
                old.push(r.id);
            } else {
                kept.push(r);
            }
        }
        kept.push(merged);
        self.runs = kept;
        for id in old {
            let p = run_path(&self.dir, id);
            if let Err(e) = std::fs::remove_file(&p) {
                // Harmless: a run the manifest does not name is deleted at the next open.
                tracing::warn!(run = %p.display(), error = %e, "cannot delete a merged key run");
            }
        }
        Ok(())
    }

    fn write_manifest(&self, runs: &[RunMeta], files: &BTreeSet<String>) -> Result<(), IndexError> {
        let m = Manifest {
            version: 1,
            next_run: self.next_run,
            runs: runs.to_vec(),
            files: files.iter().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| IndexError::Io {
            path: self.dir.join(MANIFEST).display().to_string(),
            message: e.to_string(),
        })?;
        let tmp = self.dir.join("MANIFEST.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(MANIFEST))?;
            crate::io::fs::sync_dir(&self.dir)
        };
        write().map_err(io_err(&self.dir.join(MANIFEST)))
    }
}

fn meta(r: &Run) -> RunMeta {
    RunMeta {
        id: r.id,
        keys: r.count,
    }
}

fn run_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("run-{id:020}.keys"))
}

fn run_id(name: &str) -> Option<u64> {
    name.strip_prefix("run-")?
        .strip_suffix(".keys")?
        .parse()
        .ok()
}

/// Writes sorted keys (duplicates dropped) as run `id`: temporary name, sync, rename,
/// sync of the folder; builds its filter and fences on the way. `at_most` sizes the
/// filter.
fn write_run(
    dir: &Path,
    id: u64,
    keys: impl Iterator<Item = Result<u128, IndexError>>,
    at_most: usize,
) -> Result<Run, IndexError> {
    let path = run_path(dir, id);
    let tmp = dir.join(format!("run-{id:020}.tmp"));
    let result = (|| {
        let ioe = io_err(&tmp);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&tmp)
            .map_err(&ioe)?;
        let mut w = BufWriter::with_capacity(IO_BUF, file);
        w.write_all(MAGIC).map_err(&ioe)?;
        w.write_all(&0u64.to_le_bytes()).map_err(&ioe)?;
        let mut filter = empty_filter(at_most);
        let mut fences = Vec::with_capacity(at_most / BLOCK_KEYS + 1);
        let mut crc = crc32fast::Hasher::new();
        let mut count = 0u64;
        let mut last: Option<u128> = None;
        for key in keys {
            let key = key?;
            match last {
                Some(l) if key == l => continue,
                Some(l) if key < l => return Err(damaged(&tmp, "keys out of order")),
                _ => {}
            }
            if (count as usize).is_multiple_of(BLOCK_KEYS) {
                fences.push(key);
            }
            let b = key.to_le_bytes();
            w.write_all(&b).map_err(&ioe)?;
            crc.update(&b);
            filter.insert_hash(key as u64);
            count += 1;
            last = Some(key);
        }
        w.write_all(&crc.finalize().to_le_bytes()).map_err(&ioe)?;
        let mut file = w.into_inner().map_err(|e| ioe(e.into_error()))?;
        file.seek(SeekFrom::Start(8)).map_err(&ioe)?;
        file.write_all(&count.to_le_bytes()).map_err(&ioe)?;
        file.sync_all().map_err(&ioe)?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        crate::io::fs::sync_dir(dir).map_err(io_err(dir))?;
        fences.shrink_to_fit();
        Ok(Run {
            id,
            count,
            file,
            filter,
            fences,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a run through: checks its length, order and checksum, builds filter and fences.
fn load_run(path: &Path, id: u64, expected: u64) -> Result<Run, IndexError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            damaged(path, "the run named by the manifest is missing")
        } else {
            io_err(path)(e)
        }
    })?;
    let len = file.metadata().map_err(io_err(path))?.len();
    // The count comes from the manifest, which a damaged disk can make anything.
    let want = expected
        .checked_mul(16)
        .and_then(|b| b.checked_add(HEADER + 4))
        .ok_or_else(|| damaged(path, format!("the manifest claims {expected} keys")))?;
    if len != want {
        return Err(damaged(path, format!("{len} bytes, expected {want}")));
    }
    let mut reader = RunReader::open(path, expected)?;
    let mut filter = empty_filter(expected as usize);
    let mut fences = Vec::with_capacity(expected as usize / BLOCK_KEYS + 1);
    let mut crc = crc32fast::Hasher::new();
    let mut last: Option<u128> = None;
    let mut i = 0usize;
    while let Some(key) = reader.next_key()? {
        if last.is_some_and(|l| key <= l) {
            return Err(damaged(path, "keys out of order"));
        }
        if i.is_multiple_of(BLOCK_KEYS) {
            fences.push(key);
        }
        crc.update(&key.to_le_bytes());
        filter.insert_hash(key as u64);
        last = Some(key);
        i += 1;
    }
    let mut tail = [0u8; 4];
    reader
        .inner
        .read_exact(&mut tail)
        .map_err(|_| damaged(path, "no checksum"))?;
    if u32::from_le_bytes(tail) != crc.finalize() {
        return Err(damaged(path, "checksum mismatch"));
    }
    Ok(Run {
        id,
        count: expected,
        file,
        filter,
        fences,
    })
}

/// Sequential reader of a run's keys.
struct RunReader {
    path: PathBuf,
    inner: BufReader<File>,
    left: u64,
}

impl RunReader {
    fn open(path: &Path, expected: u64) -> Result<RunReader, IndexError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mut inner = BufReader::with_capacity(IO_BUF, file);
        let mut head = [0u8; HEADER as usize];
        inner
            .read_exact(&mut head)
            .map_err(|_| damaged(path, "no header"))?;
        if &head[..8] != MAGIC {
            return Err(damaged(path, "not a key run"));
        }
        let count = u64::from_le_bytes(head[8..].try_into().unwrap_or([0; 8]));
        if count != expected {
            return Err(damaged(
                path,
                format!("{count} keys, the manifest says {expected}"),
            ));
        }
        Ok(RunReader {
            path: path.to_path_buf(),
            inner,
            left: count,
        })
    }

    fn next_key(&mut self) -> Result<Option<u128>, IndexError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut b = [0u8; 16];
        self.inner
            .read_exact(&mut b)
            .map_err(|_| damaged(&self.path, "truncated"))?;
        self.left -= 1;
        Ok(Some(u128::from_le_bytes(b)))
    }
}

/// The sorted union of sorted runs (smallest key first; equal keys come out once per
/// run and `write_run` drops the repeats).
struct KWayMerge {
    readers: Vec<RunReader>,
    heap: BinaryHeap<std::cmp::Reverse<(u128, usize)>>,
}

impl KWayMerge {
    fn new(mut readers: Vec<RunReader>) -> Result<KWayMerge, IndexError> {
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(k) = r.next_key()? {
                heap.push(std::cmp::Reverse((k, i)));
            }
        }
        Ok(KWayMerge { readers, heap })
    }
}

impl Iterator for KWayMerge {
    type Item = Result<u128, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        let std::cmp::Reverse((key, i)) = self.heap.pop()?;
        match self.readers[i].next_key() {
            Ok(Some(k)) => self.heap.push(std::cmp::Reverse((k, i))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random keys (splitmix64 pairs).
    fn keys(seed: u64, n: usize) -> Vec<u128> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| (u128::from(next()) << 64) | u128::from(next()))
            .collect()
    }

    fn assert_exact(idx: &PartitionKeys, present: &[u128], absent: &[u128]) {
        for k in present {
            assert!(idx.contains(*k).unwrap(), "{k:x} was added");
        }
        for k in absent {
            assert!(!idx.contains(*k).unwrap(), "{k:x} was never added");
        }
    }

    #[test]
    fn contains_is_exact_across_spills_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = PartitionKeys::open(dir.path()).unwrap();
        let all = keys(1, 20 * 3_000);
        let absent = keys(2, 50_000);
        for (i, chunk) in all.chunks(3_000).enumerate() {
            idx.add_file(format!("f{i}.parquet"), chunk.iter().copied());
            assert_exact(&idx, &chunk[..10], &absent[..10]);
            idx.spill().unwrap();
        }
        // 20 spills of 3,000 keys (one size class): merged by fours, then the merges by
        // fours again; never more than FANOUT - 1 runs of a class remain.
        assert!(idx.runs() < 2 * FANOUT, "{} runs", idx.runs());
        assert_eq!(idx.durable_keys(), all.len() as u64);
        assert_exact(&idx, &all, &absent);
        // Only the runs and the manifest are left on disk.
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), idx.runs() + 1, "{files:?}");
        // The filters are about 1.25 bytes per key, and most absent keys never read disk.
        assert!(idx.memory() < all.len() * 2, "{} bytes", idx.memory());
    }

    #[test]
    fn reopening_finds_every_spilled_key_and_the_covered_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, absent) = (keys(3, 5_000), keys(4, 700), keys(5, 5_000));
        {
            let mut idx = PartitionKeys::open(dir.path()).unwrap();
            idx.add_file("a.parquet".into(), a.iter().copied());
            idx.spill().unwrap();
            // Added, not spilled: lost with the process, and its file is not covered.
            idx.add_file("b.parquet".into(), b.iter().copied());
            assert!(idx.covers("b.parquet"));
        }
        let idx = PartitionKeys::open(dir.path()).unwrap();
        assert!(idx.covers("a.parquet"));
        assert!(!idx.covers("b.parquet"));
        assert_eq!(idx.covered_files().collect::<Vec<_>>(), ["a.parquet"]);
        assert_exact(&idx, &a, &absent);
        assert_exact(&idx, &[], &b);
    }

    #[test]
    fn a_repeated_key_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = PartitionKeys::open(dir.path()).unwrap();
        let k = keys(6, 4 * 100);
        for i in 0..4 {
            // Each file repeats the first key (a warehouse with a duplicate row).
            let mut ks = k[i * 100..(i + 1) * 100].to_vec();
            ks.push(k[0]);
            idx.add_file(format!("f{i}"), ks);
            idx.spill().unwrap();
        }
        assert_eq!(idx.runs(), 1, "four runs of one class merged");
        assert_eq!(idx.durable_keys(), 400);
        assert_exact(&idx, &k, &keys(7, 100));
    }

    #[test]
    fn damaged_runs_and_manifests_are_reported_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = PartitionKeys::open(dir.path()).unwrap();
        idx.add_file("a".into(), keys(8, 2_000));
        idx.spill().unwrap();
        drop(idx);
        let run = run_path(dir.path(), 1);
        let bytes = std::fs::read(&run).unwrap();
        // Truncated.
        std::fs::write(&run, &bytes[..bytes.len() - 100]).unwrap();
        assert!(matches!(
            PartitionKeys::open(dir.path()),
            Err(IndexError::Damaged { .. })
        ));
        // A flipped bit in a key.
        let mut flipped = bytes.clone();
        flipped[HEADER as usize + 77] ^= 0x10;
        std::fs::write(&run, &flipped).unwrap();
        assert!(matches!(
            PartitionKeys::open(dir.path()),
            Err(IndexError::Damaged { .. })
        ));
        // A manifest claiming more keys than a file can hold (no overflow, no panic).
        std::fs::write(&run, &bytes).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        let huge = manifest.replace("\"keys\":2000", &format!("\"keys\":{}", u64::MAX));
        assert_ne!(huge, manifest, "the manifest names the run's key count");
        std::fs::write(dir.path().join(MANIFEST), huge).unwrap();
        assert!(matches!(
            PartitionKeys::open(dir.path()),
            Err(IndexError::Damaged { .. })
        ));
        std::fs::write(dir.path().join(MANIFEST), manifest).unwrap();
        // Missing.
        std::fs::remove_file(&run).unwrap();
        assert!(matches!(
            PartitionKeys::open(dir.path()),
            Err(IndexError::Damaged { .. })
        ));
        // A manifest that is not one.
        std::fs::write(dir.path().join(MANIFEST), b"{\"version\":").unwrap();
        assert!(matches!(
            PartitionKeys::open(dir.path()),
            Err(IndexError::Damaged { .. })
        ));
        // Reset starts over with nothing covered.
        let idx = PartitionKeys::reset(dir.path()).unwrap();
        assert_eq!((idx.runs(), idx.covered_files().count()), (0, 0));
    }

    #[test]
    fn stray_runs_of_a_crash_are_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = PartitionKeys::open(dir.path()).unwrap();
        idx.add_file("a".into(), keys(9, 100));
        idx.spill().unwrap();
        drop(idx);
        // A run written but never named by a manifest, and a half-written one.
        std::fs::write(run_path(dir.path(), 7), b"SOBKEYS1").unwrap();
        std::fs::write(dir.path().join("run-00000000000000000008.tmp"), b"x").unwrap();
        let idx = PartitionKeys::open(dir.path()).unwrap();
        assert_eq!(idx.runs(), 1);
        assert!(!run_path(dir.path(), 7).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
