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
        self.storage.validate()
    }
}
