//! Running a job: spawning subtask threads, the master loop that drives barriers and reacts
//! to failures, and the handle users hold.
//!
//! The master is the only place that decides a checkpoint is complete, and only after every
//! subtask acknowledged it; only then are sinks told to commit. A failure anywhere cancels
//! every subtask: no thread is left running when `join` returns.

use crate::config::JobConfig;
use crate::graph::Graph;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::runtime::control::Control;
use crate::runtime::plan::{self, MetricsEntry, PhysicalPlan, RestoreInput};
use crate::runtime::report::{JobReport, OperatorReport};
use crate::runtime::task::{now_ms, TaskAck};
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// State shared by every thread of a running job.
#[derive(Debug, Default)]
pub struct JobShared {
    cancelled: AtomicBool,
    cancel_requested: AtomicBool,
    snapshot_root: Option<PathBuf>,
}

impl JobShared {
    pub(crate) fn new(snapshot_root: Option<PathBuf>) -> Self {
        JobShared {
            snapshot_root,
            ..Default::default()
        }
    }

    /// Whether subtasks must stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Where subtasks write their snapshots for checkpoint `id`, when checkpoints are persisted.
    pub(crate) fn snapshot_dir(&self, id: CheckpointId) -> Option<PathBuf> {
        self.snapshot_root.as_ref().map(|r| r.join(format!("chk-{id}")))
    }
}

/// What subtasks tell the master.
pub(crate) enum TaskEvent {
    /// A barrier passed through the subtask and its snapshot is taken.
    Ack(Box<TaskAck>),
    /// A source subtask read all of its input.
    SourceExhausted { task: usize },
    /// The subtask's thread ended.
    Exited { task: usize, result: Result<()> },
    /// The user asked to cancel.
    CancelRequested,
}

/// A running job.
pub struct JobHandle {
    shared: Arc<JobShared>,
    events: Sender<TaskEvent>,
    master: Option<JoinHandle<Result<JobReport>>>,
    metrics: Arc<Vec<MetricsEntry>>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").finish_non_exhaustive()
    }
}

/// A live view of a running job's progress.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Records read by all sources so far.
    pub source_records: u64,
    /// Records received by sinks so far.
    pub sink_records: u64,
}

impl JobHandle {
    /// Asks the job to stop. `join` then returns a report marked cancelled.
    pub fn cancel(&self) {
        self.shared.cancel_requested.store(true, Ordering::Relaxed);
        let _ = self.events.send(TaskEvent::CancelRequested);
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        self.master.as_ref().map(|m| m.is_finished()).unwrap_or(true)
    }

    /// Records read by all source subtasks so far.
    pub fn source_records(&self) -> u64 {
        self.metrics.iter().filter(|m| m.is_source).map(|m| m.metrics.records_out()).sum()
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    /// The first failure of any subtask, with the step and subtask named.
    pub fn join(mut self) -> Result<JobReport> {
        let master = self.master.take().expect("joined once");
        match master.join() {
            Ok(r) => r,
            Err(p) => Err(Error::internal(format!(
                "job master panicked: {}",
                crate::runtime::chain::panic_message(&p)
            ))),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if let Some(m) = self.master.take() {
            self.cancel();
            let _ = m.join();
        }
    }
}

/// Starts the job described by `graph`.
pub(crate) fn start(graph: Arc<Graph>, cfg: JobConfig) -> Result<JobHandle> {
    plan::validate(&graph, &cfg)?;
    let shared = Arc::new(JobShared::new(None));
    let (events_tx, events_rx) = unbounded();
    let plan = plan::build(&graph, &cfg, shared.clone(), events_tx.clone(), &RestoreInput::default())?;
    let metrics = Arc::new(plan.metrics.clone());
    let m = metrics.clone();
    let s = shared.clone();
    let master = std::thread::Builder::new()
        .name(format!("weir-master-{}", cfg.name))
        .spawn(move || run_master(plan, s, events_rx, &cfg, &m))
        .map_err(|e| Error::io("spawning the job master thread", e))?;
    Ok(JobHandle {
        shared,
        events: events_tx,
        master: Some(master),
        metrics,
    })
}

fn run_master(
    plan: PhysicalPlan,
    shared: Arc<JobShared>,
    events: Receiver<TaskEvent>,
    cfg: &JobConfig,
    metrics: &[MetricsEntry],
) -> Result<JobReport> {
    let started = Instant::now();
    let PhysicalPlan {
        tasks,
        controls,
        source_tasks,
        ..
    } = plan;
    let n_tasks = tasks.len();
    let mut threads = Vec::with_capacity(n_tasks);
    for task in tasks {
        let events = task.events.clone();
        let id = task.id;
        let name = task.name.clone();
        let spawned = std::thread::Builder::new().name(format!("weir-{name}")).spawn(move || {
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run())) {
                Ok(r) => r,
                Err(p) => Err(Error::internal(format!(
                    "subtask {name} panicked: {}",
                    crate::runtime::chain::panic_message(&p)
                ))),
            };
            let _ = events.send(TaskEvent::Exited { task: id, result });
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.cancelled.store(true, Ordering::Relaxed);
                for c in &controls {
                    let _ = c.send(Control::Cancel);
                }
                for t in threads {
                    let _ = t.join();
                }
                return Err(Error::io("spawning a subtask thread", e));
            }
        }
    }

    let mut master = Master {
        controls: &controls,
        source_tasks: source_tasks.iter().copied().collect(),
        exhausted: BTreeSet::new(),
        n_tasks,
        next_checkpoint: 1,
        pending: None,
        final_checkpoint: None,
    };
    let mut exited = 0usize;
    let mut failure: Option<Error> = None;
    while exited < n_tasks {
        let event = match events.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match event {
            TaskEvent::Exited { task, result } => {
                exited += 1;
                tracing::debug!(task, ok = result.is_ok(), "subtask exited");
                if let Err(e) = result {
                    if failure.is_none() && !(e.kind() == ErrorKind::Cancelled && shared.is_cancelled()) {
                        tracing::error!(error = %e, "job {} failed", cfg.name);
                        failure = Some(e);
                        cancel_all(&shared, &controls);
                    }
                }
            }
            TaskEvent::CancelRequested => cancel_all(&shared, &controls),
            _ if shared.is_cancelled() => {}
            TaskEvent::SourceExhausted { task } => master.on_exhausted(task),
            TaskEvent::Ack(ack) => master.on_ack(*ack),
        }
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(e) = failure {
        return Err(e.context(format!("job {}", cfg.name)));
    }
    let cancelled = shared.cancel_requested.load(Ordering::Relaxed);
    Ok(JobReport {
        job: cfg.name.clone(),
        duration: started.elapsed(),
        cancelled,
        operators: OperatorReport::collect(metrics),
    })
}

fn cancel_all(shared: &JobShared, controls: &[Sender<Control>]) {
    shared.cancelled.store(true, Ordering::Relaxed);
    for c in controls {
        let _ = c.send(Control::Cancel);
    }
}

/// The checkpoint protocol as the master runs it.
struct Master<'a> {
    controls: &'a [Sender<Control>],
    source_tasks: BTreeSet<usize>,
    exhausted: BTreeSet<usize>,
    n_tasks: usize,
    next_checkpoint: CheckpointId,
    pending: Option<(Barrier, Vec<TaskAck>)>,
    final_checkpoint: Option<CheckpointId>,
}

impl Master<'_> {
    fn on_exhausted(&mut self, task: usize) {
        self.exhausted.insert(task);
        self.maybe_trigger_final();
    }

    fn maybe_trigger_final(&mut self) {
        if self.final_checkpoint.is_none() && self.pending.is_none() && self.exhausted == self.source_tasks {
            let b = self.trigger(BarrierKind::Final);
            self.final_checkpoint = Some(b.id);
        }
    }

    fn trigger(&mut self, kind: BarrierKind) -> Barrier {
        let barrier = Barrier {
            id: self.next_checkpoint,
            kind,
            triggered_at_ms: now_ms(),
        };
        self.next_checkpoint += 1;
        for &t in &self.source_tasks {
            let _ = self.controls[t].send(Control::TriggerCheckpoint(barrier));
        }
        self.pending = Some((barrier, Vec::with_capacity(self.n_tasks)));
        barrier
    }

    fn on_ack(&mut self, ack: TaskAck) {
        let Some((barrier, acks)) = &mut self.pending else { return };
        if ack.barrier.id != barrier.id {
            return;
        }
        acks.push(ack);
        if acks.len() == self.n_tasks {
            let id = barrier.id;
            self.pending = None;
            for c in self.controls {
                let _ = c.send(Control::CheckpointComplete(id));
            }
            self.maybe_trigger_final();
        }
    }
}
