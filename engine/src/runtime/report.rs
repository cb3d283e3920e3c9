//! What a job reports when it ends.

use crate::checkpoint::savepoint::Savepoint;
use crate::checkpoint::CheckpointStats;
use crate::message::CheckpointId;
use crate::metrics::OperatorMetrics;
pub use crate::recovery::RestoreWarning;
use std::collections::BTreeMap;
use std::time::Duration;

/// The metrics of one operator subtask, by operator name.
#[derive(Clone, Debug)]
pub(crate) struct MetricsEntry {
    /// The step's index in the job graph.
    pub(crate) step: usize,
    /// The subtask's index within the step.
    pub(crate) subtask: usize,
    pub(crate) operator: String,
    pub(crate) is_source: bool,
    pub(crate) is_sink: bool,
    pub(crate) metrics: OperatorMetrics,
}

/// Counters of one step, summed over its subtasks (and over attempts: replays included).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OperatorReport {
    /// The step's name.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Named counters (late records, duplicates, ...).
    pub counters: BTreeMap<String, u64>,
}

impl OperatorReport {
    pub(crate) fn collect(metrics: &[MetricsEntry]) -> Vec<OperatorReport> {
        let mut out: Vec<OperatorReport> = Vec::new();
        for m in metrics {
            let r = match out.iter_mut().position(|r| r.name == m.operator) {
                Some(i) => &mut out[i],
                None => {
                    out.push(OperatorReport {
                        name: m.operator.clone(),
                        ..Default::default()
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            r.parallelism += 1;
            r.records_in += m.metrics.records_in();
            r.records_out += m.metrics.records_out();
            for (k, v) in m.metrics.counters() {
                *r.counters.entry(k).or_default() += v;
            }
        }
        out
    }
}

/// One failure of the job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailureInfo {
    /// The attempt that failed (1 = the first run).
    pub attempt: u32,
    /// When the master detected the failure (before the failed attempt was cancelled):
    /// wall-clock time, ms since the epoch.
    pub at_ms: u64,
    /// What failed.
    pub error: String,
}

/// One recovery: from a detected failure to every subtask running again on restored state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestoreStats {
    /// The attempt that restored.
    pub attempt: u32,
    /// The checkpoint restored (`None`: no checkpoint had completed, the job started afresh).
    pub checkpoint: Option<CheckpointId>,
    /// Failure detected → all subtasks running (cancellation, restart delay, restore).
    pub detect_to_running_ms: f64,
    /// Failure detected → every subtask of the failed attempt stopped (cancellation).
    pub cancel_ms: f64,
    /// Restore started → all subtasks running (state fetched, verified and opened).
    pub restore_ms: f64,
    /// Source records read after the restored checkpoint before the failure: read again.
    pub records_replayed: u64,
}

/// The outcome of a job run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JobReport {
    /// The job's name.
    pub job: String,
    /// Wall time from start to end.
    pub duration: Duration,
    /// Whether the job ended because it was cancelled.
    pub cancelled: bool,
    /// Per-step counters, in graph order, summed over attempts.
    pub operators: Vec<OperatorReport>,
    /// Every checkpoint this run completed.
    pub checkpoints: Vec<CheckpointStats>,
    /// Checkpoints aborted (timeout or failed upload) while the job went on.
    pub checkpoints_aborted: u64,
    /// Commit barriers completed without checkpoint storage.
    pub commit_barriers: u64,
    /// Restarts after failures.
    pub restarts: u32,
    /// Failures, in order.
    pub failures: Vec<FailureInfo>,
    /// Recoveries, in order.
    pub restores: Vec<RestoreStats>,
    /// The checkpoint the run started from (a previous run's), if any.
    pub restored_from: Option<CheckpointId>,
    /// Restores that fell back to an older checkpoint (only with the opt-in), in order: each
    /// one reproduced committed output. Empty in a run that restored as it should.
    pub restore_warnings: Vec<RestoreWarning>,
    /// The checkpoint replica's state when the job ended, when checkpoints are replicated.
    pub replication: Option<crate::checkpoint::replication::ReplicationStatus>,
    /// The savepoint the run started from (its location), if it started from one.
    #[serde(default)]
    pub restored_from_savepoint: Option<String>,
    /// Every savepoint this run wrote, in order.
    #[serde(default)]
    pub savepoints: Vec<Savepoint>,
    /// The savepoint the job stopped with
    /// ([`JobHandle::stop_with_savepoint`](crate::runtime::JobHandle::stop_with_savepoint)).
    #[serde(default)]
    pub stopped_with_savepoint: Option<Savepoint>,
    /// The final checkpoint of a graceful stop
    /// ([`JobHandle::stop`](crate::runtime::JobHandle::stop)): the job's output is committed
    /// up to it, and the next run restores it.
    #[serde(default)]
    pub stopped_at: Option<CheckpointId>,
    /// Whether the job's checkpoints were deleted when it was cancelled
    /// ([`OnCancel::Delete`](crate::checkpoint::OnCancel::Delete)).
    #[serde(default)]
    pub checkpoints_deleted_on_cancel: bool,
}

impl JobReport {
    /// The report of the step named `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorReport> {
        self.operators.iter().find(|o| o.name == name)
    }

    pub(crate) fn merge_operators(&mut self, attempt: Vec<OperatorReport>) {
        for o in attempt {
            match self.operators.iter_mut().find(|r| r.name == o.name) {
                Some(r) => {
                    r.records_in += o.records_in;
                    r.records_out += o.records_out;
                    for (k, v) in o.counters {
                        *r.counters.entry(k).or_default() += v;
                    }
                }
                None => self.operators.push(o),
            }
        }
    }
}

impl std::fmt::Display for JobReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "job {} {} in {:.2?} ({} restarts, {} checkpoints)",
            self.job,
            if self.cancelled {
                "cancelled"
            } else if self.stopped_with_savepoint.is_some() {
                "stopped with a savepoint"
            } else if self.stopped_at.is_some() {
                "stopped at a final checkpoint"
            } else {
                "finished"
            },
            self.duration,
            self.restarts,
            self.checkpoints.len()
        )?;
        writeln!(
            f,
            "{:<28} {:>5} {:>14} {:>14}",
            "step", "par", "records in", "records out"
        )?;
        for o in &self.operators {
            write!(
                f,
                "{:<28} {:>5} {:>14} {:>14}",
                o.name, o.parallelism, o.records_in, o.records_out
            )?;
            for (k, v) in &o.counters {
                write!(f, "  {k}={v}")?;
            }
            writeln!(f)?;
        }
        if let Some(location) = &self.restored_from_savepoint {
            writeln!(f, "started from the savepoint in {location}")?;
        }
        for s in &self.savepoints {
            writeln!(
                f,
                "savepoint {} in {} ({} files, {} bytes){}",
                s.id,
                s.location,
                s.files,
                s.bytes,
                if s.stopped_job { ": the job stopped with it" } else { "" }
            )?;
        }
        for w in &self.restore_warnings {
            writeln!(
                f,
                "WARNING: restored checkpoint {} although checkpoint {} was complete: {}",
                w.restored, w.newer, w.message
            )?;
        }
        for r in &self.restores {
            writeln!(
                f,
                "restore (attempt {}): checkpoint {}, failure->running {:.1} ms (cancel {:.1} ms, restore {:.1} ms), {} records replayed",
                r.attempt,
                r.checkpoint.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
                r.detect_to_running_ms,
                r.cancel_ms,
                r.restore_ms,
                r.records_replayed
            )?;
        }
        Ok(())
    }
}
