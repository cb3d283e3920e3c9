//! Where a run of a job stages its snapshots locally before they are uploaded: one directory
//! per run, `<parent>/<run>`, next to an advisory lock file `<parent>/<run>.lock` that the run
//! holds locked for its whole life.
//!
//! A RocksDB snapshot hard-links the store's files, so a staged snapshot that is never removed
//! pins files compaction deleted, and fills the disk over a crash loop.
//!
//! # After a crash
//! The operating system releases a dead process's lock. The next run that stages under the
//! same parent removes every run directory whose lock it can take (its owner is gone), and
//! directories without a lock file (left by versions before the lock existed). A live run's
//! directory is never touched: its lock cannot be taken. The lock file is created and locked
//! before the directory, and removed after it, so a directory without a lock file is never a
//! live run's.

use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Suffix of a run's lock file, next to its directory.
const LOCK_SUFFIX: &str = ".lock";

/// The staging directory of one run, locked while the run lives; removed on drop.
#[derive(Debug)]
pub(crate) struct StagingArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl StagingArea {
    /// Locks and creates `<parent>/<run>` (emptied if it exists), after removing the staging
    /// directories of runs that are gone.
    pub(crate) fn create(parent: &Path, run: &str) -> Result<Self> {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::io(
                format!("creating the snapshot staging directory {}", parent.display()),
                e,
            )
        })?;
        let lock_path = parent.join(format!("{run}{LOCK_SUFFIX}"));
        let lock = lock_own(&lock_path)?;
        let removed = remove_stale(parent);
        if removed > 0 {
            tracing::info!(
                removed,
                dir = %parent.display(),
                "removed snapshot staging directories of runs that ended without cleaning up"
            );
        }
        let dir = parent.join(run);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating the snapshot staging directory {}", dir.display()), e))?;
        Ok(StagingArea {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// The run's staging directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for StagingArea {
    fn drop(&mut self) {
        // Directory first: a directory is never left without its lock file.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Creates and locks `path`, retrying when a clean-up by another run removed it meanwhile.
fn lock_own(path: &Path) -> Result<File> {
    let mut last = None;
    for _ in 0..50 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("creating the staging lock file {}", path.display()), e))?;
        match file.try_lock() {
            // Another run may have taken and removed the file between our open and lock: then
            // the lock is on a file nobody else can find, and we start again.
            Ok(()) if path.exists() => return Ok(file),
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(
                    format!("locking the staging lock file {}", path.display()),
                    e,
                ))
            }
        }
        last = Some(path);
    }
    Err(Error::external(
        true,
        format!(
            "could not lock the staging lock file {}: another process holds it",
            last.unwrap_or(path).display()
        ),
    ))
}

/// Removes every run directory under `parent` whose owner is gone; returns how many.
fn remove_stale(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let mut lock_name = entry.file_name();
        lock_name.push(LOCK_SUFFIX);
        let lock_path = parent.join(lock_name);
        match File::open(&lock_path) {
            Ok(f) => match f.try_lock() {
                Ok(()) => {
                    // Held while removing: a run of the same name cannot start meanwhile.
                    if std::fs::remove_dir_all(&path).is_ok() {
                        removed += 1;
                    }
                    let _ = std::fs::remove_file(&lock_path);
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    tracing::debug!(dir = %path.display(), error = %e, "cannot check a staging directory's lock; kept");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::remove_dir_all(&path).is_ok() {
                    removed += 1;
                }
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), error = %e, "cannot open a staging directory's lock; kept");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_runs_are_removed_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let parent = d.path();
        // A run of an older version (no lock file) and a crashed run (lock file, unlocked).
        std::fs::create_dir_all(parent.join("old-1-0/staging/chk-3")).unwrap();
        std::fs::create_dir_all(parent.join("crashed-2-0/staging/chk-4")).unwrap();
        std::fs::write(parent.join("crashed-2-0.lock"), b"").unwrap();
        let live = StagingArea::create(parent, "live-3-0").unwrap();
        std::fs::write(live.dir().join("snapshot"), b"x").unwrap();
        let second = StagingArea::create(parent, "second-4-0").unwrap();
        assert!(!parent.join("old-1-0").exists());
        assert!(!parent.join("crashed-2-0").exists());
        assert!(!parent.join("crashed-2-0.lock").exists());
        assert!(live.dir().join("snapshot").exists(), "a live run's directory is kept");
        drop(live);
        drop(second);
        assert_eq!(
            std::fs::read_dir(parent).unwrap().count(),
            0,
            "a run removes its own files"
        );
    }
}
