//! The worker: one process running the benchmarked job. It reports to the supervisor in JSON
//! lines on stdout ([`Message`]) and takes commands on stdin (`panic`, `stop`).
//!
//! A worker killed with `kill -9` leaves its state and checkpoints behind; the next worker of
//! the run, started with the same directories and `--origin-us`, resumes from the latest
//! completed checkpoint and finds the input schedule unchanged.

use super::workload::{self, now_us, JobSpec, Shared};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::prelude::CheckpointId;
use weir_engine::runtime::LifecyclePhase;

/// How often the worker samples its progress.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One checkpoint, as the job report has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub id: CheckpointId,
    pub triggered_at_ms: u64,
    pub sync_ms: f64,
    pub async_ms: f64,
    pub total_ms: f64,
    pub state_bytes: u64,
    pub uploaded_bytes: u64,
}

/// An in-process recovery as the engine measured it (`RestoreStats`), to cross-check the
/// supervisor's phases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineRestore {
    pub checkpoint: Option<CheckpointId>,
    pub cancel_ms: f64,
    pub restore_ms: f64,
    pub detect_to_running_ms: f64,
    pub records_replayed: u64,
}

/// What a worker tells the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Started {
        pid: u32,
    },
    /// The preload is processed; the steady input schedule starts at `at_us`.
    Origin {
        at_us: u64,
    },
    Sample {
        t_us: u64,
        processed: u64,
        position: u64,
        restored_position: u64,
        latency_sum_us: u64,
        latency_n: u64,
        preloaded: u64,
        running: bool,
        attempt: u32,
        checkpoint: Option<CheckpointId>,
        checkpoint_age_ms: Option<u64>,
    },
    Lifecycle {
        attempt: u32,
        phase: String,
        at_us: u64,
    },
    /// The requested panic happened.
    Panicked {
        at_us: u64,
    },
    /// The job finished after `stop`: input ended at event `end`.
    Finished {
        end: u64,
        checkpoints: Vec<CheckpointRow>,
        /// Per in-process recovery: the engine's own `RestoreStats`.
        restores: Vec<EngineRestore>,
    },
}

fn emit(m: &Message) {
    let line = serde_json::to_string(m).expect("messages serialize");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn phase_name(p: LifecyclePhase) -> &'static str {
    match p {
        LifecyclePhase::RestoreStarted => "restore_started",
        LifecyclePhase::Running => "running",
        LifecyclePhase::FailureDetected => "failure_detected",
        LifecyclePhase::Cancelled => "cancelled",
    }
}

/// Runs the job until told to stop (or until stdin closes), reporting as it goes.
pub fn run(spec: &JobSpec, origin_us: Option<u64>) -> anyhow::Result<()> {
    let shared = Shared::new(spec.parallelism);
    if let Some(o) = origin_us {
        shared.origin_us.store(o, Ordering::SeqCst);
    }
    emit(&Message::Started {
        pid: std::process::id(),
    });
    listen_for_commands(spec.clone(), shared.clone());
    let handle = workload::pipeline(spec, &shared).start()?;
    let mut logged = 0usize;
    let mut panic_reported = false;
    while !handle.is_finished() {
        if shared.origin_us.load(Ordering::SeqCst) == 0 && shared.preloaded.load(Ordering::Relaxed) >= spec.keys {
            let at_us = now_us();
            shared.origin_us.store(at_us, Ordering::SeqCst);
            emit(&Message::Origin { at_us });
        }
        let p = handle.progress();
        emit(&Message::Sample {
            t_us: now_us(),
            processed: shared.processed.load(Ordering::Relaxed),
            position: shared.position(),
            restored_position: shared.restored_position(),
            latency_sum_us: shared.latency_sum_us.load(Ordering::Relaxed),
            latency_n: shared.latency_n.load(Ordering::Relaxed),
            preloaded: shared.preloaded.load(Ordering::Relaxed),
            running: p.running,
            attempt: p.attempt,
            checkpoint: p.last_checkpoint.map(|(id, _)| id),
            checkpoint_age_ms: p.last_checkpoint.map(|(_, age)| age.as_millis() as u64),
        });
        let log = handle.lifecycle();
        for e in &log[logged..] {
            emit(&Message::Lifecycle {
                attempt: e.attempt,
                phase: phase_name(e.phase).to_string(),
                at_us: to_epoch_us(e.at),
            });
        }
        logged = log.len();
        let panicked = shared.panicked_at_us.load(Ordering::SeqCst);
        if panicked != 0 && !panic_reported {
            emit(&Message::Panicked { at_us: panicked });
            panic_reported = true;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let report = handle.join()?;
    emit(&Message::Finished {
        end: shared.end.load(Ordering::SeqCst),
        checkpoints: report
            .checkpoints
            .iter()
            .map(|c| CheckpointRow {
                id: c.id,
                triggered_at_ms: c.triggered_at_ms,
                sync_ms: c.sync_ms,
                async_ms: c.async_ms,
                total_ms: c.total_ms,
                state_bytes: c.state_bytes,
                uploaded_bytes: c.uploaded_bytes,
            })
            .collect(),
        restores: report
            .restores
            .iter()
            .map(|r| EngineRestore {
                checkpoint: r.checkpoint,
                cancel_ms: r.cancel_ms,
                restore_ms: r.restore_ms,
                detect_to_running_ms: r.detect_to_running_ms,
                records_replayed: r.records_replayed,
            })
            .collect(),
    });
    Ok(())
}

/// An `Instant` of this process as µs since the epoch.
fn to_epoch_us(at: Instant) -> u64 {
    now_us().saturating_sub(at.elapsed().as_micros() as u64)
}

/// Reads commands from stdin: `panic` makes the next event panic in a keyed subtask; `stop`
/// (or the end of stdin) ends the input at the events available now, so the job finishes
/// with a final checkpoint that commits everything.
fn listen_for_commands(spec: JobSpec, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("panic") => shared.panic_requested.store(true, Ordering::SeqCst),
                Ok("stop") | Err(_) => break,
                Ok(other) => eprintln!("worker: unknown command {other:?}"),
            }
        }
        let origin = shared.origin_us.load(Ordering::SeqCst);
        let end = spec.available(origin, now_us()).max(spec.keys);
        shared.end.store(end, Ordering::SeqCst);
    });
}
