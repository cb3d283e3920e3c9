//! The handle users hold on a running job: cancel it, watch its progress, wait for its report.

use crate::checkpoint::replication::ReplicationStatus;
use crate::checkpoint::savepoint::Savepoint;
use crate::checkpoint::CheckpointStorage;
use crate::message::CheckpointId;
use crate::runtime::events::TaskEvent;
use crate::runtime::report::JobReport;
use crate::runtime::report::MetricsEntry;
use crate::runtime::report::{FailureInfo, RestoreStats};
use crate::runtime::savepoint_request::{not_taken, SavepointQueue, SavepointRequest};
use crate::runtime::status::history::CheckpointHistory;
use crate::runtime::status::{JobState, StatusServer, SubtaskCounters, WorkerStatus};
use crate::{Error, Result};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a running job shows while it runs (for progress displays).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) attempt_metrics: Mutex<Arc<Vec<MetricsEntry>>>,
    /// Source records read by finished attempts.
    pub(crate) earlier_source_records: AtomicU64,
    /// Source records the current attempt read on workers (a cluster's master).
    pub(crate) remote_source_records: AtomicU64,
    /// Records the current attempt's sinks received on workers (a cluster's master).
    pub(crate) remote_sink_records: AtomicU64,
    pub(crate) restarts: AtomicU32,
    pub(crate) last_checkpoint: Mutex<Option<(CheckpointId, Instant)>>,
    pub(crate) cancel_requested: AtomicBool,
    /// Every subtask of the current attempt has opened (restored) and runs.
    pub(crate) running: AtomicBool,
    pub(crate) attempt: AtomicU32,
    /// Every attempt's lifecycle moments, in order (see [`JobHandle::lifecycle`]).
    pub(crate) lifecycle: Mutex<Vec<LifecycleEvent>>,
    /// The checkpoint replica's state, with a replica.
    pub(crate) replication: Mutex<Option<ReplicationStatus>>,
    /// Savepoints (and stops) asked for and not yet taken by the master.
    pub(crate) savepoint_requests: Mutex<SavepointQueue>,
    /// A graceful stop (or a stop with savepoint) was asked for and not refused yet.
    pub(crate) stop_requested: AtomicBool,
    /// The latest checkpoints and their outcome (for the status page).
    pub(crate) checkpoints: Mutex<CheckpointHistory>,
    /// Every recovery so far.
    pub(crate) restores: Mutex<Vec<RestoreStats>>,
    /// Every failure so far.
    pub(crate) failures: Mutex<Vec<FailureInfo>>,
    /// Savepoints written so far.
    pub(crate) savepoints: Mutex<Vec<Savepoint>>,
    /// Every subtask's counters of the current attempt on workers (a cluster's master).
    pub(crate) remote_subtasks: Mutex<Vec<SubtaskCounters>>,
    /// The job's workers (a cluster's master).
    pub(crate) workers: Mutex<Vec<WorkerStatus>>,
    /// How the job ended, once it has.
    pub(crate) ended: Mutex<Option<Ended>>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) state: JobState,
    pub(crate) error: Option<String>,
    pub(crate) at: Instant,
}

impl Live {
    /// The job's progress.
    pub(crate) fn progress(&self) -> Progress {
        let metrics = self.attempt_metrics.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let current: u64 = metrics
            .iter()
            .filter(|m| m.is_source)
            .map(|m| m.metrics.records_out())
            .sum();
        let sink: u64 = metrics
            .iter()
            .filter(|m| m.is_sink)
            .map(|m| m.metrics.records_in())
            .sum();
        Progress {
            source_records: self.earlier_source_records.load(Ordering::Relaxed)
                + current
                + self.remote_source_records.load(Ordering::Relaxed),
            sink_records: sink + self.remote_sink_records.load(Ordering::Relaxed),
            last_checkpoint: self
                .last_checkpoint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|(id, at)| (id, at.elapsed())),
            restarts: self.restarts.load(Ordering::Relaxed),
            attempt: self.attempt.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            replication: self.replication.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Every subtask's counters in the current attempt: in this process, or on workers.
    pub(crate) fn counters(&self) -> Vec<SubtaskCounters> {
        let metrics = self.attempt_metrics.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = SubtaskCounters::of(&metrics);
        out.extend(
            self.remote_subtasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied(),
        );
        out
    }

    /// Shows `p`, the progress of this job's master in another process (a local cluster's
    /// launcher does): its records count on top of `earlier_source_records`.
    pub(crate) fn show(&self, p: &Progress, earlier_source_records: u64, earlier_restarts: u32) {
        self.remote_source_records
            .store(earlier_source_records + p.source_records, Ordering::Relaxed);
        self.remote_sink_records.store(p.sink_records, Ordering::Relaxed);
        self.running.store(p.running, Ordering::Relaxed);
        self.attempt.store(p.attempt, Ordering::Relaxed);
        self.restarts.store(earlier_restarts + p.restarts, Ordering::Relaxed);
        *self.replication.lock().unwrap_or_else(|e| e.into_inner()) = p.replication.clone();
        *self.last_checkpoint.lock().unwrap_or_else(|e| e.into_inner()) = p
            .last_checkpoint
            .map(|(id, age)| (id, Instant::now().checked_sub(age).unwrap_or_else(Instant::now)));
    }

    /// Records that `attempt` reached `phase` now.
    pub(crate) fn record(&self, attempt: u32, phase: LifecyclePhase, at: Instant) {
        self.lifecycle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(LifecycleEvent { attempt, phase, at });
    }
}

/// A moment in the life of one attempt of a job: the phases a recovery goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecyclePhase {
    /// The attempt starts restoring the latest completed checkpoint (or starts afresh).
    RestoreStarted,
    /// Every subtask of the attempt has opened its (restored) state and runs.
    Running,
    /// The master learned of the failure that ends the attempt (a subtask's error or panic,
    /// a failed checkpoint completion).
    FailureDetected,
    /// Every subtask of the failed attempt has stopped and its thread was joined: the attempt
    /// is cancelled and the next one may restore.
    Cancelled,
}

/// One entry of [`JobHandle::lifecycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// The attempt (1 = the first run of this process).
    pub attempt: u32,
    /// What happened.
    pub phase: LifecyclePhase,
    /// When.
    pub at: Instant,
}

/// A live view of a running job.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Records read by all sources so far, over all attempts (replays included).
    pub source_records: u64,
    /// Records received by sinks in the current attempt.
    pub sink_records: u64,
    /// The latest completed checkpoint and its age.
    pub last_checkpoint: Option<(CheckpointId, Duration)>,
    /// Restarts so far.
    pub restarts: u32,
    /// The current attempt (1 = the first run of this process).
    pub attempt: u32,
    /// Whether every subtask of the current attempt runs (state restored): false while the
    /// job starts, recovers or ends.
    pub running: bool,
    /// The checkpoint replica's state and lag, when checkpoints are replicated.
    #[serde(default)]
    pub replication: Option<ReplicationStatus>,
}

/// Stops or cancels a running job from any thread ([`JobHandle::stopper`]).
#[derive(Clone)]
pub struct JobStopper {
    live: Arc<Live>,
    events: Sender<TaskEvent>,
}

impl std::fmt::Debug for JobStopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStopper").finish_non_exhaustive()
    }
}

impl JobStopper {
    pub(crate) fn new(live: Arc<Live>, events: Sender<TaskEvent>) -> Self {
        JobStopper { live, events }
    }

    /// [`JobHandle::stop`].
    ///
    /// # Errors
    /// As [`JobHandle::stop`].
    pub fn stop(&self) -> Result<CheckpointId> {
        self.request(None, true).map(|sp| sp.id)
    }

    /// Whether the job has ended (its master answers no request any more).
    pub fn job_ended(&self) -> bool {
        self.live
            .savepoint_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_closed()
    }

    /// [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.live.cancel_requested.store(true, Ordering::Relaxed);
        let _ = self.events.send(TaskEvent::CancelRequested);
    }

    /// Queues a savepoint (or, without `target`, a stop at a final checkpoint) and waits for
    /// the answer, which always comes: the master answers every request it took, and a job
    /// that ended answers new ones at once.
    pub(crate) fn request(&self, target: Option<Arc<dyn CheckpointStorage>>, stop: bool) -> Result<Savepoint> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if stop {
            self.live.stop_requested.store(true, Ordering::Relaxed);
        }
        self.live
            .savepoint_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SavepointRequest { target, stop, reply });
        let answer = answer
            .recv()
            .unwrap_or_else(|_| Err(not_taken("no savepoint was taken: the job has ended".into())));
        if stop && answer.is_err() {
            // The job keeps running (or has ended already).
            self.live.stop_requested.store(false, Ordering::Relaxed);
        }
        answer
    }
}

/// A running job.
pub struct JobHandle {
    pub(crate) live: Arc<Live>,
    pub(crate) events: Sender<TaskEvent>,
    pub(crate) master: Option<JoinHandle<Result<JobReport>>>,
    /// The status server, when the job has a status address; it stops when the handle is
    /// joined or dropped.
    pub(crate) status: Option<StatusServer>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").finish_non_exhaustive()
    }
}

impl JobHandle {
    /// Asks the job to stop. `join` then returns a report marked cancelled. Output committed
    /// so far stays committed; with checkpoint storage, a new run resumes from the latest
    /// completed checkpoint.
    pub fn cancel(&self) {
        self.stopper().cancel();
    }

    /// Takes a savepoint while the job keeps running, into `target` (any
    /// [`CheckpointStorage`]; its root becomes the savepoint's root and must not hold a
    /// savepoint yet), and returns it once it is complete: its id and location. The savepoint
    /// is a checkpoint of the job, triggered as soon as no other is in flight, then copied,
    /// self-contained, into `target`; retention never deletes it. Start a job from it with
    /// [`CheckpointConfig::from_savepoint`](crate::checkpoint::CheckpointConfig::from_savepoint).
    ///
    /// # Errors
    /// `Config` without checkpoint storage or when `target` holds a savepoint already; the
    /// error of the checkpoint or of the copy; `Cancelled` when the job ended first.
    pub fn savepoint(&self, target: Arc<dyn CheckpointStorage>) -> Result<Savepoint> {
        self.stopper().request(Some(target), false)
    }

    /// Takes a savepoint into `target` and stops the job: sources stop reading at the
    /// savepoint's barrier, sinks commit the output up to it, then every subtask ends and
    /// [`join`](Self::join) returns a report naming the savepoint
    /// ([`JobReport::stopped_with_savepoint`]). Returns once the savepoint is written.
    ///
    /// # Errors
    /// As [`savepoint`](Self::savepoint). When the savepoint fails (its checkpoint times out,
    /// the copy fails), the job restarts from its latest completed checkpoint and keeps
    /// running: ask again.
    pub fn stop_with_savepoint(&self, target: Arc<dyn CheckpointStorage>) -> Result<Savepoint> {
        self.stopper().request(Some(target), true)
    }

    /// Stops the job gracefully: as [`stop_with_savepoint`](Self::stop_with_savepoint), but
    /// the final checkpoint stays in the job's checkpoint storage (nothing is copied, and
    /// `OnCancel::Delete` does not delete it). Sinks commit the output up to it, every subtask
    /// ends, and [`join`](Self::join) returns a report with
    /// [`stopped_at`](JobReport::stopped_at). A later run of the job restores that checkpoint
    /// and goes on from there: nothing read before it is lost or read again.
    ///
    /// # Errors
    /// `Config` without checkpoint storage; the error of the checkpoint (the job restarts from
    /// its latest completed checkpoint and keeps running: ask again, or cancel);
    /// `Cancelled` when the job ended first.
    pub fn stop(&self) -> Result<CheckpointId> {
        self.stopper().stop()
    }

    /// A handle that stops or cancels this job from another thread (a signal handler's, for
    /// example: see [`stop_on_termination`](crate::runtime::stop_on_termination)).
    pub fn stopper(&self) -> JobStopper {
        JobStopper {
            live: self.live.clone(),
            events: self.events.clone(),
        }
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        self.master.as_ref().map(|m| m.is_finished()).unwrap_or(true)
    }

    /// Records read by all source subtasks so far (all attempts).
    pub fn source_records(&self) -> u64 {
        self.progress().source_records
    }

    /// The job's progress.
    pub fn progress(&self) -> Progress {
        self.live.progress()
    }

    /// Where the job's status server listens (`None`: no status address was set, or the job's
    /// master runs in another process).
    pub fn status_addr(&self) -> Option<std::net::SocketAddr> {
        self.status.as_ref().map(|s| s.addr())
    }

    /// Every attempt's lifecycle so far, in order: for each attempt `RestoreStarted`, then
    /// `Running` once all its subtasks run; for a failed attempt `FailureDetected`, then
    /// `Cancelled` once all its subtasks stopped. Recovery benchmarks read the phases of a
    /// recovery from it (detection: failure → `Cancelled`; restore: → the next `Running`).
    /// The log lives in memory: a process that dies loses it with everything else.
    pub fn lifecycle(&self) -> Vec<LifecycleEvent> {
        self.live.lifecycle.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    /// The failure that ended the job (after the restart strategy gave up, or at once for an
    /// error a restart cannot fix), naming the step and subtask; an `Internal` error naming the
    /// subtasks that did not stop when the cancellation timed out with
    /// [`CancellationTimeoutAction::FailJob`](crate::config::cancellation_timeout::CancellationTimeoutAction::FailJob).
    pub fn join(mut self) -> Result<JobReport> {
        let master = self.master.take().expect("joined once");
        match master.join() {
            Ok(r) => r,
            Err(p) => Err(Error::internal(format!(
                "job master panicked: {}",
                crate::error::panic_message(&p)
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
