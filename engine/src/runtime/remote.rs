//! The master's view of subtasks that run in other processes: what a cluster runtime provides
//! so that the master's attempt loop and checkpoint protocol stay the same in one process and
//! across many. The runtime defines the contract; [`crate::cluster`] implements it.
//!
//! # After a crash
//! An implementation reports every subtask of a deployed attempt as exited exactly once: by
//! forwarding the worker's own report, or, for a worker that was lost, by reporting its
//! subtasks that had not exited as cancelled together with an [`TaskEvent::AttemptFailed`].
//! So the master never starts the next attempt while it still counts subtasks of the last one
//! as running, and a lost worker's subtasks never hold up the failover.

use crate::message::CheckpointId;
use crate::runtime::control::Control;
use crate::runtime::events::TaskEvent;
use crate::Result;
use crossbeam_channel::Sender;
use std::collections::BTreeMap;

/// What one attempt deploys on the workers.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRequest {
    /// The master's attempt number (1 = the first of this master process).
    pub(crate) attempt: u32,
    /// The completed checkpoint every worker restores its subtasks from.
    pub(crate) restore: Option<CheckpointId>,
    /// The location of the savepoint `restore` names, when it is the savepoint the job
    /// starts from rather than one of the job's own checkpoints.
    pub(crate) from_savepoint: Option<String>,
    /// Records the job's sources had read at that checkpoint.
    pub(crate) base_source_records: u64,
}

/// An attempt deployed on the workers.
pub(crate) struct RemoteAttempt {
    /// Every subtask of the attempt with its name, by subtask number.
    pub(crate) tasks: Vec<(usize, String)>,
    /// The source subtasks (they receive checkpoint triggers).
    pub(crate) source_tasks: Vec<usize>,
    /// Sends a control message to a subtask (on whatever worker runs it), in order.
    pub(crate) send: Box<dyn Fn(usize, Control) + Send + Sync>,
}

/// Runs attempts of the job on other processes.
pub(crate) trait RemoteExecutor: Send {
    /// Deploys `request` on the workers present; their subtasks report to `events` from now
    /// until [`end_attempt`](Self::end_attempt).
    ///
    /// # Errors
    /// Why the attempt could not be deployed (too few workers, a worker refused it); nothing
    /// of it runs then.
    fn deploy(&mut self, request: &AttemptRequest, events: Sender<TaskEvent>) -> Result<RemoteAttempt>;

    /// Records the current attempt's sources read and its sinks received so far, as the
    /// workers last reported them.
    fn records(&self) -> (u64, u64);

    /// Every subtask's counters in the current attempt, as the workers last reported them.
    fn subtasks(&self) -> Vec<crate::runtime::status::SubtaskCounters> {
        Vec::new()
    }

    /// The workers, as their heartbeats show them.
    fn workers(&self) -> Vec<crate::runtime::status::WorkerStatus> {
        Vec::new()
    }

    /// The attempt is over (every subtask reported exited): nothing of it is forwarded any more.
    fn end_attempt(&mut self);

    /// The job is over: the workers are told to end.
    fn finish(&mut self);
}

/// How the master reaches the subtasks of an attempt: their control channels in this process,
/// or a cluster's forwarder.
pub(crate) enum Controls {
    /// Subtasks in this process.
    Local(BTreeMap<usize, Sender<Control>>),
    /// Subtasks on workers.
    Remote {
        /// Every subtask of the attempt.
        tasks: Vec<usize>,
        /// Sends to one of them.
        send: Box<dyn Fn(usize, Control) + Send + Sync>,
    },
}

impl Controls {
    /// Sends `control` to subtask `task`; a subtask that is gone is ignored.
    pub(crate) fn send(&self, task: usize, control: Control) {
        match self {
            Controls::Local(map) => {
                if let Some(c) = map.get(&task) {
                    let _ = c.send(control);
                }
            }
            Controls::Remote { send, .. } => send(task, control),
        }
    }

    /// Sends `control` to every subtask of the attempt.
    pub(crate) fn broadcast(&self, control: Control) {
        match self {
            Controls::Local(map) => {
                for c in map.values() {
                    let _ = c.send(control.clone());
                }
            }
            Controls::Remote { tasks, send } => {
                for &t in tasks {
                    send(t, control.clone());
                }
            }
        }
    }
}
