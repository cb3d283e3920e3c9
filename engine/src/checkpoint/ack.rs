//! What a subtask reports when a checkpoint barrier passed through it: the result of its
//! synchronous snapshot. A plain serializable message, so that the master may one day receive
//! it over a network instead of a channel.

use super::metadata::StoredFile;
use crate::message::Barrier;
use crate::operator::OperatorSnapshot;
use crate::source::SplitPosition;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The snapshot one operator subtask of a chain took for a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorSubtaskSnapshot {
    /// The operator's name.
    pub operator: String,
    /// The operator's subtask index.
    pub subtask: usize,
    /// Its staged keyed files and operator state.
    pub snapshot: OperatorSnapshot,
    /// The snapshot as already stored in checkpoint storage by the worker that took it (a
    /// cluster's workers store their own subtasks' files); `None`: the master stores it.
    #[serde(default)]
    pub stored: Option<StoredSubtask>,
}

/// One operator subtask's snapshot in checkpoint storage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredSubtask {
    /// Its keyed files (some referenced from an earlier checkpoint).
    pub keyed_files: Vec<StoredFile>,
    /// Its operator state.
    pub operator_state: Option<StoredFile>,
    /// Bytes written to the storage for it (files referenced again excluded).
    pub uploaded_bytes: u64,
}

/// Where a source subtask's reader stood at the barrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// The source step's name.
    pub source: String,
    /// The positions of the splits the subtask reads.
    pub positions: Vec<SplitPosition>,
    /// Records the source subtask had read at the barrier (this attempt).
    pub records_read: u64,
}

/// A subtask's acknowledgement of a checkpoint barrier: its snapshot is taken and staged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointAck {
    /// The subtask (its index in the attempt's physical plan).
    pub task: usize,
    /// The barrier acknowledged.
    pub barrier: Barrier,
    /// Snapshot of every operator in the subtask's chain.
    pub operators: Vec<OperatorSubtaskSnapshot>,
    /// The reader's positions, for source subtasks.
    pub source: Option<SourceSnapshot>,
    /// Time the barrier waited for alignment.
    pub alignment: Duration,
    /// Time of the synchronous snapshot.
    pub sync_duration: Duration,
}
