//! Puts a [`JobStatus`] together from what the master shows while it runs ([`Live`]), the job
//! graph, and the rates the status server sampled.

use crate::config::JobConfig;
use crate::graph::{Graph, NodeKind, Partitioning};
use crate::runtime::handle::Live;
use crate::runtime::status::rates::RateWindow;
use crate::runtime::status::{EdgeInfo, JobState, JobStatus, StepStatus, SubtaskCounters, SubtaskStatus};
use crate::Result;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What does not change while the job runs: its name, steps and edges.
#[derive(Debug, Clone)]
pub(crate) struct JobShape {
    pub(crate) job: String,
    pub(crate) checkpointing: bool,
    /// `(name, kind, parallelism)` in graph order.
    pub(crate) steps: Vec<(String, &'static str, usize)>,
    pub(crate) edges: Vec<EdgeInfo>,
}

impl JobShape {
    pub(crate) fn of(graph: &Graph, cfg: &JobConfig) -> Result<Self> {
        let par = crate::runtime::plan::validate(graph, cfg)?;
        let steps = graph
            .nodes
            .iter()
            .zip(par)
            .map(|(n, p)| {
                let kind = match n.kind {
                    NodeKind::Source(_) => "source",
                    NodeKind::Operator { sink: true, .. } => "sink",
                    NodeKind::Operator { .. } => "operator",
                };
                (n.name.clone(), kind, p)
            })
            .collect();
        let edges = graph
            .edges
            .iter()
            .map(|e| EdgeInfo {
                from: graph.nodes[e.from].name.clone(),
                to: graph.nodes[e.to].name.clone(),
                partitioning: match e.partitioning {
                    Partitioning::Forward => "forward",
                    Partitioning::Rebalance => "rebalance",
                    Partitioning::Broadcast => "broadcast",
                    Partitioning::Hash(_) => "hash",
                }
                .into(),
            })
            .collect();
        Ok(JobShape {
            job: cfg.name.clone(),
            checkpointing: cfg.checkpoint.is_some(),
            steps,
            edges,
        })
    }
}

/// The state `live` shows.
pub(crate) fn state(live: &Live) -> JobState {
    if let Some(e) = live.ended.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return e.state;
    }
    if live.cancel_requested.load(Ordering::Relaxed) || live.stop_requested.load(Ordering::Relaxed) {
        JobState::Stopping
    } else if live.running.load(Ordering::Relaxed) {
        JobState::Running
    } else if live.restarts.load(Ordering::Relaxed) == 0 && live.attempt.load(Ordering::Relaxed) <= 1 {
        JobState::Starting
    } else {
        JobState::Recovering
    }
}

/// The job's status now.
pub(crate) fn status(live: &Live, shape: &JobShape, rates: &RateWindow, started: Instant) -> JobStatus {
    let progress = live.progress();
    let ended = live.ended.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let counters = live.counters();
    let rates = rates.rates();
    let steps = shape
        .steps
        .iter()
        .enumerate()
        .map(|(i, (name, kind, parallelism))| {
            let mut mine: Vec<&SubtaskCounters> = counters.iter().filter(|c| c.step as usize == i).collect();
            mine.sort_by_key(|c| c.subtask);
            let subtasks: Vec<SubtaskStatus> = mine
                .iter()
                .map(|c| {
                    let r = rates.get(&(c.step, c.subtask)).copied().unwrap_or_default();
                    SubtaskStatus {
                        subtask: c.subtask as usize,
                        records_in: c.records_in,
                        records_out: c.records_out,
                        rate_in: r.rate_in,
                        rate_out: r.rate_out,
                        backpressure: r.backpressure,
                        watermark: c.watermark,
                    }
                })
                .collect();
            let all_have_watermarks = !subtasks.is_empty()
                && subtasks.len() == *parallelism
                && subtasks.iter().all(|s| s.watermark.is_some());
            StepStatus {
                name: name.clone(),
                kind: (*kind).into(),
                parallelism: *parallelism,
                records_in: subtasks.iter().map(|s| s.records_in).sum(),
                records_out: subtasks.iter().map(|s| s.records_out).sum(),
                rate_in: subtasks.iter().map(|s| s.rate_in).sum(),
                rate_out: subtasks.iter().map(|s| s.rate_out).sum(),
                backpressure: if subtasks.is_empty() {
                    0.0
                } else {
                    subtasks.iter().map(|s| s.backpressure).sum::<f64>() / subtasks.len() as f64
                },
                watermark: if all_have_watermarks {
                    subtasks.iter().filter_map(|s| s.watermark).min()
                } else {
                    None
                },
                subtasks,
            }
        })
        .collect();
    let uptime = match &ended {
        Some(e) => e.at.saturating_duration_since(started),
        None => started.elapsed(),
    };
    JobStatus {
        job: shape.job.clone(),
        state: state(live),
        attempt: progress.attempt,
        restarts: progress.restarts,
        uptime_ms: uptime.as_millis() as u64,
        checkpointing: shape.checkpointing,
        source_records: progress.source_records,
        sink_records: progress.sink_records,
        steps,
        edges: shape.edges.clone(),
        last_checkpoint: progress.last_checkpoint.map(|(id, _)| id.get()),
        since_last_checkpoint_ms: progress.last_checkpoint.map(|(_, age)| age.as_millis() as u64),
        checkpoints: live.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).entries(),
        recoveries: live.restores.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        failures: live.failures.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        savepoints: live.savepoints.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        workers: live.workers.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        error: ended.and_then(|e| e.error),
    }
}
