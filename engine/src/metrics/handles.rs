//! The handles a job's master and each subtask thread update: registered once, then plain
//! atomic updates.

use crate::metrics::age::{self, Timestamp};
use crate::metrics::registry::{self, FloatGauge, JobLabels, SecondsCounter, SubtaskLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::time::Instant;

/// The job-wide series a master updates: checkpoints, restarts, recoveries.
#[derive(Debug, Default)]
pub(crate) struct JobMetrics {
    completed: Counter,
    failed: Counter,
    aborted: Counter,
    duration: FloatGauge,
    alignment: FloatGauge,
    sync: FloatGauge,
    size: Gauge,
    uploaded: Counter,
    last_id: Gauge,
    last_time: FloatGauge,
    last_age: Option<Timestamp>,
    restarts: Counter,
    recovery: FloatGauge,
    replayed: Gauge,
    running: Gauge,
}

/// What a completed checkpoint exports (its durations in seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompletedCheckpoint {
    pub(crate) id: u64,
    pub(crate) total: f64,
    pub(crate) alignment: f64,
    pub(crate) sync: f64,
    pub(crate) size_bytes: u64,
    pub(crate) uploaded_bytes: u64,
}

impl JobMetrics {
    /// The series of job `job`, registered when this process exports metrics.
    pub(crate) fn new(job: &str) -> Self {
        let m = registry::global();
        if !m.exporting() {
            return JobMetrics::default();
        }
        let l = JobLabels { job: job.to_string() };
        let f = &m.families;
        JobMetrics {
            completed: f.checkpoints_completed.get_or_create_owned(&l),
            failed: f.checkpoints_failed.get_or_create_owned(&l),
            aborted: f.checkpoints_aborted.get_or_create_owned(&l),
            duration: f.checkpoint_duration.get_or_create_owned(&l),
            alignment: f.checkpoint_alignment.get_or_create_owned(&l),
            sync: f.checkpoint_sync.get_or_create_owned(&l),
            size: f.checkpoint_size.get_or_create_owned(&l),
            uploaded: f.checkpoint_uploaded.get_or_create_owned(&l),
            last_id: f.last_checkpoint_id.get_or_create_owned(&l),
            last_time: f.last_checkpoint_time.get_or_create_owned(&l),
            last_age: Some(age::last_checkpoint(&l)),
            restarts: f.restarts.get_or_create_owned(&l),
            recovery: f.recovery_seconds.get_or_create_owned(&l),
            replayed: f.recovery_replayed.get_or_create_owned(&l),
            running: f.running.get_or_create_owned(&l),
        }
    }

    pub(crate) fn checkpoint_completed(&self, c: CompletedCheckpoint) {
        let now = crate::wall_clock::now_ms();
        self.completed.inc();
        self.duration.set(c.total);
        self.alignment.set(c.alignment);
        self.sync.set(c.sync);
        self.size.set(i64::try_from(c.size_bytes).unwrap_or(i64::MAX));
        self.uploaded.inc_by(c.uploaded_bytes);
        self.last_id.set(i64::try_from(c.id).unwrap_or(i64::MAX));
        self.last_time.set(now as f64 / 1e3);
        if let Some(t) = &self.last_age {
            t.set_ms(now as i64);
        }
    }

    pub(crate) fn checkpoint_failed(&self) {
        self.failed.inc();
    }

    pub(crate) fn checkpoint_aborted(&self) {
        self.aborted.inc();
    }

    pub(crate) fn restarted(&self) {
        self.restarts.inc();
    }

    /// A recovery ended: `rto_seconds` from the failure's detection to every subtask running.
    pub(crate) fn recovered(&self, rto_seconds: f64, records_replayed: u64) {
        self.recovery.set(rto_seconds);
        self.replayed.set(i64::try_from(records_replayed).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.set(i64::from(running));
    }
}

/// Where a subtask thread's time goes: busy, idle (waiting for input) or backpressured
/// (blocked sending into a full channel, counted by the outputs), and its watermark.
#[derive(Debug)]
pub(crate) struct TaskClock {
    busy: SecondsCounter,
    idle: SecondsCounter,
    backpressured: SecondsCounter,
    watermark: Timestamp,
    /// When the current busy or idle period began.
    mark: Instant,
    /// Backpressured seconds at `mark`.
    backpressured_at_mark: f64,
}

impl TaskClock {
    /// The clock of subtask `subtask` of the chain whose first step is `step`.
    pub(crate) fn new(job: &str, step: &str, subtask: usize) -> Self {
        let m = registry::global();
        let (busy, idle, backpressured, watermark) = if m.exporting() {
            let l = SubtaskLabels {
                job: job.to_string(),
                step: step.to_string(),
                subtask: subtask as u32,
            };
            let f = &m.families;
            (
                f.busy.get_or_create_owned(&l),
                f.idle.get_or_create_owned(&l),
                f.backpressured.get_or_create_owned(&l),
                age::watermark(&l),
            )
        } else {
            Default::default()
        };
        TaskClock {
            busy,
            idle,
            backpressured,
            watermark,
            mark: Instant::now(),
            backpressured_at_mark: 0.0,
        }
    }

    /// The counter the subtask's outputs add blocked time to.
    pub(crate) fn backpressure_counter(&self) -> SecondsCounter {
        self.backpressured.clone()
    }

    /// The subtask starts waiting for input: the time since the last mark was busy, except
    /// what it spent backpressured.
    pub(crate) fn wait_starts(&mut self) {
        self.busy_until_now();
    }

    /// Counts the time since the last mark as busy (except what was backpressured): a loop
    /// that never waits calls it once per round.
    pub(crate) fn busy_until_now(&mut self) {
        let now = Instant::now();
        let blocked = self.backpressured.get();
        let busy = now.duration_since(self.mark).as_secs_f64() - (blocked - self.backpressured_at_mark);
        if busy > 0.0 {
            self.busy.inc_by(busy);
        }
        self.mark = now;
        self.backpressured_at_mark = blocked;
    }

    /// The subtask stops waiting: the time since `wait_starts` was idle.
    pub(crate) fn wait_ends(&mut self) {
        let now = Instant::now();
        self.idle.inc_by(now.duration_since(self.mark).as_secs_f64());
        self.mark = now;
        self.backpressured_at_mark = self.backpressured.get();
    }

    /// The subtask's event-time watermark (ms since the epoch) moved.
    pub(crate) fn watermark(&self, ms: i64) {
        // The bounds mean "no watermark yet" and "end of input": neither is a time.
        if ms != i64::MIN && ms != i64::MAX {
            self.watermark.set_ms(ms);
        }
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp::detached()
    }
}
