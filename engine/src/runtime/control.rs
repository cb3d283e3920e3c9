//! Control messages from the job master to a subtask, outside the data stream. Plain
//! serializable messages: the transport (a channel today) can become a network connection.

use crate::message::{Barrier, CheckpointId};
use serde::{Deserialize, Serialize};

/// A message to one subtask's control channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Control {
    /// (Sources) take checkpoint `barrier.id`: record read positions and emit the barrier.
    TriggerCheckpoint {
        /// The barrier to inject.
        barrier: Barrier,
    },
    /// Checkpoint `id` is complete and durable: commit what was held back for it.
    CheckpointComplete {
        /// The completed checkpoint.
        id: CheckpointId,
    },
    /// Stop as soon as possible; the job is being cancelled or restarted.
    Cancel,
}
