//! What the checkpoint tracker is configured with and what it answers: the actions the master
//! carries out and how an acknowledgement was taken.

use crate::checkpoint::ack::CheckpointAck;
use crate::checkpoint::metadata::CheckpointMetadata;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::Error;
use std::time::{Duration, Instant};

/// The protocol's settings.
#[derive(Debug, Clone)]
pub(crate) struct TrackerConfig {
    /// Time between triggers.
    pub(crate) interval: Duration,
    /// Time from the end of one checkpoint (completed or failed) to the next trigger.
    pub(crate) min_pause: Duration,
    /// A checkpoint not complete this long after its trigger is aborted (`None`: never).
    pub(crate) timeout: Option<Duration>,
    /// Consecutive failed checkpoints the attempt survives.
    pub(crate) tolerable_failed_checkpoints: u32,
    /// Whether checkpoints are uploaded and published (checkpoint storage is configured);
    /// otherwise a barrier only marks what sinks may commit.
    pub(crate) persisted: bool,
    /// Whether the attempt restored a checkpoint; a fresh start triggers its first checkpoint
    /// at once (sources whose start position can move hand out records only once a checkpoint
    /// holds it).
    pub(crate) restored: bool,
}

/// Why a checkpoint was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AbortReason {
    /// Not every subtask acknowledged it within the timeout.
    TimedOut,
    /// Its upload did not end within the timeout.
    UploadTimedOut,
    /// Its upload failed.
    UploadFailed(String),
}

impl AbortReason {
    /// The reason, as it reads after "checkpoint N".
    pub(crate) fn describe(&self) -> String {
        match self {
            AbortReason::TimedOut => "timed out".to_string(),
            AbortReason::UploadTimedOut => "its upload timed out".to_string(),
            AbortReason::UploadFailed(e) => format!("its upload failed: {e}"),
        }
    }
}

/// What the master does, in the order given.
#[derive(Debug)]
pub(crate) enum Action {
    /// Take an id for a checkpoint of this kind, send its barrier to the sources and report it
    /// back with [`CheckpointTracker::on_triggered`].
    Trigger { kind: BarrierKind },
    /// Every subtask acknowledged `barrier`: upload their snapshots.
    StartUpload { barrier: Barrier, acks: Vec<CheckpointAck> },
    /// The upload of `metadata.id` succeeded: publish its metadata (`triggered` is when the
    /// checkpoint was triggered) and report with [`CheckpointTracker::on_published`].
    Publish {
        metadata: Box<CheckpointMetadata>,
        triggered: Instant,
    },
    /// Checkpoint `id` is complete: tell every subtask (sinks commit).
    NotifyComplete { id: CheckpointId },
    /// Checkpoint `id` is complete and its sinks were told: apply retention.
    ApplyRetention { id: CheckpointId },
    /// Checkpoint `id` is aborted; `failed_in_a_row` checkpoints failed since the last
    /// completed one, this one included.
    Abort {
        id: CheckpointId,
        reason: AbortReason,
        failed_in_a_row: u32,
        tolerable: u32,
    },
    /// Every subtask acknowledged aborted checkpoint `id`: remove what they staged for it.
    DiscardStaged { id: CheckpointId },
    /// The attempt fails with this error (and restarts if the strategy allows).
    FailAttempt { error: Error },
}

/// How an acknowledgement was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// Recorded; `remaining` subtasks have not acknowledged the checkpoint yet.
    Recorded { remaining: usize },
    /// This subtask already acknowledged this checkpoint: ignored.
    Duplicate,
    /// No such subtask in this attempt: ignored.
    UnknownSubtask,
    /// A late ack of an aborted checkpoint: recorded only to know when its staging may go.
    LateForAborted,
    /// A checkpoint that is neither in flight nor aborted (an older, completed or not yet
    /// triggered one): ignored.
    NotInFlight,
}
