//! The job master: runs attempts, drives checkpoints (trigger, acknowledgements, upload,
//! completion, timeouts) and reacts to failures with the restart strategy.
//!
//! # After a crash
//! Sinks are told to commit checkpoint `n` only after `n` is complete (its metadata durable).
//! A failure anywhere cancels every subtask of the attempt and joins its threads before the
//! next attempt restores the latest completed checkpoint. Errors a restart cannot fix (`Config`,
//! `Data`, `External { retryable: false }`) end the job at once. Subtasks that do not stop
//! within the cancellation timeout end the process (by default), so that its supervisor
//! restarts it: no new attempt ever runs next to threads of an old one.

use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::savepoint::{check_target, Savepoint};
use crate::checkpoint::tracker::{AckOutcome, Action, CheckpointTracker, TrackerConfig};
use crate::checkpoint::OnCancel;
use crate::config::restart::RestartTracker;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::metrics::{CompletedCheckpoint, JobMetrics};
use crate::runtime::attempt::JobShared;
use crate::runtime::control::Control;
use crate::runtime::events::{FailureReport, TaskEvent, TaskOutcome};
use crate::runtime::handle::{Ended, LifecyclePhase, Live};
use crate::runtime::plan::{self, PhysicalPlan, RestoreInput};
use crate::runtime::remote::{AttemptRequest, Controls, RemoteExecutor};
use crate::runtime::report::{FailureInfo, JobReport, MetricsEntry, OperatorReport, RestoreStats};
use crate::runtime::savepoint_request::{not_taken, SavepointRequest, SavepointRequests};
use crate::runtime::status::{CheckpointState, JobState};
use crate::runtime::task::now_ms;
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the master checks checkpoint timeouts, triggers and the cancellation timeout.
const MASTER_TICK: Duration = Duration::from_millis(20);

/// How an attempt ended.
enum AttemptEnd {
    Finished,
    Cancelled,
    Failed(Failure),
    /// Its subtasks did not stop within the cancellation timeout; their threads are detached.
    Stuck(Error),
}

/// A failure, stamped when the master learned of it.
struct Failure {
    error: Error,
    at: Instant,
    /// Wall-clock time of `at`, ms since the epoch.
    at_ms: u64,
}

impl Failure {
    fn now(error: Error) -> Self {
        Failure {
            error,
            at: Instant::now(),
            at_ms: now_ms(),
        }
    }
}

/// Whether a restart may help: a bad record, a configuration error or an external failure
/// marked permanent fails the same way when replayed, so restarting would only loop.
fn restartable(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::Config | ErrorKind::Data | ErrorKind::Cancelled | ErrorKind::External { retryable: false }
    )
}

/// The job master: runs attempts until the job finishes, is cancelled or gives up.
pub(crate) struct Master {
    graph: Arc<Graph>,
    cfg: JobConfig,
    coordinator: Option<Coordinator>,
    events: Receiver<TaskEvent>,
    events_tx: Sender<TaskEvent>,
    live: Arc<Live>,
    report: JobReport,
    /// First id of commit barriers when there is no checkpoint storage.
    commit_id_base: u64,
    /// Where attempts run when the job's subtasks run on workers (none: in this process).
    remote: Option<Box<dyn RemoteExecutor>>,
    /// Savepoints the user asked for: waiting, or in flight.
    savepoints: SavepointRequests,
    /// The job's exported checkpoint, restart and recovery series.
    metrics: JobMetrics,
    /// The recovery under way: set when an attempt restores after a failure, taken when every
    /// subtask of that attempt runs (the recovery is then reported at once, not when the
    /// attempt ends).
    recovering: Option<Recovering>,
}

/// What a recovery's figures are measured from.
#[derive(Debug, Clone, Copy)]
struct Recovering {
    /// The failure was detected.
    failed: Instant,
    /// The failed attempt was cancelled.
    cancelled: Instant,
    /// The new attempt started restoring.
    restore_started: Instant,
    /// Source records the failed attempt had read.
    reached: u64,
    /// Source records at the restored checkpoint.
    base: u64,
    /// The checkpoint restored.
    checkpoint: Option<CheckpointId>,
}

impl Master {
    pub(crate) fn new(
        graph: Arc<Graph>,
        cfg: JobConfig,
        coordinator: Option<Coordinator>,
        events: Receiver<TaskEvent>,
        events_tx: Sender<TaskEvent>,
        live: Arc<Live>,
    ) -> Self {
        Master {
            graph,
            coordinator,
            events,
            events_tx,
            live,
            report: JobReport::default(),
            commit_id_base: now_ms() * 1_000,
            remote: None,
            savepoints: SavepointRequests::default(),
            metrics: JobMetrics::new(&cfg.name),
            cfg,
            recovering: None,
        }
    }

    /// Runs the job's attempts on `remote` workers instead of in this process.
    pub(crate) fn with_remote(mut self, remote: Box<dyn RemoteExecutor>) -> Self {
        self.remote = Some(remote);
        self
    }

    pub(crate) fn run(&mut self) -> Result<JobReport> {
        let result = self.run_attempts();
        if let Some(remote) = self.remote.as_mut() {
            remote.finish();
        }
        // Every savepoint request is answered, also those that came too late.
        let why = match &result {
            Ok(r) if r.cancelled => "the job was cancelled",
            Ok(_) => "the job has ended",
            Err(_) => "the job failed",
        };
        let late = self
            .live
            .savepoint_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close(why);
        self.savepoints.extend(late);
        self.savepoints.job_ended(why);
        let (state, error) = match &result {
            Ok(r) if r.cancelled => (JobState::Cancelled, None),
            Ok(_) => (JobState::Finished, None),
            Err(e) => (JobState::Failed, Some(e.to_string())),
        };
        *self.live.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ended {
            state,
            error,
            at: Instant::now(),
        });
        result
    }

    fn run_attempts(&mut self) -> Result<JobReport> {
        let started = Instant::now();
        self.report.job = self.cfg.name.clone();
        let parallelism = Arc::new(plan::parallelism_by_name(&self.graph, &self.cfg)?);
        let mut tracker = RestartTracker::new(self.cfg.restart.clone());
        // When the last failure was detected, when its attempt had stopped, and how far (in
        // records) it had read.
        let mut failed_at: Option<(Instant, Instant, u64)> = None;
        let mut last_reached = 0u64;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let restore_started = Instant::now();
            self.live
                .record(attempt, LifecyclePhase::RestoreStarted, restore_started);
            let from_savepoint = self.coordinator.as_ref().and_then(|c| c.starting_savepoint());
            let restored = match self.coordinator.as_mut() {
                // A panic while restoring fails this attempt, not the master.
                Some(c) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.restore(&parallelism)))
                    .unwrap_or_else(|p| {
                        Err(Error::internal(format!(
                            "restoring panicked: {}",
                            crate::runtime::chain::panic_message(&p)
                        )))
                    }),
                None => Ok(None),
            };
            // The checkpoint this attempt restored, if any.
            let mut attempt_restored = None;
            let outcome = match restored {
                Ok(restored) => {
                    let base = restored.as_ref().map(|r| r.metadata.stats.source_records).unwrap_or(0);
                    let restored_id = restored.as_ref().map(|r| r.metadata.id);
                    attempt_restored = restored_id;
                    if let Some(r) = &restored {
                        tracing::info!(
                            event = "restore",
                            job = %self.cfg.name,
                            attempt,
                            checkpoint = r.metadata.id.get(),
                            source_records = r.metadata.stats.source_records,
                            "restoring checkpoint"
                        );
                        if attempt == 1 {
                            self.report.restored_from = Some(r.metadata.id);
                            self.report.restored_from_savepoint = from_savepoint
                                .filter(|(_, id)| *id == r.metadata.id)
                                .map(|(location, _)| location);
                        }
                    }
                    let (input, dir) = match restored {
                        Some(r) => (r.input, Some(r.dir)),
                        None => (RestoreInput::default(), None),
                    };
                    self.recovering = failed_at.take().map(|(failed, cancelled, reached)| Recovering {
                        failed,
                        cancelled,
                        restore_started,
                        reached,
                        base,
                        checkpoint: restored_id,
                    });
                    let out = self.run_attempt(attempt, &input, restored_id, dir, base, &parallelism);
                    // An attempt that never ran on its restored state recovered nothing.
                    self.recovering = None;
                    last_reached = out.source_records;
                    out.end
                }
                Err(e) => AttemptEnd::Failed(Failure::now(e)),
            };
            match outcome {
                AttemptEnd::Finished => break,
                AttemptEnd::Cancelled => {
                    self.report.cancelled = true;
                    break;
                }
                AttemptEnd::Stuck(e) => return Err(e.context(format!("job {}", self.cfg.name))),
                AttemptEnd::Failed(Failure { error: e, at, at_ms }) => {
                    // The attempt's threads are joined (or were never started): it is cancelled.
                    let cancelled = Instant::now();
                    if let Some(sp) = self.report.stopped_with_savepoint.take() {
                        tracing::warn!(
                            savepoint = sp.id.get(),
                            "the job failed after its stop savepoint was written; it restarts from its latest \
                             checkpoint and keeps running (the savepoint stays valid)"
                        );
                    }
                    if let Some(id) = self.report.stopped_at.take() {
                        tracing::warn!(
                            checkpoint = id.get(),
                            "the job failed after its final checkpoint completed; it restarts from its latest \
                             checkpoint and keeps running (stop it again)"
                        );
                    }
                    // Workers fetch the restored state themselves: one that found it corrupt
                    // fails the attempt, and the checkpoint is given up as a corrupt one is here.
                    if let (Some(crate::Reason::RestoredStateCorrupt), Some(id), Some(c)) =
                        (e.reason(), attempt_restored, self.coordinator.as_mut())
                    {
                        c.reject_restored(id, &e)
                            .map_err(|stop| stop.context(format!("job {}", self.cfg.name)))?;
                    }
                    self.live.record(attempt, LifecyclePhase::FailureDetected, at);
                    self.live.record(attempt, LifecyclePhase::Cancelled, cancelled);
                    let failure = FailureInfo {
                        attempt,
                        at_ms,
                        error: e.to_string(),
                    };
                    self.live
                        .failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(failure.clone());
                    self.report.failures.push(failure);
                    let retryable = restartable(e.kind());
                    if self.live.cancel_requested.load(Ordering::Relaxed) {
                        self.report.cancelled = true;
                        break;
                    }
                    if self.coordinator.is_none() || !retryable {
                        if self.coordinator.is_none() && retryable {
                            tracing::error!(
                                event = "failure",
                                job = %self.cfg.name,
                                attempt,
                                error = %e,
                                restart = false,
                                "job failed and has no checkpoint storage to recover from"
                            );
                        } else if !retryable {
                            tracing::error!(
                                event = "failure",
                                job = %self.cfg.name,
                                attempt,
                                error = %e,
                                kind = ?e.kind(),
                                restart = false,
                                "job failed with an error a restart cannot fix; not restarting"
                            );
                        }
                        return Err(e.context(format!("job {}", self.cfg.name)));
                    }
                    let Some(delay) = tracker.on_failure() else {
                        return Err(e.context(format!(
                            "job {} failed and the restart strategy gave up after {} restarts ({})",
                            self.cfg.name,
                            tracker.restarts(),
                            tracker.gave_up_because()
                        )));
                    };
                    tracing::warn!(
                        event = "failure",
                        job = %self.cfg.name,
                        attempt,
                        error = %e,
                        restart = true,
                        delay_ms = delay.as_millis() as u64,
                        "job failed; restarting from the latest completed checkpoint"
                    );
                    self.live.restarts.store(tracker.restarts(), Ordering::Relaxed);
                    self.metrics.restarted();
                    failed_at = Some((at, cancelled, last_reached));
                    if !self.sleep_unless_cancelled(delay) {
                        self.report.cancelled = true;
                        break;
                    }
                }
            }
        }
        let stopped_by_user = self.report.cancelled || self.report.stopped_with_savepoint.is_some();
        if let (true, Some(c)) = (stopped_by_user, self.coordinator.as_mut()) {
            if c.cfg.on_cancel == OnCancel::Delete {
                match c.delete_all_checkpoints() {
                    Ok(()) => self.report.checkpoints_deleted_on_cancel = true,
                    Err(e) => {
                        tracing::error!(error = %e, "deleting the checkpoints of the cancelled job failed; some are left")
                    }
                }
            }
        }
        self.report.duration = started.elapsed();
        self.report.restarts = tracker.restarts();
        if let Some(c) = &self.coordinator {
            self.report.checkpoints = c.completed.clone();
            self.report.restore_warnings = c.restore_warnings();
            self.report.replication = c.replication_status();
        }
        Ok(std::mem::take(&mut self.report))
    }

    /// Sleeps `d`; false if the user cancelled meanwhile.
    fn sleep_unless_cancelled(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.live.cancel_requested.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        !self.live.cancel_requested.load(Ordering::Relaxed)
    }

    /// Runs one attempt; returns how it ended, when all its subtasks were running, and how
    /// far its sources had read (records since the job's first start, replays excluded).
    /// Reports the recovery `r` that ended when attempt `attempt` ran on restored state at
    /// `running`: one log event, the status, the metrics and the job's report.
    fn recovered(&mut self, attempt: u32, r: Recovering, running: Instant) {
        let stats = RestoreStats {
            attempt,
            checkpoint: r.checkpoint,
            detect_to_running_ms: running.duration_since(r.failed).as_secs_f64() * 1e3,
            cancel_ms: r.cancelled.duration_since(r.failed).as_secs_f64() * 1e3,
            restore_ms: running.duration_since(r.restore_started).as_secs_f64() * 1e3,
            records_replayed: r.reached.saturating_sub(r.base),
        };
        tracing::info!(
            event = "recovered",
            job = %self.cfg.name,
            attempt,
            checkpoint = stats.checkpoint.map(CheckpointId::get),
            rto_ms = stats.detect_to_running_ms,
            cancel_ms = stats.cancel_ms,
            restore_ms = stats.restore_ms,
            records_replayed = stats.records_replayed,
            rpo_events_lost = 0,
            "recovered"
        );
        self.live
            .restores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats.clone());
        self.metrics
            .recovered(stats.detect_to_running_ms / 1e3, stats.records_replayed);
        self.report.restores.push(stats);
    }

    fn run_attempt(
        &mut self,
        attempt: u32,
        input: &RestoreInput,
        restored: Option<CheckpointId>,
        restore_dir: Option<PathBuf>,
        base_source_records: u64,
        parallelism: &Arc<HashMap<String, usize>>,
    ) -> AttemptOutcome {
        if let Some(c) = &self.coordinator {
            c.clear_staging();
        }
        self.live.attempt.store(attempt, Ordering::Relaxed);
        let snapshot_root = self.coordinator.as_ref().map(|c| c.staging_root());
        let shared = Arc::new(JobShared::new(snapshot_root, self.cfg.fail_points(), attempt));
        let started = match self.remote.as_mut() {
            None => start_local(&self.graph, &self.cfg, &shared, &self.events_tx, input),
            Some(remote) => {
                // Workers fetch a savepoint's state from the savepoint's storage.
                let from_savepoint = self
                    .coordinator
                    .as_ref()
                    .and_then(|c| c.starting_savepoint())
                    .filter(|(_, id)| Some(*id) == restored)
                    .map(|(location, _)| location);
                let request = AttemptRequest {
                    attempt,
                    restore: restored,
                    from_savepoint,
                    base_source_records,
                };
                remote.deploy(&request, self.events_tx.clone()).map(|r| Started {
                    tasks: r.tasks,
                    controls: Controls::Remote {
                        tasks: Vec::new(),
                        send: r.send,
                    },
                    source_tasks: r.source_tasks,
                    metrics: Vec::new(),
                    threads: Vec::new(),
                    spawn_error: None,
                })
            }
        };
        let Started {
            tasks: task_names,
            mut controls,
            source_tasks,
            metrics,
            threads,
            spawn_error,
        } = match started {
            Ok(s) => s,
            Err(e) => {
                return AttemptOutcome {
                    end: AttemptEnd::Failed(Failure::now(e)),
                    source_records: base_source_records,
                }
            }
        };
        if let Controls::Remote { tasks, .. } = &mut controls {
            *tasks = task_names.iter().map(|(t, _)| *t).collect();
        }
        let metrics = Arc::new(metrics);
        *self.live.attempt_metrics.lock().unwrap_or_else(|e| e.into_inner()) = metrics.clone();
        let n_tasks = task_names.len();
        let spawned = if self.remote.is_some() { n_tasks } else { threads.len() };
        let mut end: Option<AttemptEnd> = spawn_error.map(|e| AttemptEnd::Failed(Failure::now(e)));
        let ck = self.cfg.checkpoint.as_ref();
        let protocol = TrackerConfig {
            interval: self.interval(),
            min_pause: ck.map(|c| c.min_pause).unwrap_or_default(),
            timeout: ck.map(|c| c.timeout),
            tolerable_failed_checkpoints: ck.map_or(u32::MAX, |c| c.tolerable_failed_checkpoints),
            persisted: self.coordinator.is_some(),
            restored: restored.is_some(),
        };
        let mut a = Attempt {
            number: attempt,
            controls: &controls,
            spawned,
            source_tasks: source_tasks.clone(),
            checkpoints: CheckpointTracker::new(
                protocol,
                n_tasks,
                source_tasks.iter().copied().collect(),
                Instant::now(),
            ),
            running_at: None,
            base_source_records,
            parallelism: parallelism.clone(),
            restore_dir,
            commit_held: None,
        };
        if end.is_some() {
            cancel_all(&shared, &controls);
        }
        let mut exited = 0usize;
        let mut exited_tasks: BTreeSet<usize> = BTreeSet::new();
        let mut secondary: Option<Failure> = None;
        let mut cancelling_since: Option<Instant> = None;
        let mut detached = false;
        let mut next_tick = Instant::now() + MASTER_TICK;
        while exited < a.spawned || a.checkpoints.uploading() {
            if end.is_some() {
                a.checkpoints.on_attempt_ending();
            }
            if shared.is_cancelled() {
                let since = *cancelling_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.cfg.cancellation_timeout {
                    let msg = self.stuck_message(&task_names, &exited_tasks, a.checkpoints.uploading());
                    self.cfg.on_cancellation_timeout.act(&msg);
                    end = Some(AttemptEnd::Stuck(Error::internal(msg)));
                    detached = true;
                    break;
                }
            }
            // Timeouts and triggers are due on time even while events keep arriving.
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + MASTER_TICK;
                if let Some(id) = a.commit_held {
                    if self.coordinator.as_ref().is_none_or(|c| c.may_commit(id)) {
                        a.commit_held = None;
                        a.controls.broadcast(Control::CheckpointComplete { id });
                    }
                }
                if let Some(c) = &self.coordinator {
                    if let Some(status) = c.replication_status() {
                        *self.live.replication.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    }
                }
                if let Some(remote) = &self.remote {
                    let (source, sink) = remote.records();
                    self.live.remote_source_records.store(source, Ordering::Relaxed);
                    self.live.remote_sink_records.store(sink, Ordering::Relaxed);
                    *self.live.remote_subtasks.lock().unwrap_or_else(|e| e.into_inner()) = remote.subtasks();
                    *self.live.workers.lock().unwrap_or_else(|e| e.into_inner()) = remote.workers();
                }
                if end.is_none() {
                    // The protocol learns of a trigger only once it is carried out: the
                    // savepoint's actions first, then the tick's, which see it in flight.
                    let actions = self.savepoint_actions(&mut a);
                    let ticked = self.execute(&mut a, actions).and_then(|()| {
                        let actions = a.checkpoints.on_tick(Instant::now());
                        self.execute(&mut a, actions)
                    });
                    if let Err(e) = ticked {
                        end = Some(AttemptEnd::Failed(Failure::now(e)));
                        cancel_all(&shared, &controls);
                    }
                }
            }
            let event = match self
                .events
                .recv_timeout(next_tick.saturating_duration_since(Instant::now()))
            {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if end.is_some() {
                a.checkpoints.on_attempt_ending();
            }
            let result = match event {
                TaskEvent::Exited { task, outcome } => {
                    exited += 1;
                    exited_tasks.insert(task);
                    tracing::debug!(task, ok = matches!(outcome, TaskOutcome::Finished), "subtask exited");
                    match outcome {
                        // A subtask stopped because a neighbour did: keep looking for the cause.
                        TaskOutcome::Failed(r) if r.kind() == ErrorKind::Cancelled => {
                            if !shared.is_cancelled() && secondary.is_none() {
                                secondary = Some(Failure::now(r.into_error()));
                                cancel_all(&shared, &controls);
                            }
                            Ok(())
                        }
                        TaskOutcome::Failed(r) => Err(r.into_error()),
                        TaskOutcome::Finished => Ok(()),
                    }
                }
                TaskEvent::CancelRequested => {
                    if end.is_none() {
                        end = Some(AttemptEnd::Cancelled);
                    }
                    cancel_all(&shared, &controls);
                    Ok(())
                }
                // Once the attempt is over, its upload's end only frees the tracker.
                TaskEvent::Uploaded { attempt: n, id, result } if n == attempt => {
                    let result = (*result).map_err(FailureReport::into_error);
                    let actions = a.checkpoints.on_upload_finished(id, result, Instant::now());
                    self.execute(&mut a, actions)
                }
                TaskEvent::Uploaded { .. } => Ok(()),
                TaskEvent::AttemptFailed { report } => Err(report.into_error()),
                _ if end.is_some() => Ok(()),
                TaskEvent::Running { task } => {
                    a.checkpoints.on_running(task);
                    if a.running_at.is_none() && a.checkpoints.all_running() {
                        let now = Instant::now();
                        a.running_at = Some(now);
                        self.live.record(attempt, LifecyclePhase::Running, now);
                        self.live.running.store(true, Ordering::Relaxed);
                        self.metrics.set_running(true);
                        if let Some(r) = self.recovering.take() {
                            self.recovered(attempt, r, now);
                        }
                        if let Some(d) = a.restore_dir.take() {
                            // Every store copied or linked what it needs while opening.
                            let _ = std::fs::remove_dir_all(d);
                        }
                    }
                    Ok(())
                }
                TaskEvent::SourceExhausted { task } => {
                    let actions = a.checkpoints.on_source_exhausted(task, Instant::now());
                    self.execute(&mut a, actions)
                }
                TaskEvent::Ack { ack } => {
                    let (task, id) = (ack.task, ack.barrier.id);
                    let (outcome, actions) = a.checkpoints.on_ack(*ack);
                    match outcome {
                        AckOutcome::Recorded { .. } | AckOutcome::LateForAborted => {}
                        AckOutcome::Duplicate | AckOutcome::UnknownSubtask | AckOutcome::NotInFlight => {
                            tracing::debug!(task, checkpoint = id.get(), ?outcome, "acknowledgement ignored");
                        }
                    }
                    self.execute(&mut a, actions)
                }
            };
            if let Err(e) = result {
                if end.is_none() {
                    tracing::debug!(error = %e, attempt, "job attempt failed");
                    end = Some(AttemptEnd::Failed(Failure::now(e)));
                }
                cancel_all(&shared, &controls);
            }
        }
        self.live.running.store(false, Ordering::Relaxed);
        self.metrics.set_running(false);
        self.savepoints
            .attempt_ended("the attempt ended before it completed (a failure, or the job was cancelled)");
        self.live
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempt_ended(now_ms());
        if let Some(remote) = self.remote.as_mut() {
            remote.end_attempt();
        }
        if !detached {
            for t in threads {
                let _ = t.join();
            }
        }
        let remote_reads = match &self.remote {
            Some(remote) => remote
                .records()
                .0
                .max(self.live.remote_source_records.load(Ordering::Relaxed)),
            None => 0,
        };
        let attempt_reads: u64 = remote_reads
            + metrics
                .iter()
                .filter(|m| m.is_source)
                .map(|m| m.metrics.records_out())
                .sum::<u64>();
        // Move this attempt's reads from the live view to the total, in that order, so that
        // progress never counts them twice.
        *self.live.attempt_metrics.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(Vec::new());
        self.live.remote_source_records.store(0, Ordering::Relaxed);
        self.live
            .remote_subtasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.live.remote_sink_records.store(0, Ordering::Relaxed);
        self.live
            .earlier_source_records
            .fetch_add(attempt_reads, Ordering::Relaxed);
        self.report.merge_operators(OperatorReport::collect(&metrics));
        let end = match (end, secondary) {
            (Some(e), _) => e,
            (None, Some(f)) => AttemptEnd::Failed(f),
            (None, None) => AttemptEnd::Finished,
        };
        AttemptOutcome {
            end,
            source_records: base_source_records + attempt_reads,
        }
    }

    fn interval(&self) -> Duration {
        match &self.cfg.checkpoint {
            Some(c) => c.interval,
            None => self.cfg.commit_interval,
        }
    }

    /// Carries out what the checkpoint protocol decided, in order.
    fn execute(&mut self, a: &mut Attempt<'_>, actions: Vec<Action>) -> Result<()> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Trigger { kind } => self.trigger(a, kind)?,
                Action::StartUpload { barrier, acks } => {
                    let c = self
                        .coordinator
                        .as_mut()
                        .expect("uploads only happen with checkpoint storage");
                    let tx = self.events_tx.clone();
                    let (attempt, id) = (a.number, barrier.id);
                    c.start_upload(
                        barrier,
                        acks,
                        a.parallelism.clone(),
                        a.base_source_records,
                        move |result| {
                            let _ = tx.send(TaskEvent::Uploaded {
                                attempt,
                                id,
                                result: Box::new(result.map_err(FailureReport::new)),
                            });
                        },
                    );
                }
                Action::Publish { metadata, triggered } => {
                    let id = metadata.id;
                    let c = self
                        .coordinator
                        .as_mut()
                        .expect("publishing only happens with checkpoint storage");
                    let published =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.complete(*metadata, triggered)))
                            .unwrap_or_else(|p| {
                                Err(Error::internal(format!(
                                    "completing checkpoint {id} panicked: {}",
                                    crate::runtime::chain::panic_message(&p)
                                )))
                            })
                            .map(|stats| {
                                self.live
                                    .checkpoints
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .completed(id, &stats);
                                self.metrics.checkpoint_completed(CompletedCheckpoint {
                                    id: stats.id.get(),
                                    total: stats.total_ms / 1e3,
                                    alignment: stats.alignment_ms / 1e3,
                                    sync: stats.sync_ms / 1e3,
                                    size_bytes: stats.state_bytes,
                                    uploaded_bytes: stats.uploaded_bytes,
                                })
                            });
                    if let Err(e) = &published {
                        self.metrics.checkpoint_failed();
                        self.live.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).ended(
                            id,
                            CheckpointState::Failed,
                            e.to_string(),
                            now_ms(),
                        );
                    }
                    if published.is_ok() {
                        *self.live.last_checkpoint.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((id, Instant::now()));
                    }
                    let published = match (published, self.savepoints.take(id)) {
                        (Ok(()), Some(request)) => self.finish_savepoint(id, request),
                        (Err(e), Some(request)) => {
                            request.answer(Err(not_taken(format!("savepoint {id} was not completed: {e}"))));
                            Err(e)
                        }
                        (published, None) => published,
                    };
                    queue.extend(a.checkpoints.on_published(id, published, Instant::now()));
                }
                Action::NotifyComplete { id } => {
                    // With a replica that must hold what sinks commit, the notification waits
                    // for the copy (the tick releases it).
                    if self.coordinator.as_ref().is_none_or(|c| c.may_commit(id)) {
                        a.commit_held = None;
                        a.controls.broadcast(Control::CheckpointComplete { id });
                    } else {
                        a.commit_held = Some(id);
                    }
                }
                Action::ApplyRetention { id } => {
                    if let Some(c) = self.coordinator.as_mut() {
                        c.apply_retention(id);
                    }
                }
                Action::Abort {
                    id,
                    reason,
                    failed_in_a_row,
                    tolerable,
                } => {
                    self.report.checkpoints_aborted += 1;
                    self.live.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).ended(
                        id,
                        CheckpointState::Aborted,
                        reason.describe(),
                        now_ms(),
                    );
                    self.metrics.checkpoint_aborted();
                    if let Some(request) = self.savepoints.take(id) {
                        request.answer(Err(not_taken(format!(
                            "savepoint {id} was not completed: its checkpoint {}",
                            reason.describe()
                        ))));
                    }
                    tracing::warn!(
                        checkpoint = id.get(),
                        failed_in_a_row,
                        tolerable,
                        "checkpoint {}; it is aborted",
                        reason.describe()
                    );
                }
                Action::DiscardStaged { id } => {
                    if let Some(c) = &self.coordinator {
                        c.discard_staged(id);
                    }
                }
                Action::FailAttempt { error } => return Err(error),
            }
        }
        Ok(())
    }

    /// Takes an id for a checkpoint of `kind` and sends its barrier to every source subtask.
    fn trigger(&mut self, a: &mut Attempt<'_>, kind: BarrierKind) -> Result<()> {
        let id = match self.coordinator.as_mut() {
            Some(c) => c.take_id()?,
            None => {
                // Without storage, ids only need to be unique, also across runs (sinks name
                // their output by them): a time base keeps them increasing.
                self.report.commit_barriers += 1;
                CheckpointId::new(self.commit_id_base + self.report.commit_barriers)
            }
        };
        let barrier = Barrier {
            id,
            kind,
            triggered_at_ms: now_ms(),
        };
        tracing::debug!(checkpoint = id.get(), ?kind, "triggering checkpoint");
        if kind.is_savepoint() {
            self.savepoints.triggered(id);
        }
        if self.coordinator.is_some() {
            self.live
                .checkpoints
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .triggered(id, kind, barrier.triggered_at_ms);
        }
        for &t in &a.source_tasks {
            a.controls.send(t, Control::TriggerCheckpoint { barrier });
        }
        a.checkpoints.on_triggered(barrier, Instant::now());
        Ok(())
    }

    /// Takes the savepoints the user asked for; asks the protocol for the next one when none is
    /// in flight.
    fn savepoint_actions(&mut self, a: &mut Attempt<'_>) -> Vec<Action> {
        let asked = self
            .live
            .savepoint_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if self.coordinator.is_none() {
            for r in asked {
                r.answer(Err(Error::config(
                    "a savepoint or a stop at a final checkpoint needs checkpoint storage: configure \
                     checkpoint_storage() or checkpointing()",
                )));
            }
            return Vec::new();
        }
        // A location that cannot take the savepoint is refused before anything is triggered:
        // a stop with savepoint must not stop the job for nothing.
        for r in asked {
            match r.target.as_deref().map_or(Ok(()), check_target) {
                Ok(()) => self.savepoints.extend([r]),
                Err(e) => r.answer(Err(e)),
            }
        }
        match self.savepoints.next_to_trigger() {
            Some(stop) if !a.checkpoints.savepoint_pending() => a.checkpoints.request_savepoint(stop, Instant::now()),
            _ => Vec::new(),
        }
    }

    /// Checkpoint `id`, a savepoint's, is complete: copies it into the savepoint's storage and
    /// answers `request`. Before the sinks are told to commit: a stop with savepoint whose copy
    /// fails is an error, so that the job restarts from `id` and keeps running.
    fn finish_savepoint(&mut self, id: CheckpointId, request: SavepointRequest) -> Result<()> {
        let c = self
            .coordinator
            .as_mut()
            .expect("savepoints only happen with checkpoint storage");
        let stop = request.stop;
        let Some(target) = request.target.clone() else {
            // A graceful stop: its final checkpoint stays where it is.
            tracing::info!(checkpoint = id.get(), "the job stops at this checkpoint");
            self.report.stopped_at = Some(id);
            request.answer(Ok(Savepoint {
                id,
                location: c.cfg.storage.describe(),
                files: 0,
                bytes: 0,
                stopped_job: true,
            }));
            return Ok(());
        };
        match c.write_savepoint(id, target.as_ref()) {
            Ok(mut sp) => {
                sp.stopped_job = stop;
                self.live
                    .savepoints
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sp.clone());
                self.report.savepoints.push(sp.clone());
                if stop {
                    self.report.stopped_with_savepoint = Some(sp.clone());
                }
                request.answer(Ok(sp));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, savepoint = id.get(), "the savepoint could not be written");
                let message = e.to_string();
                request.answer(Err(e));
                if stop {
                    Err(Error::checkpoint(format!(
                        "stop with savepoint {id}: the savepoint could not be written ({message}); the job restarts \
                         from checkpoint {id} and keeps running"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Says which subtasks (or upload) of an attempt did not stop in time.
    fn stuck_message(&self, names: &[(usize, String)], exited: &BTreeSet<usize>, uploading: bool) -> String {
        let stuck: Vec<&str> = names
            .iter()
            .filter(|(id, _)| !exited.contains(id))
            .map(|(_, n)| n.as_str())
            .collect();
        let mut what = Vec::new();
        if !stuck.is_empty() {
            what.push(format!("subtasks still running: {}", stuck.join(", ")));
        }
        if uploading {
            what.push("a checkpoint upload has not ended".to_string());
        }
        format!(
            "cancelling an attempt of job {} did not finish within the cancellation timeout of {:?} ({}); \
             a blocking user function, a sink or source call that never returns, or a timer that keeps \
             re-arming itself does not reach a cancellation check",
            self.cfg.name,
            self.cfg.cancellation_timeout,
            what.join("; ")
        )
    }
}

/// How an attempt ended.
struct AttemptOutcome {
    end: AttemptEnd,
    /// How far its sources had read: records since the job's first start, replays excluded.
    source_records: u64,
}

/// The master's view of one attempt.
struct Attempt<'a> {
    number: u32,
    controls: &'a Controls,
    spawned: usize,
    source_tasks: Vec<usize>,
    /// The checkpoint protocol: decides what the master does next.
    checkpoints: CheckpointTracker,
    running_at: Option<Instant>,
    base_source_records: u64,
    parallelism: Arc<HashMap<String, usize>>,
    /// Restored state laid out for the stores to open; removed once all are open.
    restore_dir: Option<PathBuf>,
    /// A completed checkpoint whose commit waits for the replica to hold it.
    commit_held: Option<CheckpointId>,
}

fn cancel_all(shared: &JobShared, controls: &Controls) {
    shared.cancel();
    controls.broadcast(Control::Cancel);
}

/// An attempt's subtasks, started (in this process) or deployed (on workers).
struct Started {
    tasks: Vec<(usize, String)>,
    controls: Controls,
    source_tasks: Vec<usize>,
    metrics: Vec<MetricsEntry>,
    threads: Vec<JoinHandle<()>>,
    /// A subtask thread that could not be spawned: the attempt fails at once.
    spawn_error: Option<Error>,
}

/// Builds the attempt's subtasks in this process and starts their threads.
fn start_local(
    graph: &Graph,
    cfg: &JobConfig,
    shared: &Arc<JobShared>,
    events: &Sender<TaskEvent>,
    input: &RestoreInput,
) -> Result<Started> {
    let PhysicalPlan {
        tasks,
        controls,
        source_tasks,
        metrics,
        ..
    } = plan::build(graph, cfg, shared.clone(), events.clone(), input, None)?;
    let names: Vec<(usize, String)> = tasks.iter().map(|t| (t.id, t.name.clone())).collect();
    let mut threads = Vec::with_capacity(tasks.len());
    let mut spawn_error = None;
    for task in tasks {
        match task.spawn() {
            Ok(t) => threads.push(t),
            Err(e) => {
                spawn_error = Some(Error::io("spawning a subtask thread", e));
                break;
            }
        }
    }
    let controls = Controls::Local(controls);
    if spawn_error.is_some() {
        cancel_all(shared, &controls);
    }
    Ok(Started {
        tasks: names,
        controls,
        source_tasks,
        metrics,
        threads,
        spawn_error,
    })
}
