//! Checkpoint storage: where checkpoints live, behind a trait an object store can implement.
//!
//! The local-directory implementation lays a job's checkpoints out as
//!
//! ```text
//! <root>/_job                               the job's identity record (written on first start)
//! <root>/_lock                              exclusive lock of the current owner (who holds it)
//! <root>/_owner                             the owner record: the current owner and its epoch
//! <root>/chk-<id>/_reservation              created exclusively when id is reserved (owner epoch)
//! <root>/chk-<id>/_metadata                 the checkpoint is complete iff this exists
//! <root>/chk-<id>/<operator>/<subtask>/...  files private to the checkpoint
//! <root>/shared/<operator>/<subtask>/...    RocksDB SST files shared by several checkpoints
//! ```
//!
//! # One writer
//! A process writes only under an [`OwnerLease`] from [`CheckpointStorage::acquire`]: the
//! local implementation locks `_lock` (an OS file lock, released when the process ends, also
//! by `kill -9`) and records the next owner epoch in `_owner`. A second process fails at once
//! with a `Config` error naming the owner. Reserving a checkpoint id creates its directory
//! exclusively: an id is never shared, a collision is an error.
//!
//! # Durability
//! Files are stored by hard link when the source is on the same filesystem (RocksDB SST files
//! are immutable and fsynced by the snapshot, so a link is as good as a copy), else copied and
//! fsynced. The directories that gained an entry are remembered and fsynced, each once, before
//! the metadata is published. The metadata file is written to a temporary name, fsynced,
//! renamed and the directory fsynced: after a crash it is either absent or complete, and when
//! it is present, every file it references is durable.
//!
//! # Reading: "could not read" is not "corrupt"
//! Read paths tell two failures apart, and a restore treats them differently:
//! - **corrupt** (`ErrorKind::Checkpoint`): a referenced file is missing, its size or checksum
//!   is wrong, the metadata does not parse or fails its checksum. Retrying cannot help.
//! - **could not read** (`ErrorKind::External { retryable: true }`): any other I/O error
//!   (EIO, EMFILE, EACCES, a stale NFS handle, a directory where a file should be). The
//!   checkpoint may be fine; a restore retries, then fails naming the checkpoint and the file,
//!   and never treats it as corrupt.

use super::metadata::StoredFile;
pub use crate::durable::{checksum_file, fsync_dir};
use crate::message::CheckpointId;
use crate::ownership::dir_lock::{read_holder, DirLock};
use crate::ownership::{
    check_fence, held_by_another, next_epoch, reservation_taken, OwnerInfo, OwnerLease, OwnerRecord,
};
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The name of the file that completes a checkpoint.
pub const METADATA_FILE: &str = "_metadata";
/// The lock file of a local checkpoint storage.
pub const LOCK_FILE: &str = "_lock";
/// The owner record of a local checkpoint storage.
pub const OWNER_FILE: &str = "_owner";
/// The file that reserves a checkpoint id, in the checkpoint's directory.
pub const RESERVATION_FILE: &str = "_reservation";

/// The name of the job identity record in the storage root.
pub const JOB_IDENTITY_FILE: &str = "_job";

/// Where checkpoints are stored.
///
/// # Errors of the read methods
/// Implementations report a missing or corrupt object as `ErrorKind::Checkpoint` and every
/// other failure to read as `ErrorKind::External { retryable: true }` (see the
/// [module documentation](self)): a restore falls back past a checkpoint only for the former,
/// and only when the user allowed it.
pub trait CheckpointStorage: Send + Sync + std::fmt::Debug {
    /// A description for messages (a path or URL).
    fn describe(&self) -> String;
    /// Checks that the storage can be used (exists or can be created, is writable).
    fn validate(&self) -> Result<()>;
    /// Takes exclusive ownership of the storage for `owner` and records the next owner epoch
    /// durably. Nothing may be written to the storage without the returned lease; dropping it
    /// releases ownership (and a process that dies releases it too).
    ///
    /// # Errors
    /// `Config` naming the current owner when another process owns the storage (a restart
    /// cannot fix that); `External` on I/O failure.
    fn acquire(&self, owner: &OwnerInfo) -> Result<OwnerLease>;
    /// Checks that `lease` is still the storage's current owner: no later owner took over.
    ///
    /// # Errors
    /// `Config` when this process has been fenced out.
    fn verify_lease(&self, lease: &OwnerLease) -> Result<()>;
    /// Records that checkpoint `id` was started under `lease`, durably, so that its id is never
    /// handed out again even if the process dies before anything else of it is stored. The
    /// reservation is an exclusive create.
    ///
    /// # Errors
    /// `Config` when `id` is already reserved: ids are never shared, so another process
    /// writes to the storage.
    fn reserve(&self, id: CheckpointId, lease: &OwnerLease) -> Result<()>;
    /// Stores the local file `local` under `key`, returning its size and checksum.
    fn put_file(&self, local: &Path, key: &str, name: &str) -> Result<StoredFile>;
    /// Stores `bytes` under `key`.
    fn put_bytes(&self, key: &str, name: &str, bytes: &[u8]) -> Result<StoredFile>;
    /// Reads the object under `key`, verifying its size and checksum.
    fn read_verified(&self, file: &StoredFile) -> Result<Vec<u8>>;
    /// Makes `file` available at local path `dest` (link or copy) after verifying it.
    fn fetch_verified(&self, file: &StoredFile, dest: &Path) -> Result<()>;
    /// Atomically publishes checkpoint `id`'s metadata: the moment it becomes complete. Every
    /// file stored for the checkpoint before the call is durable before the metadata is.
    fn write_metadata(&self, id: CheckpointId, bytes: &[u8]) -> Result<()>;
    /// Reads checkpoint `id`'s metadata.
    fn read_metadata(&self, id: CheckpointId) -> Result<Vec<u8>>;
    /// Every checkpoint with anything stored: (id, complete), ascending.
    fn list(&self) -> Result<Vec<(CheckpointId, bool)>>;
    /// The job identity record, if one was written ([`write_identity`](Self::write_identity)).
    fn read_identity(&self) -> Result<Option<Vec<u8>>>;
    /// Writes the job identity record durably (after a crash it is either the old record or
    /// this one, never a torn mix).
    fn write_identity(&self, bytes: &[u8]) -> Result<()>;
    /// Deletes checkpoint `id`'s private files and metadata.
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<()>;
    /// Keys of every shared object.
    fn list_shared(&self) -> Result<Vec<String>>;
    /// Deletes the object under `key` (no error if absent).
    fn delete(&self, key: &str) -> Result<()>;
}

/// Checkpoint storage in a local (or shared, mounted) directory.
#[derive(Debug, Clone)]
pub struct LocalDirStorage {
    root: PathBuf,
    /// Directories that gained an entry since the last publication, fsynced before the next.
    unsynced: Arc<Mutex<BTreeSet<PathBuf>>>,
}

/// CRC-32C and size of a file, read in chunks, with the raw I/O error.
pub(crate) fn checksum_io(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

/// The error for a failed read of stored object `key` at `path`: a missing object makes the
/// checkpoint corrupt; any other I/O error is "could not read", worth retrying.
fn read_error(key: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::checkpoint(format!("checkpoint file {key} is missing ({})", path.display())).with_source(e)
    } else {
        could_not_read(format!("could not read checkpoint file {key} ({})", path.display()), e)
    }
}

/// A failure to read storage that says nothing about the checkpoint's integrity.
fn could_not_read(what: String, e: std::io::Error) -> Error {
    Error::external(true, what).with_source(e)
}

impl LocalDirStorage {
    /// Storage rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirStorage {
            root: root.into(),
            unsynced: Arc::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn chk_dir(&self, id: CheckpointId) -> PathBuf {
        self.root.join(format!("chk-{id}"))
    }

    fn ensure_parent(p: &Path) -> Result<()> {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        Ok(())
    }

    /// What messages call this storage.
    fn resource(&self) -> String {
        format!("checkpoint storage {}", self.root.display())
    }

    /// Remembers that `dir` gained an entry that must be durable before the next publication.
    fn mark_unsynced(&self, dir: &Path) {
        self.unsynced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dir.to_path_buf());
    }

    /// Creates `dir` and its missing ancestors, remembering the parents that gained an entry.
    fn create_dirs(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dirs(parent)?;
            self.mark_unsynced(parent);
        }
        match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }

    /// Creates the parent of `dest` and remembers it for the fsync before publication.
    fn prepare_entry(&self, dest: &Path) -> Result<()> {
        if let Some(parent) = dest.parent() {
            self.create_dirs(parent)?;
            self.mark_unsynced(parent);
        }
        Ok(())
    }

    /// Fsyncs every directory that gained an entry since the last call, each once, deepest
    /// first; returns them.
    fn sync_unsynced(&self) -> Result<Vec<PathBuf>> {
        let dirs = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for (i, d) in dirs.iter().enumerate() {
            if let Err(e) = fsync_dir(d) {
                // Still unsynced: the next publication tries again.
                let mut left = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
                left.extend(dirs[i..].iter().cloned());
                return Err(e);
            }
        }
        Ok(dirs)
    }

    /// The owner record, if the storage has one.
    fn read_owner(&self) -> Result<Option<OwnerRecord>> {
        let path = self.root.join(OWNER_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::config(format!(
                    "the owner record {} is corrupt; if no process uses this storage, delete it",
                    path.display()
                ))
                .with_source(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces the owner record atomically and durably.
    fn write_owner(&self, record: &OwnerRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::internal("encoding the owner record").with_source(e))?;
        let tmp = self.root.join(format!("{OWNER_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, self.root.join(OWNER_FILE))
            .map_err(|e| Error::io(format!("publishing the owner record in {}", self.root.display()), e))?;
        fsync_dir(&self.root)
    }

    fn verify(&self, file: &StoredFile, path: &Path) -> Result<()> {
        let (size, crc) = checksum_io(path).map_err(|e| read_error(&file.key, path, e))?;
        if size != file.size || crc != file.crc32c {
            return Err(Error::checkpoint(format!(
                "checkpoint file {} is corrupt: size {size} crc {crc:08x}, expected size {} crc {:08x}",
                file.key, file.size, file.crc32c
            )));
        }
        Ok(())
    }
}

impl CheckpointStorage for LocalDirStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn validate(&self) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(|e| {
            Error::config(format!(
                "checkpoint storage {} cannot be created: {e}",
                self.root.display()
            ))
        })?;
        // Per process: two processes validating at once must not remove each other's probe.
        let probe = self.root.join(format!(".weir-probe-{}", std::process::id()));
        fs::write(&probe, b"probe")
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| {
                Error::config(format!(
                    "checkpoint storage {} is not writable: {e}",
                    self.root.display()
                ))
            })
    }

    fn acquire(&self, owner: &OwnerInfo) -> Result<OwnerLease> {
        fs::create_dir_all(&self.root).map_err(|e| {
            Error::config(format!(
                "checkpoint storage {} cannot be created: {e}",
                self.root.display()
            ))
        })?;
        let lock_path = self.root.join(LOCK_FILE);
        let Some(mut lock) = DirLock::try_acquire(&lock_path)? else {
            return Err(held_by_another(&self.resource(), read_holder(&lock_path).as_ref()));
        };
        let record = OwnerRecord {
            epoch: next_epoch(self.read_owner()?.as_ref()),
            owner: owner.clone(),
        };
        lock.record_holder(&record)?;
        self.write_owner(&record)?;
        tracing::info!(storage = %self.root.display(), epoch = record.epoch, "took ownership of the checkpoint storage");
        Ok(OwnerLease::new(record.epoch, record.owner).holding(lock))
    }

    fn verify_lease(&self, lease: &OwnerLease) -> Result<()> {
        check_fence(&self.resource(), self.read_owner()?.as_ref(), lease)
    }

    fn reserve(&self, id: CheckpointId, lease: &OwnerLease) -> Result<()> {
        let dir = self.chk_dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let by = fs::read(dir.join(RESERVATION_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok());
                return Err(reservation_taken(&self.resource(), id, by.as_ref(), lease));
            }
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
        let bytes = serde_json::to_vec(lease.record())
            .map_err(|e| Error::internal("encoding a checkpoint reservation").with_source(e))?;
        let path = dir.join(RESERVATION_FILE);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        fsync_dir(&dir)?;
        fsync_dir(&self.root)
    }

    fn put_file(&self, local: &Path, key: &str, name: &str) -> Result<StoredFile> {
        let dest = self.path(key);
        self.prepare_entry(&dest)?;
        let _ = fs::remove_file(&dest);
        // A link shares the staged file's data, which the snapshot fsynced; the new entry
        // (like a copy's) becomes durable with its directory before the metadata is published.
        if fs::hard_link(local, &dest).is_err() {
            fs::copy(local, &dest)
                .map_err(|e| Error::io(format!("copying {} to {}", local.display(), dest.display()), e))?;
            File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("fsyncing {}", dest.display()), e))?;
        }
        let (size, crc32c) = checksum_file(&dest)?;
        Ok(StoredFile {
            name: name.to_string(),
            key: key.to_string(),
            size,
            crc32c,
        })
    }

    fn put_bytes(&self, key: &str, name: &str, bytes: &[u8]) -> Result<StoredFile> {
        let dest = self.path(key);
        self.prepare_entry(&dest)?;
        let mut f = File::create(&dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        Ok(StoredFile {
            name: name.to_string(),
            key: key.to_string(),
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        })
    }

    fn read_verified(&self, file: &StoredFile) -> Result<Vec<u8>> {
        let path = self.path(&file.key);
        let bytes = fs::read(&path).map_err(|e| read_error(&file.key, &path, e))?;
        if bytes.len() as u64 != file.size || crc32c::crc32c(&bytes) != file.crc32c {
            return Err(Error::checkpoint(format!(
                "checkpoint file {} is corrupt (size or checksum mismatch)",
                file.key
            )));
        }
        Ok(bytes)
    }

    fn fetch_verified(&self, file: &StoredFile, dest: &Path) -> Result<()> {
        let src = self.path(&file.key);
        self.verify(file, &src)?;
        Self::ensure_parent(dest)?;
        let _ = fs::remove_file(dest);
        if fs::hard_link(&src, dest).is_err() {
            fs::copy(&src, dest)
                .map_err(|e| Error::io(format!("copying {} to {}", src.display(), dest.display()), e))?;
        }
        Ok(())
    }

    fn write_metadata(&self, id: CheckpointId, bytes: &[u8]) -> Result<()> {
        let dir = self.chk_dir(id);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // Every file the metadata references, and its directory entries, are durable first.
        self.sync_unsynced()?;
        let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, dir.join(METADATA_FILE))
            .map_err(|e| Error::io(format!("publishing the metadata of checkpoint {id}"), e))?;
        fsync_dir(&dir)?;
        fsync_dir(&self.root)
    }

    fn read_metadata(&self, id: CheckpointId) -> Result<Vec<u8>> {
        let p = self.chk_dir(id).join(METADATA_FILE);
        fs::read(&p).map_err(|e| read_error(&format!("chk-{id}/{METADATA_FILE}"), &p, e))
    }

    fn list(&self) -> Result<Vec<(CheckpointId, bool)>> {
        let listing = |e| could_not_read(format!("could not list checkpoint storage {}", self.root.display()), e);
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(listing(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(listing)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("chk-").and_then(|s| s.parse::<CheckpointId>().ok()) {
                // Anything under the metadata's name makes the checkpoint complete: one that
                // cannot be read must fail the restore, not hide the checkpoint.
                let meta = e.path().join(METADATA_FILE);
                let complete = meta
                    .try_exists()
                    .map_err(|err| could_not_read(format!("could not check whether {} exists", meta.display()), err))?;
                out.push((id, complete));
            }
        }
        out.sort();
        Ok(out)
    }

    fn read_identity(&self) -> Result<Option<Vec<u8>>> {
        let p = self.root.join(JOB_IDENTITY_FILE);
        match fs::read(&p) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(could_not_read(
                format!("could not read the job identity record {}", p.display()),
                e,
            )),
        }
    }

    fn write_identity(&self, bytes: &[u8]) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(format!("creating {}", self.root.display()), e))?;
        let tmp = self.root.join(format!("{JOB_IDENTITY_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        drop(f);
        fs::rename(&tmp, self.root.join(JOB_IDENTITY_FILE)).map_err(|e| {
            Error::io(
                format!("publishing the job identity record in {}", self.root.display()),
                e,
            )
        })?;
        fsync_dir(&self.root)
    }

    fn delete_checkpoint(&self, id: CheckpointId) -> Result<()> {
        let dir = self.chk_dir(id);
        // Remove the metadata first: a half-deleted checkpoint must never look complete.
        match fs::remove_file(dir.join(METADATA_FILE)) {
            Ok(()) => fsync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("deleting the metadata of checkpoint {id}"), e)),
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting checkpoint {id}"), e)),
        }
    }

    fn list_shared(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let shared = self.root.join("shared");
        let mut stack = vec![shared];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting {key}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn storage() -> (tempfile::TempDir, LocalDirStorage) {
        let d = tempfile::tempdir().unwrap();
        let s = LocalDirStorage::new(d.path().join("chk"));
        s.validate().unwrap();
        (d, s)
    }

    #[test]
    fn directories_that_gained_entries_are_fsynced_once_before_publication() {
        let (d, s) = storage();
        let lease = s.acquire(&OwnerInfo::this_process("j")).unwrap();
        s.reserve(CheckpointId::new(1), &lease).unwrap();
        let local = d.path().join("f");
        fs::write(&local, b"x").unwrap();
        s.put_file(&local, "shared/op/0/1-a.sst", "a.sst").unwrap();
        s.put_file(&local, "shared/op/0/1-b.sst", "b.sst").unwrap();
        s.put_file(&local, "chk-1/op/0/MANIFEST", "MANIFEST").unwrap();
        s.put_bytes("chk-1/op/1/operator-state", "operator-state", b"y")
            .unwrap();
        let root = s.root().to_path_buf();
        let expected: BTreeSet<PathBuf> = [
            root.clone(),
            root.join("shared"),
            root.join("shared/op"),
            root.join("shared/op/0"),
            root.join("chk-1"),
            root.join("chk-1/op"),
            root.join("chk-1/op/0"),
            root.join("chk-1/op/1"),
        ]
        .into();
        let synced = s.sync_unsynced().unwrap();
        assert_eq!(synced.len(), expected.len(), "each directory once: {synced:?}");
        assert_eq!(synced.iter().cloned().collect::<BTreeSet<_>>(), expected);
        // Deepest first: a directory is durable before the entry that names it.
        assert!(synced.first().unwrap().ends_with("0") || synced.first().unwrap().ends_with("1"));
        assert_eq!(synced.last().unwrap(), &root);
        // Publication drains the set.
        s.put_bytes("chk-1/op/2/operator-state", "operator-state", b"z")
            .unwrap();
        s.write_metadata(CheckpointId::new(1), b"{}").unwrap();
        assert!(s.sync_unsynced().unwrap().is_empty());
    }

    #[test]
    fn one_owner_at_a_time_with_growing_epochs() {
        let (_d, s) = storage();
        let other = LocalDirStorage::new(s.root());
        let first = s.acquire(&OwnerInfo::this_process("j")).unwrap();
        assert_eq!(first.epoch(), 1);
        let e = other.acquire(&OwnerInfo::this_process("j")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("owner epoch 1"), "{e}");
        s.verify_lease(&first).unwrap();
        drop(first);
        let second = other.acquire(&OwnerInfo::this_process("j")).unwrap();
        assert_eq!(second.epoch(), 2);
        // The first owner's epoch is fenced out now.
        let stale = OwnerLease::new(1, second.owner().clone());
        assert_eq!(s.verify_lease(&stale).unwrap_err().kind(), ErrorKind::Config);
        s.verify_lease(&second).unwrap();
    }

    #[test]
    fn reserving_an_id_twice_is_an_error() {
        let (_d, s) = storage();
        let lease = s.acquire(&OwnerInfo::this_process("j")).unwrap();
        s.reserve(CheckpointId::new(4), &lease).unwrap();
        let e = s.reserve(CheckpointId::new(4), &lease).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("checkpoint 4 is already reserved"), "{e}");
        assert_eq!(s.list().unwrap(), vec![(CheckpointId::new(4), false)]);
    }
}
