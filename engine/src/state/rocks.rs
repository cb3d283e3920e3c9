//! The RocksDB state backend: one RocksDB instance per operator subtask, under
//! `dir/job/operator/subtask`.
//!
//! Writes skip the write-ahead log: a working directory is never reopened after a crash (the
//! next [`open_store`](StateBackend::open_store) of its scope deletes it), so durability comes
//! only from [`snapshot_to`](KeyedStore::snapshot_to), which flushes the memtable and writes a
//! RocksDB checkpoint (SST files hard-linked, metadata copied) whose files it fsyncs.
//!
//! A running job holds the lock `dir/job/_lock` ([`lock_job`](StateBackend::lock_job)), so that
//! a second process of the same job cannot delete the working directories of the first.

mod rescale;

use super::backend::{dir_name, KeyedStore, SnapshotPart, StateBackend, StoreScope};
use crate::ownership::dir_lock::DirLock;
use crate::ownership::{OwnerInfo, OwnerRecord};
use crate::{Error, Result};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    properties, BlockBasedOptions, Cache, DBCompressionType, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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
/// `delete_prefix` deletes up to this many keys one by one; beyond, it writes a range deletion.
const POINT_DELETE_LIMIT: usize = 128;
/// Keys per batch when `delete_prefix` cannot use a range deletion.
const DELETE_CHUNK: usize = 16 * 1024;

/// A state backend keeping each subtask's state in its own RocksDB instance on local disk.
///
/// Clones share the block cache.
#[derive(Clone)]
pub struct RocksDbBackend {
    dir: PathBuf,
    write_buffer_size: usize,
    target_file_size: u64,
    block_cache_size: usize,
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

    /// The directory holding the stores' working directories.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options of every store: no WAL-related tuning (writes skip it), LZ4 (zstd at the
    /// bottom level), bloom filters for point reads, a block cache shared by all stores.
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
        match opts.get_options_from_string("avoid_flush_during_shutdown=true") {
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

    /// Opens the store of `scope`; see [`StateBackend::open_store`].
    fn open(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<RocksDbStore> {
        let work = self.work_dir(scope)?;
        let guard = OpenGuard::acquire(&work)?;
        match fs::remove_dir_all(&work) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("deleting the stale store {}", work.display()), e)),
        }
        fs::create_dir_all(&work).map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
        let db = match restore_from {
            None => DB::open(&self.options(), &work)
                .map_err(|e| Error::from(e).context(format!("opening RocksDB store {}", work.display())))?,
            Some(src) => {
                let restoring = || format!("restoring RocksDB store {} from {}", work.display(), src.display());
                copy_snapshot(src, &work).map_err(|e| e.context(restoring()))?;
                DB::open(&self.options(), &work).map_err(|e| {
                    Error::checkpoint(format!("opening the restored store: {}", restoring())).with_source(e)
                })?
            }
        };
        tracing::debug!(store = %work.display(), restore_from = ?restore_from, "opened store");
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksDbStore {
            db,
            write,
            _open: guard,
        })
    }
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

    fn open_store(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<Box<dyn KeyedStore>> {
        Ok(Box::new(self.open(scope, restore_from)?))
    }

    fn open_store_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<Box<dyn KeyedStore>> {
        Ok(Box::new(self.open_rescaled(scope, parts)?))
    }
}

/// One subtask's state in a RocksDB instance.
struct RocksDbStore {
    /// Declared before `_open` so that the database is closed before its scope is released.
    db: DB,
    /// Writes skip the WAL.
    write: WriteOptions,
    _open: OpenGuard,
}

impl RocksDbStore {
    /// A batch deleting the first `limit` keys starting with `prefix`, and whether more follow.
    fn prefix_deletes(&self, prefix: &[u8], limit: usize) -> Result<(WriteBatch, bool)> {
        let mut batch = WriteBatch::default();
        let mut it = self.db.raw_iterator();
        it.seek(prefix);
        while let Some(key) = it.key().filter(|k| k.starts_with(prefix)) {
            if batch.len() == limit {
                return Ok((batch, true));
            }
            batch.delete(key);
            it.next();
        }
        it.status()?;
        Ok((batch, false))
    }
}

impl KeyedStore for RocksDbStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key, value, &self.write)?)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        Ok(self.db.delete_opt(key, &self.write)?)
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        let mut read = ReadOptions::default();
        if let Some(end) = prefix_successor(prefix) {
            read.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_opt(read);
        it.seek(prefix);
        while let Some((k, v)) = it.item() {
            if !k.starts_with(prefix) || !f(k, v)? {
                return Ok(());
            }
            it.next();
        }
        Ok(it.status()?)
    }

    fn scan_prefix_from(
        &mut self,
        prefix: &[u8],
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut read = ReadOptions::default();
        if let Some(end) = prefix_successor(prefix) {
            read.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_opt(read);
        it.seek(from.max(prefix));
        while let Some((k, v)) = it.item() {
            if !k.starts_with(prefix) || !f(k, v)? {
                return Ok(());
            }
            it.next();
        }
        Ok(it.status()?)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        match prefix_successor(prefix) {
            Some(end) => {
                // Few keys: point deletes, which keep reads free of range tombstones.
                let (mut batch, more) = self.prefix_deletes(prefix, POINT_DELETE_LIMIT)?;
                if more {
                    batch = WriteBatch::default();
                    batch.delete_range(prefix, end.as_slice());
                }
                self.db.write_opt(batch, &self.write)?;
            }
            // No finite upper bound (empty or all-0xFF prefix): delete what is there, in chunks.
            None => loop {
                let (batch, more) = self.prefix_deletes(prefix, DELETE_CHUNK)?;
                self.db.write_opt(batch, &self.write)?;
                if !more {
                    break;
                }
            },
        }
        Ok(())
    }

    fn approximate_size(&mut self) -> Result<u64> {
        let sst = self
            .db
            .property_int_value(properties::ESTIMATE_LIVE_DATA_SIZE)?
            .unwrap_or(0);
        let mem = self
            .db
            .property_int_value(properties::CUR_SIZE_ALL_MEM_TABLES)?
            .unwrap_or(0);
        Ok(sst + mem)
    }

    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        let failed = |what: &str| Error::checkpoint(format!("{what} (RocksDB snapshot into {})", dir.display()));
        if fs::symlink_metadata(dir).is_ok() {
            return Err(failed("the snapshot directory already exists"));
        }
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs::create_dir_all(parent).map_err(|e| failed("cannot create the parent directory").with_source(e))?;
        }
        // Writes skip the WAL, so the memtable must reach SST files before the checkpoint links
        // them (create_checkpoint flushes too, but only as long as the WAL looks big enough).
        self.db
            .flush()
            .map_err(|e| failed("flushing the memtable").with_source(e))?;
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| failed("creating the checkpoint").with_source(e))?;
        let files = sync_snapshot(dir, parent).map_err(|e| failed("syncing the checkpoint").with_source(e))?;
        Ok(files)
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

/// Fills the empty working directory `work` with the files of checkpoint `src`: immutable SST
/// and blob files are hard-linked when possible (RocksDB never modifies them, so `src` stays
/// intact), everything else is copied.
fn copy_snapshot(src: &Path, work: &Path) -> Result<()> {
    let unusable = |what: String| Error::checkpoint(what);
    if !src.join("CURRENT").is_file() {
        return Err(unusable(format!(
            "{} is not a RocksDB snapshot (no CURRENT file)",
            src.display()
        )));
    }
    let entries = fs::read_dir(src).map_err(|e| unusable(format!("listing {}", src.display())).with_source(e))?;
    for entry in entries {
        let entry = entry.map_err(|e| unusable(format!("listing {}", src.display())).with_source(e))?;
        let from = entry.path();
        if from.is_dir() {
            return Err(unusable(format!(
                "unexpected directory {} in a RocksDB snapshot",
                from.display()
            )));
        }
        let to = work.join(entry.file_name());
        let immutable = matches!(from.extension().and_then(|e| e.to_str()), Some("sst" | "blob"));
        let linked = immutable && fs::hard_link(&from, &to).is_ok();
        if !linked {
            fs::copy(&from, &to)
                .map_err(|e| unusable(format!("copying {} to {}", from.display(), to.display())).with_source(e))?;
        }
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is none
/// (empty or all-0xFF prefix).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
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

    super::super::conformance::conformance_tests!(|root: &Path| small(root));

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
        store.db.flush().unwrap();
        store.db.compact_range::<&[u8], &[u8]>(None, None);
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
        for i in 0..(2 * DELETE_CHUNK as u32 + 10) {
            store.put(&[&[0xFF][..], &i.to_be_bytes()].concat(), b"c").unwrap();
        }
        store.delete_prefix(&[0xFF]).unwrap();
        assert!(scan_all(&mut store, &[0xFF]).is_empty());
        assert_eq!(scan_all(&mut store, &[2]).len(), 1000);
        store.delete_prefix(&[]).unwrap();
        assert!(scan_all(&mut store, &[]).is_empty());
    }
}
