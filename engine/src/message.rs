//! What travels on a channel between subtasks: batches, and the in-band control events that
//! must stay ordered with them (watermarks, idleness, barriers, end of stream).

use crate::data::{ErasedBatch, Timestamp};
use serde::{Deserialize, Serialize};

/// A checkpoint's number. Ids increase monotonically over the life of a job, across restarts;
/// the first checkpoint of a job is [`CheckpointId::FIRST`].
///
/// On disk and on the wire it is the plain number: serde sees a `u64` (`#[serde(transparent)]`),
/// [`Display`](std::fmt::Display) writes the decimal number (as in a checkpoint directory's name,
/// `chk-<id>`) and [`FromStr`](std::str::FromStr) reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckpointId(u64);

impl CheckpointId {
    /// The id of a job's first checkpoint.
    pub const FIRST: CheckpointId = CheckpointId(1);

    /// The checkpoint numbered `id`.
    pub const fn new(id: u64) -> CheckpointId {
        CheckpointId(id)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id after this one.
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0 + 1)
    }
}

impl std::fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for CheckpointId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> std::result::Result<CheckpointId, Self::Err> {
        s.parse().map(CheckpointId)
    }
}

/// Why a barrier was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierKind {
    /// A periodic checkpoint triggered by the coordinator.
    Checkpoint,
    /// The final checkpoint of a bounded job, taken after every source has finished.
    Final,
    /// A savepoint taken on request while the job runs: a checkpoint like any other, copied
    /// into the savepoint's own storage once it is complete.
    Savepoint,
    /// A savepoint after which the job stops: sources record their positions, emit the barrier
    /// and end their output; every subtask snapshots (no final watermark: windows and timers
    /// stay in the savepoint's state), sinks commit the savepoint's output, then every subtask
    /// ends.
    StopWithSavepoint,
}

impl BarrierKind {
    /// Whether the barrier is the last thing on every channel: end of stream follows it, and
    /// subtasks end once its checkpoint is complete.
    pub fn ends_stream(self) -> bool {
        matches!(self, BarrierKind::Final | BarrierKind::StopWithSavepoint)
    }

    /// Whether the checkpoint is copied into a savepoint once complete.
    pub fn is_savepoint(self) -> bool {
        matches!(self, BarrierKind::Savepoint | BarrierKind::StopWithSavepoint)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_id_is_stored_and_printed_as_its_plain_number() {
        let id = CheckpointId::new(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<CheckpointId>("42").unwrap(), id);
        let cfg = bincode::config::standard();
        assert_eq!(
            bincode::serde::encode_to_vec(id, cfg).unwrap(),
            bincode::serde::encode_to_vec(42u64, cfg).unwrap()
        );
        assert_eq!(format!("chk-{id}"), "chk-42");
        assert_eq!(format!("{id:010}"), "0000000042");
        assert_eq!("42".parse::<CheckpointId>().unwrap(), id);
        assert!("x".parse::<CheckpointId>().is_err());
        assert_eq!(
            (CheckpointId::FIRST.get(), CheckpointId::FIRST.next()),
            (1, CheckpointId::new(2))
        );
    }
}
