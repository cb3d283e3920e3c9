//! A completed checkpoint's metadata: the single file whose atomic appearance makes the
//! checkpoint complete. It lists every file (with size and checksum), every source position
//! and every operator state, so that a restore needs nothing else.

use crate::message::{BarrierKind, CheckpointId};
use crate::source::SplitPosition;
use crate::state::KeyGroupRange;
use serde::{Deserialize, Serialize};

/// Version of the metadata format; a restore rejects other versions with a clear error.
pub const FORMAT_VERSION: u32 = 1;

/// A stored file: where it is (relative to the storage root) and how to verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Name of the file in the subtask's snapshot directory (what the state backend expects).
    pub name: String,
    /// Key of the object in checkpoint storage.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the content.
    pub crc32c: u32,
}

/// The state of one operator subtask in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Subtask index.
    pub subtask: usize,
    /// Key groups the subtask owned.
    pub key_groups: KeyGroupRange,
    /// Files of its keyed state snapshot.
    pub keyed_files: Vec<StoredFile>,
    /// Its operator state (sink committables, ...), if any.
    pub operator_state: Option<StoredFile>,
}

/// The state of one operator (or source) in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorState {
    /// The step's name.
    pub name: String,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: usize,
    /// One entry per subtask that has state.
    pub subtasks: Vec<SubtaskState>,
}

/// The read positions of one source step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceState {
    /// The source step's name.
    pub name: String,
    /// Position of every split.
    pub positions: Vec<SplitPosition>,
}

/// Figures about how a checkpoint was taken.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Wall-clock time of the trigger, ms since the epoch.
    pub triggered_at_ms: u64,
    /// Longest synchronous snapshot of any subtask, ms.
    pub sync_ms: f64,
    /// Longest barrier alignment of any subtask, ms.
    pub alignment_ms: f64,
    /// Upload (asynchronous phase) duration, ms.
    pub async_ms: f64,
    /// Trigger to completion, ms.
    pub total_ms: f64,
    /// Bytes of all files the checkpoint references.
    pub state_bytes: u64,
    /// Bytes this checkpoint stored anew (the rest it shares with earlier checkpoints).
    pub uploaded_bytes: u64,
    /// Source records read when the barrier was taken (all sources).
    pub source_records: u64,
}

/// The metadata of a completed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// The job's name.
    pub job: String,
    /// The checkpoint.
    pub id: CheckpointId,
    /// Periodic or final.
    pub kind: BarrierKind,
    /// Number of key groups of the job.
    pub max_parallelism: usize,
    /// Source positions.
    pub sources: Vec<SourceState>,
    /// Operator states.
    pub operators: Vec<OperatorState>,
    /// How it was taken.
    pub stats: CheckpointStats,
}

impl CheckpointMetadata {
    /// Every file the checkpoint references.
    pub fn files(&self) -> impl Iterator<Item = &StoredFile> {
        self.operators
            .iter()
            .flat_map(|o| o.subtasks.iter())
            .flat_map(|s| s.keyed_files.iter().chain(s.operator_state.iter()))
    }
}
