//! Control messages from the job master to a subtask, outside the data stream.

use crate::message::{Barrier, CheckpointId};

/// A message to one subtask's control channel.
#[derive(Debug, Clone)]
pub enum Control {
    /// (Sources) take checkpoint `barrier.id`: record read positions and emit the barrier.
    TriggerCheckpoint(Barrier),
    /// Checkpoint `id` is complete and durable: commit what was held back for it.
    CheckpointComplete(CheckpointId),
    /// Stop as soon as possible; the job is being cancelled or restarted.
    Cancel,
}
