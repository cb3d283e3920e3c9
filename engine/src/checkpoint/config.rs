//! Checkpoint settings.

use super::replication::ReplicationConfig;
use super::storage::{CheckpointStorage, LocalDirStorage};
pub use crate::recovery::{CheckpointTiming, RestoreMode};
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How and where a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Where checkpoints are stored.
    pub storage: Arc<dyn CheckpointStorage>,
    /// Time between checkpoint triggers (default 1 s).
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted; the job keeps running (default 60 s).
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the trigger of the next (default 0).
    pub min_pause: Duration,
    /// Completed checkpoints kept (default 3); older ones and unreferenced files are deleted.
    pub retained: usize,
    /// Completed checkpoints older than this (since they completed) are deleted too (default
    /// `None`: no age limit). The newest completed checkpoint is always kept, however old.
    pub retained_max_age: Option<Duration>,
    /// What happens to the job's checkpoints when the user cancels the job or stops it with a
    /// savepoint (default [`OnCancel::Retain`]). Failures and a finished job never delete them.
    pub on_cancel: OnCancel,
    /// Start from this savepoint, when the job's own storage holds no completed checkpoint
    /// (default `None`). Once the job completed a checkpoint of its own, restarts and new runs
    /// restore that instead, as after a failover: the savepoint is where the job began.
    pub from_savepoint: Option<SavepointRestore>,
    /// Where to start from.
    pub restore: RestoreMode,
    /// Allows a restore to use an older checkpoint than the newest complete one (default
    /// `false`): when the newest is corrupt, the previous retained checkpoint is restored, and
    /// a sink whose committed output is ahead of the restored checkpoint is accepted.
    ///
    /// **What it risks:** everything the sinks committed after the restored checkpoint is
    /// produced and committed again. Idempotent sinks absorb it; append-only sinks
    /// ([`FileSink`](crate::sink::FileSink), an exactly-once Kafka sink, any log) then hold
    /// that output twice. The fallback is reported through `tracing` and in
    /// [`JobReport::restore_warnings`](crate::runtime::JobReport::restore_warnings).
    /// Without it, such a start fails with a `Config` error naming the checkpoint.
    pub fallback_to_older_checkpoint_reproducing_output: bool,
    /// Checkpoints that may fail (time out or fail to upload) in a row before the job fails
    /// and restarts from its latest completed checkpoint (Flink's
    /// `tolerable-failed-checkpoints`; default 3). While checkpoints fail, sinks keep every
    /// pending committable and the records replayed after a failure grow; a restart is the
    /// deliberate way out. The count restarts at every completed checkpoint and every attempt.
    pub tolerable_failed_checkpoints: u32,
    /// A second storage (another bucket, endpoint, region or disk) that every completed
    /// checkpoint is copied to, for a restart at another site (default none; see
    /// [`replication`](super::replication)).
    pub replication: Option<ReplicationConfig>,
}

impl CheckpointConfig {
    /// The interval and timeout, for validating sinks' transaction timeouts.
    pub fn timing(&self) -> CheckpointTiming {
        CheckpointTiming {
            interval: self.interval,
            timeout: self.timeout,
        }
    }

    /// Checkpoints in local directory `dir`, with defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_storage(Arc::new(LocalDirStorage::new(dir)))
    }

    /// Checkpoints in `storage`, with defaults.
    pub fn with_storage(storage: Arc<dyn CheckpointStorage>) -> Self {
        CheckpointConfig {
            storage,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            retained: 3,
            retained_max_age: None,
            on_cancel: OnCancel::Retain,
            from_savepoint: None,
            restore: RestoreMode::Latest,
            fallback_to_older_checkpoint_reproducing_output: false,
            tolerable_failed_checkpoints: 3,
            replication: None,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `Config` naming the wrong setting.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::config("checkpoint interval must be greater than zero"));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("checkpoint timeout must be greater than zero"));
        }
        if self.retained == 0 {
            return Err(Error::config("at least one completed checkpoint must be retained"));
        }
        if let Some(r) = &self.replication {
            if r.target.describe() == self.storage.describe() {
                return Err(Error::config(format!(
                    "the checkpoint replica {} is the job's own checkpoint storage: replicate to another location",
                    r.target.describe()
                )));
            }
        }
        if self.from_savepoint.is_some() && self.restore != RestoreMode::Latest {
            return Err(Error::config(format!(
                "from_savepoint cannot be combined with restore mode {:?}: a savepoint is where the job starts",
                self.restore
            )));
        }
        self.storage.validate()
    }
}

/// What happens to a job's checkpoints when the user cancels it (Flink's externalized
/// checkpoint cleanup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCancel {
    /// Keep them: a later run resumes from the latest (the default; a recovery point is never
    /// deleted unasked).
    #[default]
    Retain,
    /// Delete every checkpoint of the job (complete or not, and the shared files) once the job
    /// stopped after [`JobHandle::cancel`](crate::runtime::JobHandle::cancel) or
    /// [`JobHandle::stop_with_savepoint`](crate::runtime::JobHandle::stop_with_savepoint).
    /// Savepoints are never deleted. The job identity record stays, so that a later run with
    /// [`RestoreMode::Latest`] refuses to start from scratch: start it from a savepoint or with
    /// [`RestoreMode::Fresh`].
    Delete,
}

/// A savepoint to start a job from: the storage whose root is the savepoint's root (a
/// directory for [`LocalDirStorage`], a bucket prefix for an object store). The savepoint may
/// have been copied there from wherever it was taken: its metadata names its files relative to
/// its root.
#[derive(Debug, Clone)]
pub struct SavepointRestore {
    /// The savepoint's storage.
    pub storage: Arc<dyn CheckpointStorage>,
    /// Accept a savepoint holding state of a step the job no longer has, and drop that state
    /// (Flink's `--allowNonRestoredState`; default `false`: such a start is refused with a
    /// `Config` error naming the step).
    pub allow_non_restored_state: bool,
}

impl SavepointRestore {
    /// The savepoint in `storage`.
    pub fn new(storage: Arc<dyn CheckpointStorage>) -> Self {
        SavepointRestore {
            storage,
            allow_non_restored_state: false,
        }
    }

    /// The savepoint in local directory `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self::new(Arc::new(LocalDirStorage::new(dir)))
    }

    /// Sets [`allow_non_restored_state`](Self::allow_non_restored_state).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }
}
