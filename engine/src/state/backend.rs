//! The contract between keyed operators and a state backend.
//!
//! A backend opens one [`KeyedStore`] per operator subtask: an ordered byte map whose entries
//! are laid out as [`layout`](super::layout) describes. Stores are not durable by themselves
//! (RocksDB runs with its write-ahead log off): durability comes from checkpoints, which copy a
//! consistent view of the store out with [`KeyedStore::snapshot_to`] and bring it back with
//! [`StateBackend::open_store`] given a restore directory.

use super::key_group::KeyGroupRange;
use crate::Result;
use std::path::{Path, PathBuf};

/// Identifies the store of one operator subtask.
#[derive(Debug, Clone)]
pub struct StoreScope {
    /// The job's name.
    pub job: String,
    /// The operator's stable name.
    pub operator: String,
    /// Subtask index.
    pub subtask: usize,
    /// Key groups this subtask owns.
    pub key_groups: KeyGroupRange,
}

impl StoreScope {
    /// A directory-safe relative path for this store: `job/operator/subtask`.
    pub fn relative_dir(&self) -> PathBuf {
        PathBuf::from(dir_name(&self.job))
            .join(dir_name(&self.operator))
            .join(self.subtask.to_string())
    }
}

/// A directory name for a job or step name: readable, path-safe and one-to-one (names that
/// differ only in characters `sanitize` replaces get different hash suffixes).
pub fn dir_name(name: &str) -> String {
    format!("{}-{:08x}", sanitize(name), crc32c::crc32c(name.as_bytes()))
}

/// Replaces characters that are not safe in a path component.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Settings a configuration changes on the program's state backend without replacing it
/// (`state.cache_mb` and `state.memtable_at_barrier` without `state.dir`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendOverrides {
    /// The write-back cache per store, bytes (see [`CachedStore`](super::cache::CachedStore)).
    pub cache_size: Option<usize>,
    /// What a store's snapshot at a barrier does with its memtable.
    pub memtable_at_barrier: Option<super::MemtableAtBarrier>,
}

impl BackendOverrides {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        *self == BackendOverrides::default()
    }
}

/// A factory of keyed stores: RocksDB for real jobs, memory for tests and small jobs.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// Short name for reports ("rocksdb", "memory").
    fn name(&self) -> &'static str;

    /// Checks the configuration before a job starts (for example that the state directory can
    /// be created and written). Called once per job run.
    ///
    /// # Errors
    /// A `Config` error naming the problem.
    fn validate(&self) -> Result<()>;

    /// A local directory on the filesystem of the stores' working directories, where
    /// snapshots are staged (so that RocksDB can hard-link its files). `None` for backends
    /// without one.
    fn local_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The backend worker `worker` of a cluster uses, when it differs: a working directory of
    /// its own, so that workers sharing a machine (and a configured directory) never share
    /// stores or locks. `None`: this backend as it is.
    fn for_worker(&self, worker: u32) -> Option<std::sync::Arc<dyn StateBackend>> {
        let _ = worker;
        None
    }

    /// This backend with the settings of `overrides` that are set changed, or `None` for a
    /// backend that has none of them (the default).
    fn with_overrides(&self, overrides: &BackendOverrides) -> Option<std::sync::Arc<dyn StateBackend>> {
        let _ = overrides;
        None
    }

    /// Takes exclusive ownership of job `job`'s part of the working directory for as long as
    /// the returned lock lives (the OS releases it when the process dies). `None` for backends
    /// without a directory. Opening a store deletes what an earlier run left in its working
    /// directory: without this lock, a second process of the job would delete the live stores
    /// of the first.
    ///
    /// # Errors
    /// `Config` naming the holder when another process runs the job on this directory.
    fn lock_job(&self, job: &str) -> Result<Option<crate::ownership::dir_lock::DirLock>> {
        let _ = job;
        Ok(None)
    }

    /// Opens the store of `scope`, empty, or filled with exactly the content of a directory
    /// previously written by [`KeyedStore::snapshot_to`] when `restore_from` is given. Whatever a
    /// previous run of the same scope left in the working directory is discarded.
    ///
    /// # Errors
    /// `External` on I/O failure, `Checkpoint` if the restore directory is unusable.
    fn open_store(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<Box<dyn KeyedStore>>;

    /// Opens the store of `scope` from snapshots of subtasks of another parallelism (a restore
    /// that rescales, see [`rescale`](super::rescale)): it holds exactly the entries of the key
    /// groups of `scope.key_groups` found in `parts`, and nothing else. `parts[0]` is the base
    /// (the snapshot with the largest overlap); each part's `taken` key groups lie in
    /// `scope.key_groups` and no two parts take the same key group. The snapshots are only read.
    /// Whatever a previous run of the same scope left in the working directory is discarded.
    ///
    /// # Errors
    /// `External` on I/O failure, `Checkpoint` if a snapshot is unusable, `Config` for a backend
    /// that cannot rescale (the default).
    fn open_store_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<Box<dyn KeyedStore>> {
        let _ = parts;
        Err(crate::Error::config(format!(
            "the {} state backend cannot restore keyed state at another parallelism (store {})",
            self.name(),
            scope.relative_dir().display()
        )))
    }
}

/// How the store of a keyed subtask is restored from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedRestore {
    /// From the snapshot of the same subtask at the same parallelism, whole
    /// ([`StateBackend::open_store`]).
    Whole(PathBuf),
    /// From parts of snapshots taken at another parallelism
    /// ([`StateBackend::open_store_rescaled`]); empty when none holds a key group of the subtask.
    Rescaled(Vec<SnapshotPart>),
}

impl KeyedRestore {
    /// Opens the store of `scope` with `backend` as this restore says.
    ///
    /// # Errors
    /// As [`StateBackend::open_store`] and [`StateBackend::open_store_rescaled`].
    pub fn open(&self, backend: &dyn StateBackend, scope: &StoreScope) -> Result<Box<dyn KeyedStore>> {
        match self {
            KeyedRestore::Whole(dir) => backend.open_store(scope, Some(dir)),
            KeyedRestore::Rescaled(parts) if parts.is_empty() => backend.open_store(scope, None),
            KeyedRestore::Rescaled(parts) => backend.open_store_rescaled(scope, parts),
        }
    }
}

/// The snapshot of one subtask of a checkpoint, and the key groups a restore takes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPart {
    /// The snapshot's directory (what [`KeyedStore::snapshot_to`] wrote).
    pub dir: PathBuf,
    /// The key groups taken from it.
    pub taken: KeyGroupRange,
}

/// What a scan calls per entry, with its key and value, in key order; `Ok(false)` stops the
/// scan, an error stops it and is returned by the scan.
pub type EntryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// An ordered map from bytes to bytes holding one operator subtask's keyed state.
///
/// Writes are visible to later reads immediately. Nothing survives a crash unless a checkpoint
/// copied it out with [`snapshot_to`](Self::snapshot_to).
pub trait KeyedStore: Send {
    /// The value under `key`, if any.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key` (no error if absent).
    fn delete(&mut self, key: &[u8]) -> Result<()>;
    /// Visits, in ascending key order, every entry whose key starts with `prefix`, until `f`
    /// returns `Ok(false)` or an error.
    fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()>;
    /// Visits, in ascending key order, every entry whose key starts with `prefix` and is at
    /// least `from`, until `f` returns `Ok(false)` or an error: a range scan that seeks to
    /// `from` instead of reading the entries before it (the default reads and skips them).
    fn scan_prefix_from(&mut self, prefix: &[u8], from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.scan_prefix(prefix, &mut |k, v| if k < from { Ok(true) } else { f(k, v) })
    }
    /// Applies `ops` in order, as many [`put`](Self::put)s and [`delete`](Self::delete)s would
    /// (the default does exactly that); a store that has a cheaper batched write uses it. A
    /// key appears at most once in `ops` when the state cache calls it, so applying a prefix
    /// of `ops` again after a failure gives the same result.
    ///
    /// # Errors
    /// As `put` and `delete`; some of `ops` may have been applied.
    fn write_batch(&mut self, ops: &[WriteOp<'_>]) -> Result<()> {
        for op in ops {
            match *op {
                WriteOp::Put(k, v) => self.put(k, v)?,
                WriteOp::Delete(k) => self.delete(k)?,
            }
        }
        Ok(())
    }
    /// Removes every entry whose key starts with `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()>;
    /// An estimate of the bytes of live state (keys and values).
    fn approximate_size(&mut self) -> Result<u64>;
    /// Synchronous phase of a checkpoint: writes a consistent, immutable copy of the whole store
    /// into `dir` (which must not exist yet) and returns the files written, relative to `dir`.
    /// After it returns, later writes to the store do not change anything under `dir`, and if
    /// the process dies, `dir` holds a complete snapshot (its files fsynced).
    ///
    /// # Errors
    /// `Checkpoint` if the snapshot cannot be written.
    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>>;
}

/// One write of a [`KeyedStore::write_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Sets the key to the value.
    Put(&'a [u8], &'a [u8]),
    /// Removes the key.
    Delete(&'a [u8]),
}

impl<'a> WriteOp<'a> {
    /// The key written.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            WriteOp::Put(k, _) | WriteOp::Delete(k) => k,
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is none
/// (empty or all-0xFF prefix): the exclusive upper bound of a prefix range.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// The smallest entry key of key group `kg`, or above every key group when `kg` is
/// [`MAX_KEY_GROUPS`](super::key_group::MAX_KEY_GROUPS): range bounds for whole key groups.
pub fn key_group_start(kg: usize) -> [u8; 2] {
    (kg as u16).to_be_bytes()
}
