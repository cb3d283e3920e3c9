//! Starting a job, and what its threads share: the attempt's cancellation flag and staging
//! directory, and the events subtasks send to the master.
//!
//! The master (`runtime::master`) alone decides that a checkpoint is complete: after
//! every subtask acknowledged its barrier and, with checkpoint storage, after the checkpoint's
//! metadata is durable. Only then are sinks told to commit. Any failure cancels every subtask
//! of the attempt; the restart strategy then decides whether a new attempt restores the latest
//! completed checkpoint. No thread of an attempt outlives it.

use crate::cancellation::Cancellation;
use crate::checkpoint::ack::CheckpointAck;
use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::metadata::CheckpointMetadata;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::message::CheckpointId;
use crate::runtime::handle::{JobHandle, Live};
use crate::runtime::master::Master;
use crate::runtime::plan;
use crate::runtime::staging::StagingArea;
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Distinguishes runs of the same job within one process.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// State shared by the threads of one attempt.
#[derive(Debug)]
pub struct JobShared {
    cancelled: Cancellation,
    snapshot_root: Option<PathBuf>,
    /// Dropped when the attempt is cancelled: wakes every thread waiting on `cancel_signal`.
    cancel_tx: Mutex<Option<Sender<()>>>,
    cancel_signal: Receiver<()>,
}

impl Default for JobShared {
    fn default() -> Self {
        JobShared::new(None)
    }
}

impl JobShared {
    pub(crate) fn new(snapshot_root: Option<PathBuf>) -> Self {
        let (tx, rx) = bounded(0);
        JobShared {
            cancelled: Cancellation::new(),
            snapshot_root,
            cancel_tx: Mutex::new(Some(tx)),
            cancel_signal: rx,
        }
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

/// Why a subtask (or a checkpoint upload) failed, in a form that can cross a wire: the error's
/// kind (which decides whether a restart may help) and its message with context. In-process,
/// the original [`Error`] travels along (it is not serialized).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FailureReport {
    /// Who must act on the failure.
    pub(crate) kind: ErrorKind,
    /// The error's message, with the context it travelled through.
    pub(crate) message: String,
    /// The original error, when sender and master share a process.
    #[serde(skip)]
    pub(crate) error: Option<Error>,
}

impl FailureReport {
    /// The report of `error`, keeping the error itself for an in-process master.
    pub(crate) fn new(error: Error) -> Self {
        FailureReport {
            kind: error.kind(),
            message: error.to_string(),
            error: Some(error),
        }
    }

    /// The kind of the failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The failure as an error: the original one, or one rebuilt from kind and message.
    pub(crate) fn into_error(self) -> Error {
        match self.error {
            Some(e) => e,
            None => Error::new(self.kind, self.message),
        }
    }
}

/// How a subtask's thread ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskOutcome {
    /// Its input ended and its final checkpoint is complete, or it stopped cleanly.
    Finished,
    /// It failed (or stopped because the attempt was cancelled: kind `Cancelled`).
    Failed(FailureReport),
}

impl TaskOutcome {
    /// The outcome of a subtask's run.
    pub(crate) fn of(result: Result<()>) -> Self {
        match result {
            Ok(()) => TaskOutcome::Finished,
            Err(e) => TaskOutcome::Failed(FailureReport::new(e)),
        }
    }
}

/// What the job's threads tell the master: plain serializable messages, so that a later
/// runtime only swaps the transport.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskEvent {
    /// A subtask opened its operators (state restored) and runs.
    Running {
        /// The subtask.
        task: usize,
    },
    /// A barrier passed through the subtask and its snapshot is taken.
    Ack {
        /// What the snapshot produced.
        ack: Box<CheckpointAck>,
    },
    /// A source subtask read all of its input.
    SourceExhausted {
        /// The subtask.
        task: usize,
    },
    /// The subtask's thread ended.
    Exited {
        /// The subtask.
        task: usize,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// The asynchronous phase of a checkpoint ended.
    Uploaded {
        /// The attempt that started the upload.
        attempt: u32,
        /// The checkpoint.
        id: CheckpointId,
        /// The metadata to publish, or why the upload failed.
        result: Box<std::result::Result<CheckpointMetadata, FailureReport>>,
    },
    /// The user asked to cancel.
    CancelRequested,
}

/// Starts the job described by `graph`.
pub(crate) fn start(graph: Arc<Graph>, cfg: JobConfig) -> Result<JobHandle> {
    plan::validate(&graph, &cfg)?;
    // Everything that can be checked before starting is: `start` returns these errors itself.
    let keyed = graph
        .nodes
        .iter()
        .any(|n| matches!(n.kind, crate::graph::NodeKind::Operator { keyed: true, .. }));
    if keyed {
        cfg.state_backend.validate()?;
    }
    for n in &graph.nodes {
        if let crate::graph::NodeKind::Source(src) = &n.kind {
            src.splits()
                .map_err(|e| e.context(format!("listing the splits of source \"{}\"", n.name)))?;
        }
    }
    // One process per job on its checkpoint storage (taken by the coordinator) and on its
    // state directory: a second process fails here, naming the first.
    let coordinator = match &cfg.checkpoint {
        Some(c) => {
            // Unique per run: two runs of a job (even in one process) never share staging,
            // and a later process that happens to get the same pid does not reuse the name.
            let run = format!(
                "{}-{}-{}-{}",
                crate::state::backend::dir_name(&cfg.name),
                std::process::id(),
                RUN_COUNTER.fetch_add(1, Ordering::Relaxed),
                crate::runtime::task::now_ms()
            );
            let parent = match cfg.state_backend.local_dir() {
                Some(d) => d.join("_snapshots"),
                // Shared by the user's runs (so that a later one removes what a crashed one
                // left), not with other users.
                None => std::env::temp_dir().join(format!(
                    "weir-snapshots-{}",
                    crate::state::backend::dir_name(
                        &std::env::var("USER")
                            .or_else(|_| std::env::var("LOGNAME"))
                            .unwrap_or_default()
                    )
                )),
            };
            let staging = StagingArea::create(&parent, &run)?;
            Some(Coordinator::new(c.clone(), &cfg.name, cfg.max_parallelism, staging)?)
        }
        None => None,
    };
    let state_lock = if keyed {
        cfg.state_backend.lock_job(&cfg.name)?
    } else {
        None
    };
    let (events_tx, events_rx) = unbounded();
    let live = Arc::new(Live::default());
    let master = {
        let (live, events_tx) = (live.clone(), events_tx.clone());
        std::thread::Builder::new()
            .name(format!("weir-master-{}", cfg.name))
            .spawn(move || {
                // Held until the job ends (the coordinator holds the storage's lease).
                let _state_lock = state_lock;
                let mut m = Master::new(graph, cfg, coordinator, events_rx, events_tx, live);
                m.run()
            })
            .map_err(|e| Error::io("spawning the job master thread", e))?
    };
    Ok(JobHandle {
        live,
        events: events_tx,
        master: Some(master),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ack::{OperatorSubtaskSnapshot, SourceSnapshot};
    use crate::message::{Barrier, BarrierKind};
    use crate::runtime::control::Control;

    #[test]
    fn messages_survive_a_wire_with_the_failure_kind() {
        let failed = TaskEvent::Exited {
            task: 3,
            outcome: TaskOutcome::of(Err(Error::new(ErrorKind::External { retryable: false }, "broker gone"))),
        };
        let back: TaskEvent = serde_json::from_str(&serde_json::to_string(&failed).unwrap()).unwrap();
        let TaskEvent::Exited {
            task: 3,
            outcome: TaskOutcome::Failed(report),
        } = back
        else {
            panic!("not the event sent: {back:?}")
        };
        assert!(report.error.is_none(), "the error itself stays in-process");
        let e = report.into_error();
        assert_eq!(e.kind(), ErrorKind::External { retryable: false });
        assert!(e.to_string().contains("broker gone"), "{e}");

        let barrier = Barrier {
            id: 7,
            kind: BarrierKind::Final,
            triggered_at_ms: 1,
        };
        let ack = TaskEvent::Ack {
            ack: Box::new(CheckpointAck {
                task: 0,
                barrier,
                operators: vec![OperatorSubtaskSnapshot {
                    operator: "map".into(),
                    subtask: 0,
                    snapshot: crate::operator::OperatorSnapshot {
                        keyed_files: vec!["000001.sst".into()],
                        operator_state: Some(vec![1, 2]),
                    },
                }],
                source: Some(SourceSnapshot {
                    source: "numbers".into(),
                    positions: Vec::new(),
                    records_read: 42,
                }),
                alignment: std::time::Duration::from_millis(3),
                sync_duration: std::time::Duration::from_millis(4),
            }),
        };
        let back: TaskEvent = serde_json::from_str(&serde_json::to_string(&ack).unwrap()).unwrap();
        let TaskEvent::Ack { ack } = back else {
            panic!("not an ack")
        };
        assert_eq!(ack.barrier, barrier);
        assert_eq!(
            ack.operators[0].snapshot.keyed_files,
            vec![std::path::PathBuf::from("000001.sst")]
        );
        assert_eq!(ack.source.as_ref().map(|s| s.records_read), Some(42));

        let control = Control::CheckpointComplete { id: 7 };
        let back: Control = serde_json::from_str(&serde_json::to_string(&control).unwrap()).unwrap();
        assert!(matches!(back, Control::CheckpointComplete { id: 7 }));
    }
}
