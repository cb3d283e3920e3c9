//! An exclusive lock on a directory (a lock file in it), naming its holder.
//!
//! The lock is an OS file lock (`flock` on Unix, through [`File::try_lock`]): at most one open
//! lock file holds it, it is released when the [`DirLock`] is dropped, and the OS releases it
//! when the process dies, also after `kill -9`, so a restarted process takes over at once.
//! The holder writes its [`OwnerRecord`] into the lock file, so that a process that finds the
//! lock taken can say who holds it. The lock file is never deleted (deleting a lock file lets
//! two processes lock two different files).
//!
//! # After a crash
//! Nothing to clean up: the lock dies with its process; the record in the file is only
//! informative and is overwritten by the next holder.

use super::{held_by_another, OwnerRecord};
use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A held exclusive lock on a lock file.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `path` (created if missing, with its parent directory) for the holder `record`, or
    /// fails with a `Config` error naming the current holder of `resource`.
    ///
    /// # Errors
    /// `Config` when another open lock file holds the lock (another process, or another job
    /// of this one); `External` when the lock file cannot be created or written.
    pub fn acquire(path: &Path, record: &OwnerRecord, resource: &str) -> Result<DirLock> {
        match Self::try_acquire(path)? {
            Some(mut lock) => {
                lock.record_holder(record)?;
                Ok(lock)
            }
            None => Err(held_by_another(resource, read_holder(path).as_ref())),
        }
    }

    /// Locks `path` as [`acquire`](Self::acquire) does, for one subtask of a job whose
    /// subtasks may move between processes (a cluster's workers): a holder of the same job is
    /// a process the job failed over from, which lets go once it learns that its attempt is
    /// over, so that is a retryable `External` error (the job restarts and tries again);
    /// a holder of another job is `Config`.
    ///
    /// # Errors
    /// As described; `External` when the lock file cannot be created or locked.
    pub fn acquire_for_subtask(path: &Path, record: &OwnerRecord, resource: &str) -> Result<DirLock> {
        match Self::try_acquire(path)? {
            Some(mut lock) => {
                lock.record_holder(record)?;
                Ok(lock)
            }
            None => {
                let holder = read_holder(path);
                let e = held_by_another(resource, holder.as_ref());
                match holder {
                    Some(h) if h.owner.job == record.owner.job => Err(Error::external(
                        true,
                        format!(
                            "{resource} is still held by pid {} on {}, a process of this job that ran this \
                             subtask in an earlier attempt; it lets go when it stops",
                            h.owner.pid, h.owner.host
                        ),
                    )),
                    _ => Err(e),
                }
            }
        }
    }

    /// Locks `path` if no one holds it; `None` if someone does.
    ///
    /// # Errors
    /// `External` when the lock file cannot be created or locking fails for another reason.
    pub fn try_acquire(path: &Path) -> Result<Option<DirLock>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening the lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DirLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// Writes `record` into the lock file, for whoever finds the lock taken.
    ///
    /// # Errors
    /// `External` when the file cannot be written.
    pub fn record_holder(&mut self, record: &OwnerRecord) -> Result<()> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| Error::internal("encoding an owner record").with_source(e))?;
        self.file
            .set_len(0)
            .and_then(|_| self.file.write_all_at(&bytes, 0))
            .map_err(|e| Error::io(format!("writing the lock file {}", self.path.display()), e))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder recorded in lock file `path`. A holder writes its record right after locking: a
/// few short retries cover that moment.
pub fn read_holder(path: &Path) -> Option<OwnerRecord> {
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(25));
        }
        if let Some(r) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok())
        {
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::OwnerInfo;
    use crate::ErrorKind;

    #[test]
    fn a_second_lock_fails_naming_the_holder_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub").join("_lock");
        let me = OwnerRecord {
            epoch: 3,
            owner: OwnerInfo::this_process("job-a"),
        };
        let first = DirLock::acquire(&path, &me, "the directory X").unwrap();
        // Another open file of the same path conflicts, even in this process.
        let e = DirLock::acquire(&path, &me, "the directory X").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = e.to_string();
        assert!(text.contains("the directory X"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(
            text.contains("job \"job-a\"") && text.contains("owner epoch 3"),
            "{text}"
        );
        drop(first);
        let again = DirLock::acquire(&path, &me, "the directory X").unwrap();
        assert_eq!(read_holder(again.path()), Some(me));
    }
}
