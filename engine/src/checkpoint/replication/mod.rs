//! Cross-site replication of completed checkpoints: a second checkpoint storage (another
//! bucket, endpoint, region or disk) that a job can be started from when the first site is
//! lost.
//!
//! The job's coordinator hands every checkpoint it completes to a [`Replicator`], which copies
//! it asynchronously, newest first (a checkpoint superseded while it waited is skipped: the
//! replica's recovery point only moves forward): the files the replica does not hold yet
//! (shared RocksDB files are copied once), each verified against the checksum in the metadata
//! after it was read back *from the replica*, then the job identity record, then the metadata,
//! last, by the replica's create-only publication. Retention on the replica keeps as many
//! checkpoints as the job's own storage.
//!
//! # What holds after a crash (or the loss of the first site)
//! A checkpoint in the replica is complete exactly when its metadata is there, and then every
//! file it references was verified in the replica: a job started on the replica restores it
//! like any checkpoint. The replica lags the first site by the checkpoints that completed
//! there but were not copied yet ([`ReplicationStatus`] reports the lag in checkpoints and
//! seconds). Output the sinks committed for those checkpoints would be produced again by a
//! job restored from the replica, so with [`ReplicationMode::BeforeCommit`] the sinks commit a
//! checkpoint only once it is in the replica: the replica is never behind the committed
//! output, and a restore there loses nothing and duplicates nothing (the sources replay from
//! the replicated positions). [`ReplicationMode::Async`] does not delay commits; a restore
//! from a lagging replica then needs the user's consent to reproduce output (see
//! `CheckpointConfig::fallback_to_older_checkpoint_reproducing_output`).

mod copy;
mod plan;
mod replicator;

pub use replicator::{ReplicationStatus, Replicator};

use super::storage::CheckpointStorage;
use std::sync::Arc;

/// When sinks may commit a checkpoint that is being replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicationMode {
    /// Sinks commit as soon as the checkpoint is complete in the job's own storage; the
    /// replica follows. Commits are not delayed, but a restore from a lagging replica
    /// reproduces output committed after its newest checkpoint.
    Async,
    /// Sinks commit a checkpoint only once it is complete in the replica too: commits wait for
    /// the copy, and the replica is never behind the committed output (RPO 0 for committed
    /// output at the second site).
    #[default]
    BeforeCommit,
}

/// Where and how completed checkpoints are replicated.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// The second storage.
    pub target: Arc<dyn CheckpointStorage>,
    /// When sinks may commit (default [`ReplicationMode::BeforeCommit`]).
    pub mode: ReplicationMode,
}

impl ReplicationConfig {
    /// Replication to `target` with sinks committing only replicated checkpoints.
    pub fn new(target: Arc<dyn CheckpointStorage>) -> Self {
        ReplicationConfig {
            target,
            mode: ReplicationMode::BeforeCommit,
        }
    }

    /// The same with `mode`.
    pub fn mode(mut self, mode: ReplicationMode) -> Self {
        self.mode = mode;
        self
    }
}
