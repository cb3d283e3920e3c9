//! What the threads of one attempt share: its cancellation flag and the signal that wakes
//! blocked threads, where its subtasks stage checkpoint snapshots, and the job's fail points.
//!
//! # After a crash
//! Nothing here is durable: a new attempt gets a new `JobShared`, and the staging directories
//! of the old one are cleaned by the staging area at the next start.

use crate::cancellation::Cancellation;
use crate::fail::FailPoints;
use crate::message::CheckpointId;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::PathBuf;
use std::sync::Mutex;

/// State shared by the threads of one attempt.
#[derive(Debug)]
pub struct JobShared {
    cancelled: Cancellation,
    snapshot_root: Option<PathBuf>,
    /// Dropped when the attempt is cancelled: wakes every thread waiting on `cancel_signal`.
    cancel_tx: Mutex<Option<Sender<()>>>,
    cancel_signal: Receiver<()>,
    /// The job's fail points, for the attempt's subtasks.
    fail_points: FailPoints,
    /// The attempt's number (1 for the first), shown to user functions.
    attempt: u32,
}

impl Default for JobShared {
    fn default() -> Self {
        JobShared::new(None, FailPoints::new(), 1)
    }
}

impl JobShared {
    pub(crate) fn new(snapshot_root: Option<PathBuf>, fail_points: FailPoints, attempt: u32) -> Self {
        let (tx, rx) = bounded(0);
        JobShared {
            cancelled: Cancellation::new(),
            snapshot_root,
            cancel_tx: Mutex::new(Some(tx)),
            cancel_signal: rx,
            fail_points,
            attempt,
        }
    }

    /// The attempt's number: 1 for the job's first, one more after each restart.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A channel that never delivers and disconnects when the attempt is cancelled: select
    /// on it next to a blocking channel operation to stop waiting at once.
    pub(crate) fn cancel_signal(&self) -> &Receiver<()> {
        &self.cancel_signal
    }

    /// Tells every thread of the attempt to stop.
    pub(crate) fn cancel(&self) {
        self.cancelled.cancel();
        self.cancel_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The job's fail points.
    pub(crate) fn fail_points(&self) -> &FailPoints {
        &self.fail_points
    }

    /// Whether the attempt's subtasks must stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.is_cancelled()
    }

    /// The attempt's cancellation flag, for sinks and sources.
    pub(crate) fn cancellation(&self) -> Cancellation {
        self.cancelled.clone()
    }

    /// Where subtasks stage their snapshots for checkpoint `id`, when checkpoints are persisted.
    pub(crate) fn snapshot_dir(&self, id: CheckpointId) -> Option<PathBuf> {
        self.snapshot_root.as_ref().map(|r| r.join(format!("chk-{id}")))
    }
}
