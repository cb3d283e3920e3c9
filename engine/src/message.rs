//! What travels on a channel between subtasks: batches, and the in-band control events that
//! must stay ordered with them (watermarks, idleness, barriers, end of stream).

use crate::data::{ErasedBatch, Timestamp};
use serde::{Deserialize, Serialize};

/// A checkpoint's number. Ids increase monotonically over the life of a job, across restarts.
pub type CheckpointId = u64;

/// Why a barrier was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierKind {
    /// A periodic checkpoint triggered by the coordinator.
    Checkpoint,
    /// The final checkpoint of a bounded job, taken after every source has finished.
    Final,
}

/// A numbered checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint this barrier belongs to.
    pub id: CheckpointId,
    /// Why it was injected.
    pub kind: BarrierKind,
    /// Coordinator wall-clock time when the checkpoint was triggered (ms since the epoch).
    pub triggered_at_ms: u64,
}

/// One message on a channel.
pub enum Message {
    /// Records.
    Batch(Box<dyn ErasedBatch>),
    /// Event time has advanced to this point on the sending channel: no later record on it will
    /// carry an earlier timestamp unless it is late.
    Watermark(Timestamp),
    /// The sending channel is idle (`true`) or active again (`false`); an idle channel does not
    /// hold back the receiver's watermark.
    Idle(bool),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The sending subtask has finished: nothing more will come on this channel.
    End,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Batch(b) => write!(f, "Batch({} records)", b.len()),
            Message::Watermark(w) => write!(f, "Watermark({w})"),
            Message::Idle(i) => write!(f, "Idle({i})"),
            Message::Barrier(b) => write!(f, "Barrier({})", b.id),
            Message::End => write!(f, "End"),
        }
    }
}
