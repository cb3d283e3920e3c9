//! A running job's status (the types the API answers with), served over HTTP by the process that runs the job's master: a
//! status page (`GET /`) and a JSON API (`GET /api/status`, `GET /api/checkpoints`,
//! `POST /api/savepoint`, `POST /api/stop`, `POST /api/cancel`).
//!
//! Set the address with [`Pipeline::status_addr`](crate::api::Pipeline::status_addr) (in a
//! cluster: `WEIR_STATUS_ADDR` on the master process). The server starts with the job and
//! serves until the [`JobHandle`](crate::runtime::JobHandle) is joined or dropped: between the
//! job's end and then it shows the final state (`finished`, `cancelled` or `failed`).
//!
//! # After a crash
//! Nothing here is durable: the status lives in the master's memory. After the process that
//! runs the master dies, its successor serves a new status that starts at its own first
//! attempt; the checkpoint history it shows starts there too (the checkpoints themselves are in
//! the checkpoint storage, `weir checkpoints list` shows them).

pub(crate) mod history;
pub(crate) mod rates;
mod running;

use crate::checkpoint::savepoint::Savepoint;
pub use crate::runtime::report::{FailureInfo, RestoreStats};
use serde::{Deserialize, Serialize};

/// What `GET /api/status` answers: everything the status page shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's name.
    pub job: String,
    /// Where the job is in its life.
    pub state: JobState,
    /// The current attempt (1 = the first run of the master process).
    pub attempt: u32,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// Time since the job started (until it ended, once it has), ms.
    pub uptime_ms: u64,
    /// Whether the job takes checkpoints into checkpoint storage: then every failure recovers
    /// with exactly-once output and nothing committed is lost (recovery point objective 0).
    pub checkpointing: bool,
    /// Records read by all sources so far, over all attempts (replays included).
    pub source_records: u64,
    /// Records received by sinks in the current attempt.
    pub sink_records: u64,
    /// The steps in graph order, with their counters in the current attempt.
    pub steps: Vec<StepStatus>,
    /// Which step feeds which.
    pub edges: Vec<EdgeInfo>,
    /// The latest completed checkpoint, if any.
    pub last_checkpoint: Option<u64>,
    /// Time since the latest completed checkpoint, ms.
    pub since_last_checkpoint_ms: Option<u64>,
    /// The latest checkpoints (at most [`history::KEPT`]), oldest first, failed and aborted
    /// ones included.
    pub checkpoints: Vec<CheckpointEntry>,
    /// Every recovery so far, in order (RTO = `detect_to_running_ms`).
    pub recoveries: Vec<RestoreStats>,
    /// Every failure so far, in order.
    pub failures: Vec<FailureInfo>,
    /// Savepoints written by this run, in order.
    pub savepoints: Vec<Savepoint>,
    /// The job's worker processes (empty when the job runs in one process).
    pub workers: Vec<WorkerStatus>,
    /// Why the job failed, once it has.
    pub error: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// The first attempt restores and opens its subtasks.
    Starting,
    /// Every subtask of the current attempt runs.
    Running,
    /// A failure was detected: the failed attempt is cancelled, or the next one restores.
    Recovering,
    /// A stop or a cancellation was asked for and the job has not ended yet.
    Stopping,
    /// The job ended: its input is exhausted, or it stopped at a final checkpoint or savepoint.
    Finished,
    /// The job was cancelled.
    Cancelled,
    /// The job failed (see `error`).
    Failed,
}

impl JobState {
    /// Whether the job has ended.
    pub fn ended(self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled | JobState::Failed)
    }
}

/// One step of the job graph and its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStatus {
    /// The step's name.
    pub name: String,
    /// `source`, `operator` or `sink`.
    pub kind: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Records received in the current attempt (all subtasks).
    pub records_in: u64,
    /// Records emitted in the current attempt (all subtasks).
    pub records_out: u64,
    /// Records received per second over the last few seconds.
    pub rate_in: f64,
    /// Records emitted per second over the last few seconds.
    pub rate_out: f64,
    /// Backpressure: the fraction of the last few seconds the step's subtasks spent blocked
    /// on a full output channel (averaged over subtasks, 0..1). Only the last step of a chain of
    /// fused steps sends, so the others show 0.
    pub backpressure: f64,
    /// The lowest watermark of its subtasks (event time, ms), once every subtask has one.
    pub watermark: Option<i64>,
    /// Each subtask.
    pub subtasks: Vec<SubtaskStatus>,
}

/// One subtask of a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskStatus {
    /// Its index within the step.
    pub subtask: usize,
    /// Records received in the current attempt.
    pub records_in: u64,
    /// Records emitted in the current attempt.
    pub records_out: u64,
    /// Records received per second over the last few seconds.
    pub rate_in: f64,
    /// Records emitted per second over the last few seconds.
    pub rate_out: f64,
    /// Fraction of the last few seconds spent blocked on a full output channel (0..1).
    pub backpressure: f64,
    /// The latest watermark it saw (a source: emitted), event time ms.
    pub watermark: Option<i64>,
}

/// An edge of the job graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// The feeding step's name.
    pub from: String,
    /// The fed step's name.
    pub to: String,
    /// `forward`, `rebalance`, `broadcast` or `hash`.
    pub partitioning: String,
}

/// One checkpoint of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// The checkpoint's id.
    pub id: u64,
    /// `checkpoint`, `final`, `savepoint` or `stop_with_savepoint`.
    pub kind: String,
    /// Where it is.
    pub status: CheckpointState,
    /// Wall-clock time of the trigger, ms since the epoch.
    pub triggered_at_ms: u64,
    /// Trigger to completion (or to the abort), ms.
    pub duration_ms: Option<f64>,
    /// Bytes of all files it references.
    pub state_bytes: Option<u64>,
    /// Bytes it stored anew.
    pub uploaded_bytes: Option<u64>,
    /// Longest barrier alignment of any subtask, ms.
    pub alignment_ms: Option<f64>,
    /// Longest synchronous snapshot (the pause of a subtask's processing), ms.
    pub sync_ms: Option<f64>,
    /// The upload (asynchronous phase), ms.
    pub async_ms: Option<f64>,
    /// Why it failed or was aborted.
    pub failure: Option<String>,
}

/// Where a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointState {
    /// Triggered; not every subtask acknowledged it yet, or its upload runs.
    InProgress,
    /// Complete: its metadata is durable, sinks commit up to it.
    Completed,
    /// Given up while the job went on (a timeout, a failed upload).
    Aborted,
    /// Its completion failed, or its attempt ended before it completed.
    Failed,
}

/// A worker process of a cluster, as its master sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's stable number.
    pub id: u32,
    /// Its control service's address.
    pub address: String,
    /// Its process id.
    pub pid: u32,
    /// Pipeline slices it runs.
    pub slots: u32,
    /// Whether its heartbeats arrive in time.
    pub alive: bool,
    /// Time since its latest heartbeat, ms.
    pub last_heartbeat_ms: u64,
}

/// The counters of one subtask, as a worker sends them to the master with its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskCounters {
    /// The step's index in the job graph.
    pub step: u32,
    /// The subtask's index within the step.
    pub subtask: u32,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Nanoseconds blocked on a full output channel.
    pub blocked_ns: u64,
    /// The latest watermark it saw.
    pub watermark: Option<i64>,
}

impl SubtaskCounters {
    /// The counters of every subtask in `metrics`.
    pub(crate) fn of(metrics: &[crate::runtime::report::MetricsEntry]) -> Vec<SubtaskCounters> {
        metrics
            .iter()
            .map(|m| SubtaskCounters {
                step: m.step as u32,
                subtask: m.subtask as u32,
                records_in: m.metrics.records_in(),
                records_out: m.metrics.records_out(),
                blocked_ns: m.metrics.blocked_ns(),
                watermark: m.metrics.watermark(),
            })
            .collect()
    }
}

pub use running::StatusServer;
