//! Named fail points: places in the checkpoint lifecycle where tests (and the payment
//! example's disaster-recovery drill) inject failures, to check that every crash window keeps
//! the output exactly-once.
//!
//! Fail points belong to a job: a [`FailPoints`] handle is part of the job's configuration
//! ([`Pipeline::fail_points`](crate::api::Pipeline::fail_points),
//! [`JobConfig::fail_points`](crate::config::JobConfig::fail_points)) and is handed to its
//! operators ([`OperatorContext`](crate::operator::OperatorContext)), sinks and connectors
//! ([`SinkContext`](crate::sink::SinkContext)) and checkpoint phases. Jobs running side by side
//! in one process (parallel tests) never see each other's fail points.
//!
//! A job whose configuration names no fail points uses the process-wide set
//! ([`FailPoints::process_wide`]), which nothing arms except a drill that arms a child process
//! before it starts its job (the payment example's `--drill`, the tests whose child aborts).
//!
//! A disarmed handle costs one relaxed atomic load per check. An armed point triggers on its
//! n-th hit with a [`FailAction`]: return an error from that phase, panic there, or end the
//! whole process at once (`abort`, as a `kill -9` would, without unwinding or flushing anything).

use crate::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// While a keyed subtask processes a batch of records, or an async step just issued a
/// record's request: simulates a user function that fails (or a worker that dies) mid-stream,
/// between checkpoints.
pub const PROCESS_RECORD: &str = "process-record";
/// In a subtask's synchronous snapshot, before it acknowledges the barrier: simulates a
/// failure while state is being snapshotted (the checkpoint never completes).
pub const SNAPSHOT_SYNC: &str = "snapshot-sync";
/// In the asynchronous upload of a checkpoint's files: simulates storage that fails while
/// files are written (the checkpoint is aborted, its metadata never published).
pub const UPLOAD: &str = "upload";
/// After every file of a checkpoint was stored, right before its metadata is published (the
/// PUT that completes it on object storage): simulates a crash in the window where all the
/// data is in storage but the checkpoint does not exist yet.
pub const BEFORE_METADATA: &str = "before-metadata";
/// In a sink, right after its pre-commit produced a committable: simulates a crash after the
/// output is staged but before the checkpoint that owns it exists.
pub const AFTER_PRE_COMMIT: &str = "after-pre-commit";
/// After the checkpoint's metadata became durable, before any sink is told to commit:
/// simulates a crash in the window where the checkpoint is complete but nothing committed.
pub const AFTER_METADATA: &str = "after-metadata";
/// In a sink's commit: simulates a destination that fails (or a crash) while committing, so
/// the restored job must commit again (commit is idempotent).
pub const DURING_COMMIT: &str = "during-commit";
/// While restoring state from a checkpoint: simulates a failure at the start of an attempt,
/// before any subtask runs.
pub const DURING_RESTORE: &str = "during-restore";

/// Every fail point the engine checks (connectors add their own names).
pub const ALL: [&str; 8] = [
    PROCESS_RECORD,
    SNAPSHOT_SYNC,
    UPLOAD,
    BEFORE_METADATA,
    AFTER_PRE_COMMIT,
    AFTER_METADATA,
    DURING_COMMIT,
    DURING_RESTORE,
];

/// What an armed fail point does when it triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Returns an error from the phase (an I/O error, a failed call).
    Error,
    /// Panics in the phase.
    Panic,
    /// Ends the process immediately, like `kill -9`.
    Abort,
}

#[derive(Debug)]
struct Armed {
    /// Hits left before it triggers (it triggers when this reaches 0).
    remaining: u64,
    action: FailAction,
}

#[derive(Debug, Default)]
struct Points {
    /// Whether any point is armed: the only thing a check reads while none is.
    any_armed: AtomicBool,
    armed: Mutex<HashMap<String, Armed>>,
}

/// A job's set of fail points: cheap to clone (clones share the set), disarmed when created.
///
/// Arm points on a handle, give it to the job, and ask it afterwards which points fired:
///
/// ```no_run
/// use weir_engine::fail::{self, FailAction, FailPoints};
/// use weir_engine::prelude::*;
/// let points = FailPoints::new();
/// points.arm(fail::AFTER_METADATA, 2, FailAction::Panic);
/// let p = Pipeline::new("drill").checkpoint_storage("/tmp/chk").fail_points(points.clone());
/// // ... add steps, p.run() ...
/// assert!(!points.is_armed(fail::AFTER_METADATA), "the failure was injected");
/// ```
#[derive(Debug, Clone, Default)]
pub struct FailPoints {
    points: Arc<Points>,
}

static PROCESS_WIDE: LazyLock<FailPoints> = LazyLock::new(FailPoints::new);

impl FailPoints {
    /// A new set with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide set, used by every job whose configuration names none. Arm it only in
    /// a process that runs one job at a time: a drill's child process.
    pub fn process_wide() -> FailPoints {
        PROCESS_WIDE.clone()
    }

    /// Arms fail point `name` to trigger on its `nth` hit (1 = the next one), once.
    pub fn arm(&self, name: &str, nth: u64, action: FailAction) {
        let mut g = self.points.armed.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(
            name.to_string(),
            Armed {
                remaining: nth.max(1),
                action,
            },
        );
        self.points.any_armed.store(true, Ordering::SeqCst);
    }

    /// Disarms every fail point of this set.
    pub fn disarm_all(&self) {
        let mut g = self.points.armed.lock().unwrap_or_else(|e| e.into_inner());
        g.clear();
        self.points.any_armed.store(false, Ordering::SeqCst);
    }

    /// Whether fail point `name` is still armed (has not triggered yet).
    pub fn is_armed(&self, name: &str) -> bool {
        if !self.points.any_armed.load(Ordering::Relaxed) {
            return false;
        }
        let g = self.points.armed.lock().unwrap_or_else(|e| e.into_inner());
        g.contains_key(name)
    }

    /// Checks fail point `name`: returns an error, panics or aborts if it is armed and due.
    ///
    /// # Errors
    /// A retryable `External` error when the point is armed with [`FailAction::Error`] and due.
    pub fn hit(&self, name: &str) -> Result<()> {
        if !self.points.any_armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let action = {
            let mut g = self.points.armed.lock().unwrap_or_else(|e| e.into_inner());
            let Some(a) = g.get_mut(name) else { return Ok(()) };
            a.remaining -= 1;
            if a.remaining > 0 {
                return Ok(());
            }
            let action = a.action;
            g.remove(name);
            if g.is_empty() {
                self.points.any_armed.store(false, Ordering::SeqCst);
            }
            action
        };
        tracing::warn!(fail_point = name, ?action, "injected failure");
        match action {
            FailAction::Error => Err(Error::new(
                ErrorKind::External { retryable: true },
                format!("injected failure at fail point {name}"),
            )),
            FailAction::Panic => panic!("injected panic at fail point {name}"),
            FailAction::Abort => std::process::abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_triggers_on_its_nth_hit_once() {
        let p = FailPoints::new();
        p.arm(UPLOAD, 2, FailAction::Error);
        assert!(p.hit(UPLOAD).is_ok());
        assert!(p.is_armed(UPLOAD));
        assert!(p.hit(UPLOAD).is_err());
        assert!(!p.is_armed(UPLOAD));
        assert!(p.hit(UPLOAD).is_ok());
    }

    #[test]
    fn sets_are_independent_and_clones_share() {
        let (a, b) = (FailPoints::new(), FailPoints::new());
        let a2 = a.clone();
        a.arm(PROCESS_RECORD, 1, FailAction::Error);
        assert!(b.hit(PROCESS_RECORD).is_ok());
        assert!(!b.is_armed(PROCESS_RECORD));
        assert!(a2.hit(PROCESS_RECORD).is_err());
        assert!(!a.is_armed(PROCESS_RECORD));
    }

    #[test]
    fn disarm_all_disarms() {
        let p = FailPoints::new();
        p.arm(DURING_COMMIT, 1, FailAction::Panic);
        p.disarm_all();
        assert!(p.hit(DURING_COMMIT).is_ok());
    }
}
