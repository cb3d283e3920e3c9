//! The RocksDB state backend: each operator subtask's store under `dir/job/operator/subtask`,
//! in one RocksDB instance, or in several *segments* after a rescale (see [`store`]).
//!
//! Writes skip the write-ahead log: a working directory is never reopened after a crash (the
//! next [`open_store`](StateBackend::open_store) of its scope deletes it), so durability comes
//! only from [`snapshot_to`](KeyedStore::snapshot_to), which flushes the memtables and writes a
//! RocksDB checkpoint of every segment (SST files hard-linked, metadata copied) and the segment
//! list ([`manifest`]), and fsyncs them.
//!
//! A running job holds the lock `dir/job/_lock` ([`lock_job`](StateBackend::lock_job)), so that
//! a second process of the same job cannot delete the working directories of the first.

mod barrier;
mod manifest;
mod rescale;
mod segment;
mod store;

use super::backend::{
    dir_name, prefix_successor, BackendOverrides, KeyedStore, SnapshotPart, StateBackend, StoreScope,
};
use super::cache::CachedStore;
use super::KeyGroupRange;
use super::MemtableAtBarrier;
use crate::ownership::dir_lock::DirLock;
use crate::ownership::{OwnerInfo, OwnerRecord};
use crate::{Error, Result};
use manifest::SegmentEntry;
use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteBufferManager, WriteOptions, DB};
use segment::Segment;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use store::RocksDbStore;

/// The lock file of a job's part of the state directory, `dir/<job>/_lock` (no store's
/// working directory has this name: step directories carry a hash suffix).
const STATE_LOCK_FILE: &str = "_lock";
/// Default memtable size of each store. A checkpoint flushes the memtable in its synchronous
/// phase, so this bounds the pause: measured on 1 GB of state, 16 MiB halved the median
/// pause against 64 MiB (56 ms against 121 ms) at the same throughput.
const DEFAULT_WRITE_BUFFER_SIZE: usize = 16 << 20;
/// Default size of SST files written by compaction: small enough that a compaction rewrites
/// (and an incremental checkpoint uploads again) only the files whose key range changed.
const DEFAULT_TARGET_FILE_SIZE: u64 = 8 << 20;
/// Default size of the block cache shared by all stores of a backend.
const DEFAULT_BLOCK_CACHE_SIZE: usize = 128 << 20;
/// Default of [`RocksDbBackend::segment_merge_threshold`]: a rescale rewrites an overlap
/// smaller than this into the largest one instead of keeping it as a segment. Rewriting runs
/// at about 170 MB/s per subtask here (a rescale of 1 GB that rewrote ~170 MB took ~1 s more
/// than a plain restore), so 16 MiB costs at most ~0.1 s, the time a plain restore of 1 GB
/// takes; larger overlaps are linked, which costs the same whatever their size.
const DEFAULT_SEGMENT_MERGE_THRESHOLD: u64 = 16 << 20;
/// Default of [`RocksDbBackend::cache_size`]: no write-back cache. The cache is opt-in
/// ([`RECOMMENDED_CACHE_SIZE`] for a small hot set) because it pays only where a small set of
/// keys takes most updates: 1.8x on the 100 k-account running sum, but 0.81x with state far
/// larger than the cache and 0.87x on the payment example, whose keys are written once or twice
/// each (`docs/benchmarks.md`, "State cache").
pub const DEFAULT_CACHE_SIZE: usize = 0;
/// A cache size for jobs with a hot set of keys: 32 MiB per store. A store is one keyed step's
/// subtask, so a worker running `k` keyed steps at parallelism `p` spends about
/// `k * p * 32 MiB` on it (the budget counts keys, values and a per-entry overhead): 64 MiB for
/// one step at parallelism 2, 512 MiB for 4 steps at parallelism 4, next to RocksDB's 128 MiB
/// block cache. 32 MiB holds about 150 k entries of a small aggregate (a 20-byte key and an
/// 8-byte value).
pub const RECOMMENDED_CACHE_SIZE: usize = 32 << 20;
/// At most this many segments per store: a rescale rewrites the smallest overlaps beyond it
/// into the largest, whatever their size, so that databases per subtask stay bounded.
const MAX_SEGMENTS: usize = 8;
/// A state backend keeping each subtask's state in its own RocksDB instance on local disk.
///
/// Clones share the block cache.
#[derive(Clone)]
pub struct RocksDbBackend {
    dir: PathBuf,
    write_buffer_size: usize,
    target_file_size: u64,
    block_cache_size: usize,
    segment_merge_threshold: u64,
    /// Budget of each store's write-back cache in bytes; 0: no cache.
    cache_size: usize,
    memtable_at_barrier: MemtableAtBarrier,
    /// Created on first use so that the builder methods can still change its size.
    cache: Arc<OnceLock<Cache>>,
}

impl fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("dir", &self.dir)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("target_file_size", &self.target_file_size)
            .field("block_cache_size", &self.block_cache_size)
            .field("segment_merge_threshold", &self.segment_merge_threshold)
            .field("cache_size", &self.cache_size)
            .field("memtable_at_barrier", &self.memtable_at_barrier)
            .finish()
    }
}

impl RocksDbBackend {
    /// A backend whose stores live under `dir` (created by [`validate`](StateBackend::validate)
    /// if missing). Whatever a previous run left there is deleted as stores are opened.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RocksDbBackend {
            dir: dir.into(),
            write_buffer_size: DEFAULT_WRITE_BUFFER_SIZE,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            block_cache_size: DEFAULT_BLOCK_CACHE_SIZE,
            segment_merge_threshold: DEFAULT_SEGMENT_MERGE_THRESHOLD,
            cache_size: DEFAULT_CACHE_SIZE,
            memtable_at_barrier: MemtableAtBarrier::default(),
            cache: Arc::new(OnceLock::new()),
        }
    }

    /// Sets the memtable size of each store (default 16 MiB). A store holds up to two
    /// memtables, and checkpoints flush them.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }

    /// Sets the target size of SST files written by compaction (default 8 MiB). Smaller files
    /// make incremental checkpoints finer-grained: a compaction rewrites, and the next
    /// checkpoint uploads, only files whose key range changed.
    pub fn target_file_size(mut self, bytes: u64) -> Self {
        self.target_file_size = bytes;
        self
    }

    /// Sets the size of the block cache shared by all stores of this backend (default 128 MiB).
    pub fn block_cache_size(mut self, bytes: usize) -> Self {
        self.block_cache_size = bytes;
        self.cache = Arc::new(OnceLock::new());
        self
    }

    /// Sets the size below which a rescale rewrites the state an old subtask's segment gives a
    /// new subtask into the new subtask's largest segment, instead of keeping it as a segment
    /// of its own (default 16 MiB; see [`store`] for segments). Larger overlaps are linked
    /// from the checkpoint, as a plain restore does; smaller ones cost little to rewrite and
    /// would otherwise add a database each.
    pub fn segment_merge_threshold(mut self, bytes: u64) -> Self {
        self.segment_merge_threshold = bytes;
        self
    }

    /// Sets the budget of the write-back cache in front of each store, in bytes (default
    /// [`DEFAULT_CACHE_SIZE`], 0: none; [`RECOMMENDED_CACHE_SIZE`] for a hot set of keys): keys,
    /// values and a per-entry overhead.
    /// Reads that hit it and writes skip RocksDB; dirty entries reach RocksDB in write batches,
    /// the oldest first once they take 1/16 of the budget, the rest at each checkpoint, and
    /// before scans (see [`CachedStore`](super::cache::CachedStore)). State larger than the
    /// budget works, with misses read from RocksDB. A checkpoint contains the same entries with
    /// or without it.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// The budget of each store's write-back cache in bytes (0: none).
    pub fn cache_budget(&self) -> usize {
        self.cache_size
    }

    /// Sets what a store's snapshot at a barrier does with the writes still in its memtable
    /// (default [`MemtableAtBarrier::Flush`]): flush them into an SST file, or keep them and
    /// include RocksDB's write-ahead log in the snapshot, which makes the pause at a barrier a
    /// copy of the log instead of a flush. A checkpoint of either kind restores with either
    /// setting.
    pub fn memtable_at_barrier(mut self, choice: MemtableAtBarrier) -> Self {
        self.memtable_at_barrier = choice;
        self
    }

    /// `store` behind the write-back cache, when it has a budget.
    fn cached(&self, store: RocksDbStore) -> Box<dyn KeyedStore> {
        if self.cache_size == 0 {
            Box::new(store)
        } else {
            Box::new(CachedStore::new(Box::new(store), self.cache_size))
        }
    }

    /// The directory holding the stores' working directories.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options of every store: LZ4 (zstd at the bottom level), bloom filters for point
    /// reads, a block cache shared by all stores, and what [`MemtableAtBarrier`] needs.
    fn options(&self) -> Options {
        let cache = self.cache.get_or_init(|| Cache::new_lru_cache(self.block_cache_size));
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(self.write_buffer_size);
        opts.set_target_file_size_base(self.target_file_size);
        // Level sizes follow from the file size: L1 holds about ten files.
        opts.set_max_bytes_for_level_base(self.target_file_size * 10);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        opts.set_keep_log_file_num(2);
        // A store is never reopened from its working directory (opening deletes it; a restore
        // starts from a snapshot, and snapshots flush what they need), so closing it must not
        // flush the memtable: that flush was most of the time a cancelled attempt took to
        // stop. The Rust binding has no setter for this option; the options string parser
        // copies the others.
        let needed = barrier::configure(self.memtable_at_barrier, &mut opts);
        let extra = if needed.is_empty() {
            "avoid_flush_during_shutdown=true".to_string()
        } else {
            format!("avoid_flush_during_shutdown=true;{needed}")
        };
        match opts.get_options_from_string(&extra) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "RocksDB rejected avoid_flush_during_shutdown; stores flush when closed");
                opts
            }
        }
    }

    /// The working directory of the store of `scope`.
    fn work_dir(&self, scope: &StoreScope) -> Result<PathBuf> {
        std::path::absolute(self.dir.join(scope.relative_dir()))
            .map_err(|e| Error::io(format!("resolving the state directory {}", self.dir.display()), e))
    }

    /// The memtable budget of one store, shared by its segments: what one database holds at
    /// most (two memtables), so that a store of several segments holds no more. A write that
    /// finds the budget spent waits for a flush, as a write to one database whose two
    /// memtables are full does.
    fn memtable_budget(&self) -> WriteBufferManager {
        WriteBufferManager::new_write_buffer_manager(2 * self.write_buffer_size, true)
    }

    /// Deletes what a previous run left in the working directory `work` and creates it empty.
    fn reset_work_dir(work: &Path) -> Result<()> {
        match fs::remove_dir_all(work) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("deleting the stale store {}", work.display()), e)),
        }
        fs::create_dir_all(work).map_err(|e| Error::io(format!("creating {}", work.display()), e))
    }

    /// Opens segment `id` owning `ranges` in the working directory `work`, empty or from segment
    /// `from.1` of the snapshot `from.0` (its files linked, see [`copy_snapshot`]).
    fn open_segment(
        &self,
        work: &Path,
        id: String,
        ranges: Vec<KeyGroupRange>,
        from: Option<(&Path, &str)>,
        memtables: &WriteBufferManager,
    ) -> Result<Segment> {
        let dir = Segment::dir(work, &id);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut opts = self.options();
        opts.set_write_buffer_manager(memtables);
        let db = match from {
            None => DB::open(&opts, &dir)
                .map_err(|e| Error::from(e).context(format!("opening RocksDB store {}", dir.display())))?,
            Some((src, src_id)) => {
                let restoring = || format!("restoring RocksDB store {} from {}", dir.display(), src.display());
                copy_snapshot(src, src_id, &dir).map_err(|e| e.context(restoring()))?;
                DB::open(&opts, &dir).map_err(|e| {
                    Error::checkpoint(format!("opening the restored store: {}", restoring())).with_source(e)
                })?
            }
        };
        Ok(Segment {
            id,
            ranges,
            db,
            at_barrier: self.memtable_at_barrier,
        })
    }

    /// Options of the writes of every store: through the write-ahead log only when snapshots
    /// include it.
    fn write_options(&self) -> WriteOptions {
        barrier::write_options(self.memtable_at_barrier)
    }

    /// Opens the store of `scope`; see [`StateBackend::open_store`]. A snapshot restores with
    /// the same segments (same ids, so that the next checkpoint references their files).
    ///
    /// # After a crash
    /// The working directory is deleted by the next open of the scope; the snapshot is only
    /// read (its files are linked, never written).
    fn open(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<RocksDbStore> {
        let work = self.work_dir(scope)?;
        let guard = OpenGuard::acquire(&work)?;
        Self::reset_work_dir(&work)?;
        let memtables = self.memtable_budget();
        let entries = match restore_from {
            None => vec![SegmentEntry {
                id: String::new(),
                ranges: vec![scope.key_groups],
            }],
            Some(src) => {
                let restoring = || format!("restoring RocksDB store {} from {}", work.display(), src.display());
                let entries = manifest::read(src).map_err(|e| e.context(restoring()))?;
                let entries = entries.unwrap_or_else(|| {
                    vec![SegmentEntry {
                        id: String::new(),
                        ranges: vec![scope.key_groups],
                    }]
                });
                check_covers(&entries, scope.key_groups).map_err(|e| e.context(restoring()))?;
                entries
            }
        };
        let segments = entries
            .into_iter()
            .map(|e| {
                let from = restore_from.map(|src| (src, e.id.as_str()));
                self.open_segment(&work, e.id.clone(), e.ranges, from, &memtables)
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(store = %work.display(), restore_from = ?restore_from, segments = segments.len(), "opened store");
        RocksDbStore::new(segments, self.write_options(), memtables, guard)
    }
}

/// Checks that the segments of a snapshot own exactly the key groups `owned` of the store
/// restoring it.
fn check_covers(entries: &[SegmentEntry], owned: KeyGroupRange) -> Result<()> {
    let mut ranges: Vec<KeyGroupRange> = entries.iter().flat_map(|e| e.ranges.iter().copied()).collect();
    ranges.sort_by_key(|r| r.start);
    let mut next = owned.start as usize;
    let contiguous = ranges.iter().all(|r| {
        let ok = r.start as usize == next;
        next = r.end as usize + 1;
        ok
    });
    if contiguous && next == owned.end as usize + 1 {
        return Ok(());
    }
    Err(Error::checkpoint(format!(
        "the snapshot's segments own key groups {ranges:?}, the store owns {}..={}",
        owned.start, owned.end
    )))
}

impl StateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn local_dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }

    fn for_worker(&self, worker: u32) -> Option<std::sync::Arc<dyn StateBackend>> {
        let mut b = self.clone();
        b.dir = self.dir.join(format!("worker-{worker}"));
        Some(std::sync::Arc::new(b))
    }

    fn validate(&self) -> Result<()> {
        let fail = |what: &str, e| {
            Error::config(format!("RocksDB state directory {} {what}", self.dir.display())).with_source(e)
        };
        fs::create_dir_all(&self.dir).map_err(|e| fail("cannot be created", e))?;
        let probe = self.dir.join(format!(".weir-write-probe-{}", std::process::id()));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .map_err(|e| fail("is not writable", e))?;
        fs::remove_file(&probe).map_err(|e| fail("does not let a file be removed", e))
    }

    fn lock_job(&self, job: &str) -> Result<Option<DirLock>> {
        let job_dir = self.dir.join(dir_name(job));
        let record = OwnerRecord {
            epoch: 0,
            owner: OwnerInfo::this_process(job),
        };
        let resource = format!("the RocksDB state directory {} of job \"{job}\"", job_dir.display());
        DirLock::acquire(&job_dir.join(STATE_LOCK_FILE), &record, &resource).map(Some)
    }

    fn with_overrides(&self, overrides: &BackendOverrides) -> Option<Arc<dyn StateBackend>> {
        let mut b = self.clone();
        if let Some(bytes) = overrides.cache_size {
            b = b.cache_size(bytes);
        }
        if let Some(choice) = overrides.memtable_at_barrier {
            b = b.memtable_at_barrier(choice);
        }
        Some(Arc::new(b))
    }

    fn open_store(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<Box<dyn KeyedStore>> {
        Ok(self.cached(self.open(scope, restore_from)?))
    }

    fn open_store_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<Box<dyn KeyedStore>> {
        Ok(self.cached(self.open_rescaled(scope, parts)?))
    }
}

/// Fsyncs every file of the (flat) checkpoint `dir`, `dir` itself and its entry in `parent`;
/// returns the file names, sorted.
fn sync_snapshot(dir: &Path, parent: Option<&Path>) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        File::open(entry.path())?.sync_all()?;
        files.push(PathBuf::from(entry.file_name()));
    }
    File::open(dir)?.sync_all()?;
    if let Some(parent) = parent {
        File::open(parent)?.sync_all()?;
    }
    files.sort();
    Ok(files)
}

/// Fills the empty working directory `work` with the files of segment `id` of the snapshot
/// `src` (see [`manifest`]): immutable SST and blob files are hard-linked when possible (RocksDB
/// never modifies them, so `src` stays intact), everything else is copied.
fn copy_snapshot(src: &Path, id: &str, work: &Path) -> Result<()> {
    let unusable = |what: String| Error::checkpoint(what);
    let files = manifest::files_of(src, id)?;
    if !files.iter().any(|(_, name)| name == "CURRENT") {
        let segment = if id.is_empty() {
            String::new()
        } else {
            format!(" of segment {id}")
        };
        return Err(unusable(format!(
            "{} is not a RocksDB snapshot (no CURRENT file{segment})",
            src.display()
        )));
    }
    for (from, name) in files {
        let to = work.join(&name);
        let immutable = matches!(
            Path::new(&name).extension().and_then(|e| e.to_str()),
            Some("sst" | "blob")
        );
        let linked = immutable && fs::hard_link(&from, &to).is_ok();
        if !linked {
            fs::copy(&from, &to)
                .map_err(|e| unusable(format!("copying {} to {}", from.display(), to.display())).with_source(e))?;
        }
    }
    Ok(())
}

/// Working directories of the stores open in this process.
static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Marks a working directory as in use while its store is open, so that opening the same scope
/// again cannot delete the files of a live database.
struct OpenGuard(PathBuf);

impl OpenGuard {
    fn acquire(work: &Path) -> Result<Self> {
        let mut open = OPEN_DIRS.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.insert(work.to_path_buf()) {
            return Err(Error::external(
                true,
                format!(
                    "the RocksDB store in {} is still open; close it before opening its scope again",
                    work.display()
                ),
            ));
        }
        Ok(OpenGuard(work.to_path_buf()))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        OPEN_DIRS.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{scan_all, scope};
    use super::*;
    use crate::state::MemoryBackend;
    use crate::ErrorKind;
    use std::os::unix::fs::MetadataExt;

    // With a 64 MiB cache: every entry of a test stays cached until a snapshot.
    super::super::conformance::conformance_tests!(|root: &Path| small(root).cache_size(64 << 20));

    /// The suite with a cache of a few entries: every few writes flush and evict.
    mod tiny_cache {
        use super::*;
        crate::state::conformance::conformance_tests!(|root: &Path| small(root).cache_size(400));
    }

    /// The suite with a cache of a few dozen entries, a few of them dirty: writes are written
    /// back continuously, oldest first, between and at snapshots.
    mod small_cache {
        use super::*;
        crate::state::conformance::conformance_tests!(|root: &Path| small(root).cache_size(16 * 1024));
    }

    /// The suite on RocksDB alone.
    mod no_cache {
        use super::*;
        crate::state::conformance::conformance_tests!(|root: &Path| small(root).cache_size(0));
    }

    /// The suite with snapshots that keep the memtable and include the write-ahead log.
    mod log_at_barrier {
        use super::*;
        crate::state::conformance::conformance_tests!(|root: &Path| small(root)
            .cache_size(0)
            .memtable_at_barrier(MemtableAtBarrier::Log));
    }

    /// The same with a small cache in front, written back between and at snapshots.
    mod log_at_barrier_small_cache {
        use super::*;
        crate::state::conformance::conformance_tests!(|root: &Path| small(root)
            .cache_size(16 * 1024)
            .memtable_at_barrier(MemtableAtBarrier::Log));
    }

    /// A snapshot that keeps the memtable holds log files and no new SST file; it restores
    /// exactly, with either setting, and a later snapshot does not change it.
    #[test]
    fn a_log_snapshot_restores_exactly_with_either_setting() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, mut store) = log_store_with(tmp.path(), 1000, |i| format!("v{i}").into_bytes());
        store.delete(&7u32.to_be_bytes()).unwrap();
        let snap = tmp.path().join("snap-1");
        store.snapshot_to(&snap).unwrap();
        assert!(
            !files_with_extension(&snap, "log").is_empty(),
            "the log is in the snapshot"
        );
        assert!(files_with_extension(&snap, "sst").is_empty(), "nothing was flushed");
        let copied: Vec<_> = files_with_extension(&snap, "log")
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        for i in 0..1000u32 {
            store.put(&i.to_be_bytes(), b"after the barrier").unwrap();
        }
        store.snapshot_to(&tmp.path().join("snap-2")).unwrap();
        let again: Vec<_> = files_with_extension(&snap, "log")
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        assert_eq!(copied, again, "a later snapshot left the first one's log as it was");
        let want: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
            .filter(|&i| i != 7)
            .map(|i| (i.to_be_bytes().to_vec(), format!("v{i}").into_bytes()))
            .collect();
        let flush = RocksDbBackend::new(tmp.path().join("flush"));
        for (n, backend) in [&log, &flush].into_iter().enumerate() {
            let mut restored = backend.open_store(&scope(1 + n), Some(&snap)).unwrap();
            assert_eq!(scan_all(restored.as_mut(), b""), want, "restored by backend {n}");
            restored.put(b"more", b"1").unwrap();
            restored.snapshot_to(&tmp.path().join(format!("again-{n}"))).unwrap();
        }
    }

    /// A log in a snapshot that ends early (a damaged copy) is refused at the restore, never
    /// replayed as far as it goes.
    #[test]
    fn a_damaged_log_in_a_snapshot_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, mut store) = log_store_with(tmp.path(), 1000, |_| vec![7u8; 100]);
        let snap = tmp.path().join("snap");
        store.snapshot_to(&snap).unwrap();
        let logs = files_with_extension(&snap, "log");
        let last = logs.iter().max_by_key(|f| std::fs::metadata(f).unwrap().len()).unwrap();
        let len = std::fs::metadata(last).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 50)
            .unwrap();
        let e = log.open_store(&scope(1), Some(&snap)).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
    }

    /// A backend under `root` whose snapshots keep the memtable, and a store of it holding keys
    /// `0..n` (big-endian) with `value(key)`.
    fn log_store_with(root: &Path, n: u32, value: impl Fn(u32) -> Vec<u8>) -> (RocksDbBackend, Box<dyn KeyedStore>) {
        let log = RocksDbBackend::new(root.join("log")).memtable_at_barrier(MemtableAtBarrier::Log);
        let mut store = log.open_store(&scope(0), None).unwrap();
        for i in 0..n {
            store.put(&i.to_be_bytes(), &value(i)).unwrap();
        }
        (log, store)
    }

    /// A backend with a small memtable, so that tests flush and compact.
    fn small(root: &Path) -> RocksDbBackend {
        RocksDbBackend::new(root.join("state"))
            .write_buffer_size(64 * 1024)
            .block_cache_size(1 << 20)
    }

    fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn prefix_successor_handles_0xff() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[0x01]), Some(vec![0x02]));
        assert_eq!(prefix_successor(&[0x01, 0xFF]), Some(vec![0x02]));
        assert_eq!(prefix_successor(&[0x00, 0xFE, 0xFF, 0xFF]), Some(vec![0x00, 0xFF]));
    }

    #[test]
    fn validate_creates_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = RocksDbBackend::new(tmp.path().join("a/b/state"));
        backend.validate().unwrap();
        assert!(backend.dir().is_dir());
        assert_eq!(
            fs::read_dir(backend.dir()).unwrap().count(),
            0,
            "the probe file is removed"
        );
    }

    #[test]
    fn validate_rejects_a_directory_under_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let dir = file.join("state");
        let e = RocksDbBackend::new(&dir).validate().expect_err("a file is in the way");
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains("os error"), "{text}");
    }

    #[test]
    fn writes_skip_the_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small(tmp.path());
        let mut store = backend.open(&scope(0), None).unwrap();
        for i in 0..100u32 {
            store.put(&i.to_be_bytes(), b"value").unwrap();
        }
        let work = backend.dir().join(scope(0).relative_dir());
        for log in files_with_extension(&work, "log") {
            assert_eq!(fs::metadata(&log).unwrap().len(), 0, "{} holds data", log.display());
        }
    }

    #[test]
    fn closing_a_store_does_not_flush_its_memtable() {
        // A store is never reopened from its working directory (opening deletes it; a restore
        // starts from a snapshot), so a flush on close is wasted work on every cancellation.
        let tmp = tempfile::tempdir().unwrap();
        let backend = small(tmp.path()).write_buffer_size(8 << 20);
        let mut store = backend.open(&scope(0), None).unwrap();
        for i in 0..1000u32 {
            store.put(&i.to_be_bytes(), &[i as u8; 100]).unwrap();
        }
        let work = backend.dir().join(scope(0).relative_dir());
        assert!(
            files_with_extension(&work, "sst").is_empty(),
            "the memtable is not full yet"
        );
        drop(store);
        assert_eq!(
            files_with_extension(&work, "sst"),
            Vec::<PathBuf>::new(),
            "closing flushed the memtable"
        );
    }

    #[test]
    fn snapshots_link_sst_files_and_survive_compaction() {
        let tmp = tempfile::tempdir().unwrap();
        // A memtable big enough that no background flush or compaction races the link check.
        let backend = small(tmp.path()).write_buffer_size(8 << 20);
        let mut store = backend.open(&scope(0), None).unwrap();
        for i in 0..2000u32 {
            store.put(&i.to_be_bytes(), &[i as u8; 100]).unwrap();
        }
        let snap = tmp.path().join("snap");
        let files = store.snapshot_to(&snap).unwrap();
        assert!(
            files.iter().any(|f| f.extension().is_some_and(|e| e == "sst")),
            "{files:?}"
        );
        for sst in files_with_extension(&snap, "sst") {
            assert!(
                fs::metadata(&sst).unwrap().nlink() >= 2,
                "{} was copied, not linked",
                sst.display()
            );
        }
        let before: Vec<_> = files.iter().map(|f| fs::read(snap.join(f)).unwrap()).collect();

        for i in 0..2000u32 {
            store.put(&i.to_be_bytes(), b"changed").unwrap();
        }
        let db = &store.segments[0].db;
        db.flush().unwrap();
        db.compact_range::<&[u8], &[u8]>(None, None);
        let work = backend.dir().join(scope(0).relative_dir());
        let live = files_with_extension(&work, "sst");
        let linked = files_with_extension(&snap, "sst");
        assert!(
            live.iter()
                .all(|l| !linked.iter().any(|s| s.file_name() == l.file_name())),
            "compaction replaced all SSTs"
        );

        let after: Vec<_> = files.iter().map(|f| fs::read(snap.join(f)).unwrap()).collect();
        assert_eq!(before, after);
        drop(store);
        let mut restored = backend.open(&scope(1), Some(&snap)).unwrap();
        assert_eq!(restored.get(&7u32.to_be_bytes()).unwrap(), Some(vec![7u8; 100]));
        assert_eq!(scan_all(&mut restored, b"").len(), 2000);
    }

    #[test]
    fn an_open_scope_cannot_be_opened_again() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small(tmp.path());
        let mut first = backend.open_store(&scope(0), None).unwrap();
        first.put(b"k", b"v").unwrap();
        let e = backend.open_store(&scope(0), None).err().expect("the scope is open");
        assert_eq!(e.kind(), ErrorKind::External { retryable: true }, "{e}");
        assert_eq!(
            first.get(b"k").unwrap().as_deref(),
            Some(&b"v"[..]),
            "the open store is intact"
        );
        drop(first);
        let mut second = backend.open_store(&scope(0), None).unwrap();
        assert_eq!(second.get(b"k").unwrap(), None);
    }

    #[test]
    fn a_job_locks_its_state_directory_against_a_second_process() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small(tmp.path());
        let held = backend.lock_job("job-a").unwrap().expect("rocksdb has a directory");
        let e = small(tmp.path()).lock_job("job-a").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("job-a"),
            "{text}"
        );
        // Another job shares the directory freely.
        let _other = backend.lock_job("job-b").unwrap().unwrap();
        drop(held);
        backend.lock_job("job-a").unwrap().unwrap();
    }

    #[test]
    fn a_memory_snapshot_is_not_a_rocksdb_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let mut mem = MemoryBackend::new().open_store(&scope(0), None).unwrap();
        mem.put(b"k", b"v").unwrap();
        let snap = tmp.path().join("snap");
        mem.snapshot_to(&snap).unwrap();
        let e = small(tmp.path())
            .open_store(&scope(0), Some(&snap))
            .err()
            .expect("wrong format");
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
        assert!(e.to_string().contains("no CURRENT file"), "{e}");
    }

    #[test]
    fn large_prefix_deletes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = small(tmp.path()).open(&scope(0), None).unwrap();
        for i in 0..1000u32 {
            store.put(&[&[1u8][..], &i.to_be_bytes()].concat(), b"a").unwrap();
            store.put(&[&[2u8][..], &i.to_be_bytes()].concat(), b"b").unwrap();
        }
        store.delete_prefix(&[1]).unwrap();
        assert!(scan_all(&mut store, &[1]).is_empty());
        assert_eq!(scan_all(&mut store, &[2]).len(), 1000);
        // Without an upper bound for a range deletion, in several chunks.
        for i in 0..(2 * segment::DELETE_CHUNK as u32 + 10) {
            store.put(&[&[0xFF][..], &i.to_be_bytes()].concat(), b"c").unwrap();
        }
        store.delete_prefix(&[0xFF]).unwrap();
        assert!(scan_all(&mut store, &[0xFF]).is_empty());
        assert_eq!(scan_all(&mut store, &[2]).len(), 1000);
        store.delete_prefix(&[]).unwrap();
        assert!(scan_all(&mut store, &[]).is_empty());
    }
}
