//! Starting a job, and what its threads share: the attempt's cancellation flag and staging
//! directory, and the events subtasks send to the master.
//!
//! The master (`runtime::master`) alone decides that a checkpoint is complete: after
//! every subtask acknowledged its barrier and, with checkpoint storage, after the checkpoint's
//! metadata is durable. Only then are sinks told to commit. Any failure cancels every subtask
//! of the attempt; the restart strategy then decides whether a new attempt restores the latest
//! completed checkpoint. No thread of an attempt outlives it.

use crate::cancellation::Cancellation;
use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::metadata::CheckpointMetadata;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::message::CheckpointId;
use crate::runtime::handle::{JobHandle, Live};
use crate::runtime::master::Master;
use crate::runtime::plan;
use crate::runtime::staging::StagingArea;
use crate::runtime::task::TaskAck;
use crate::{Error, Result};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
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
    /// The job's fail points, for the attempt's subtasks.
    fail_points: crate::fail::FailPoints,
}

impl Default for JobShared {
    fn default() -> Self {
        JobShared::new(None, crate::fail::FailPoints::new())
    }
}

impl JobShared {
    pub(crate) fn new(snapshot_root: Option<PathBuf>, fail_points: crate::fail::FailPoints) -> Self {
        let (tx, rx) = bounded(0);
        JobShared {
            cancelled: Cancellation::new(),
            snapshot_root,
            cancel_tx: Mutex::new(Some(tx)),
            cancel_signal: rx,
            fail_points,
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

    /// The job's fail points.
    pub(crate) fn fail_points(&self) -> &crate::fail::FailPoints {
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

/// What the job's threads tell the master.
pub(crate) enum TaskEvent {
    /// A subtask opened its operators (state restored) and runs.
    Running,
    /// A barrier passed through the subtask and its snapshot is taken.
    Ack(Box<TaskAck>),
    /// A source subtask read all of its input.
    SourceExhausted { task: usize },
    /// The subtask's thread ended.
    Exited { task: usize, result: Result<()> },
    /// The asynchronous phase of a checkpoint ended.
    Uploaded {
        attempt: u32,
        id: CheckpointId,
        result: Box<Result<CheckpointMetadata>>,
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
            Some(
                Coordinator::new(c.clone(), &cfg.name, cfg.max_parallelism, staging)?
                    .with_fail_points(cfg.fail_points()),
            )
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
