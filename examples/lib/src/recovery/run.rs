//! One benchmark run: the supervisor starts the job in a worker process, waits for the preload
//! and a steady baseline, injects the failure halfway between two checkpoints, follows the
//! recovery until throughput and latency have been normal for 2 s (or a time limit), stops the
//! input, lets the job finish and audits the committed output.
//!
//! * `panic`: the supervisor tells the worker to make a keyed subtask panic; the engine cancels
//!   the attempt and restores in-process.
//! * `kill`: the supervisor sends SIGKILL to the worker and starts a new one on the same
//!   directories, which restores from the latest completed checkpoint.

use super::analysis::{self, Moments, Phases, Sample};
use super::audit::{self, Audit};
use super::worker::{CheckpointRow, EngineRestore, Message};
use super::workload::{now_us, JobSpec};
use anyhow::{anyhow, bail, Context};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the failure is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// A keyed subtask panics; the engine restarts the job inside the process.
    Panic,
    /// `kill -9` of the whole process; a new process resumes.
    Kill,
}

/// Where keyed state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Rocksdb,
    Memory,
}

/// One point of the parameter grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub state_mb: u64,
    pub checkpoint_ms: u64,
    pub backend: Backend,
    pub failure: Failure,
    pub parallelism: usize,
    /// Input events per second (steady phase).
    pub rate: f64,
    /// Which repetition of this point of the grid (0 = the first).
    pub repetition: usize,
}

impl RunConfig {
    /// A short name for files and progress lines.
    pub fn slug(&self) -> String {
        match self.repetition {
            0 => self.point(),
            r => format!("{}-r{}", self.point(), r + 1),
        }
    }

    /// The grid point's name (the slug without the repetition).
    pub fn point(&self) -> String {
        format!(
            "{}mb-{}ms-{}-{}-p{}",
            self.state_mb,
            self.checkpoint_ms,
            match self.backend {
                Backend::Rocksdb => "rocksdb",
                Backend::Memory => "memory",
            },
            match self.failure {
                Failure::Panic => "panic",
                Failure::Kill => "kill",
            },
            self.parallelism
        )
    }

    pub fn keys(&self) -> u64 {
        self.state_mb * 1024 * 1024 / super::workload::VALUE_BYTES as u64
    }
}

/// Timing knobs shared by all runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// After the preload, before the baseline window.
    pub warmup: Duration,
    /// The baseline window (at least two checkpoint intervals are used).
    pub baseline: Duration,
    /// Give up waiting for back-to-normal after this long.
    pub max_recovery: Duration,
    pub restart_delay_ms: u64,
}

/// Everything measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunData {
    pub config: RunConfig,
    pub origin_us: u64,
    pub baseline_us: (u64, u64),
    pub moments: Moments,
    pub phases: Phases,
    pub audit: Audit,
    pub preload_s: f64,
    /// Failures the engine saw beyond the injected one (must be 0).
    pub unplanned_failures: u32,
    pub checkpoints: Vec<CheckpointRow>,
    /// The engine's own measurement of in-process recoveries (panic runs).
    pub engine_restores: Vec<EngineRestore>,
    /// Every progress sample (every 50 ms), merged over the run's workers.
    pub samples: Vec<Sample>,
    pub wall_s: f64,
}

/// A line from a worker, tagged with the worker's generation.
enum Heard {
    Line(u32, Message),
    Garbage(String),
    Eof(u32),
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    generation: u32,
}

fn spawn(
    exe: &Path,
    spec: &JobSpec,
    origin_us: Option<u64>,
    log: &Path,
    generation: u32,
    tx: &mpsc::Sender<Heard>,
) -> anyhow::Result<Worker> {
    // WEIR_RECOVERY_PERF=DIR: record a CPU profile of every restarted worker (perf).
    let perf = std::env::var_os("WEIR_RECOVERY_PERF").filter(|_| origin_us.is_some());
    let mut c = match &perf {
        Some(dir) => {
            let mut c = Command::new("perf");
            c.args(["record", "-F", "1999", "-g", "-o"])
                .arg(Path::new(dir).join(format!("restart-{generation}-{}.perf", now_us())))
                .arg("--")
                .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    c.arg("--worker")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log)?);
    if let Some(o) = origin_us {
        c.args(["--origin-us", &o.to_string()]);
    }
    let mut child = c.spawn().with_context(|| format!("starting {}", exe.display()))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let heard = match serde_json::from_str::<Message>(&line) {
                Ok(m) => Heard::Line(generation, m),
                Err(_) => Heard::Garbage(line),
            };
            if tx.send(heard).is_err() {
                return;
            }
        }
        let _ = tx.send(Heard::Eof(generation));
    });
    Ok(Worker {
        child,
        stdin,
        generation,
    })
}

fn tell(w: &mut Worker, command: &str) -> anyhow::Result<()> {
    writeln!(w.stdin, "{command}").context("writing to the worker")?;
    w.stdin.flush().context("writing to the worker")
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Preload,
    Steady,
    Recovering,
    Stopping,
}

/// Runs one configuration in `work` (emptied first, removed after unless `keep`).
pub fn run(cfg: &RunConfig, timing: &Timing, work: &Path, keep: bool, bar: &ProgressBar) -> anyhow::Result<RunData> {
    let started = Instant::now();
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("emptying {}", work.display()))?;
    }
    std::fs::create_dir_all(work)?;
    let spec = JobSpec {
        keys: cfg.keys(),
        rate: cfg.rate,
        parallelism: cfg.parallelism,
        checkpoint_ms: cfg.checkpoint_ms,
        rocksdb: cfg.backend == Backend::Rocksdb,
        restart_delay_ms: timing.restart_delay_ms,
        state_dir: work.join("state"),
        checkpoint_dir: work.join("checkpoints"),
        output_dir: work.join("output"),
    };
    let log = work.join("worker.log");
    let exe = std::env::current_exe().context("locating this executable")?;
    let (tx, rx) = mpsc::channel();
    let mut worker = spawn(&exe, &spec, None, &log, 1, &tx)?;
    let result = follow(cfg, timing, &spec, &exe, &log, &tx, &rx, &mut worker, bar);
    if result.is_err() {
        let _ = worker.child.kill();
    }
    let _ = worker.child.wait();
    let mut data = result.map_err(|e| anyhow!("{e:#}\nlast lines of {}:\n{}", log.display(), log_tail(&log)))?;
    bar.set_message(format!("{}: auditing the committed output", cfg.slug()));
    data.audit = audit::check(&spec.output_dir, spec.keys, data.audit.end)?;
    data.wall_s = started.elapsed().as_secs_f64();
    if !keep {
        let _ = std::fs::remove_dir_all(work);
    }
    Ok(data)
}

/// Follows the worker(s) through the run; returns the data with `audit.end` set.
#[allow(clippy::too_many_arguments)]
fn follow(
    cfg: &RunConfig,
    timing: &Timing,
    spec: &JobSpec,
    exe: &Path,
    log: &Path,
    tx: &mpsc::Sender<Heard>,
    rx: &mpsc::Receiver<Heard>,
    worker: &mut Worker,
    bar: &ProgressBar,
) -> anyhow::Result<RunData> {
    let slug = cfg.slug();
    let interval = Duration::from_millis(cfg.checkpoint_ms);
    let baseline_len = timing.baseline.max(interval * 2);
    let started = Instant::now();
    let mut stage = Stage::Preload;
    let mut origin_us = 0u64;
    let mut baseline = (0u64, 0u64);
    let mut moments = Moments::default();
    let mut samples: Vec<Sample> = Vec::new();
    // Totals of earlier workers (processed, latency sum, latency n).
    let mut carried = (0u64, 0u64, 0u64);
    let mut failures_seen = 0u32;
    let mut injected_at: Option<Instant> = None;
    let mut preload_s = 0.0;
    let mut checkpoints = Vec::new();
    let mut engine_restores = Vec::new();
    let mut end = None;
    loop {
        let heard = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(h) => h,
            Err(_) => bail!("the worker said nothing for 60 s"),
        };
        let (generation, msg) = match heard {
            Heard::Line(g, m) => (g, m),
            Heard::Garbage(line) => {
                bar.println(format!("  worker: {line}"));
                continue;
            }
            Heard::Eof(g) if g != worker.generation => continue,
            Heard::Eof(_) => {
                let status = worker.child.wait()?;
                match end {
                    Some(_) if status.success() => break,
                    _ => bail!("the worker exited unexpectedly ({status})"),
                }
            }
        };
        if generation != worker.generation {
            continue; // a killed worker's last words
        }
        match msg {
            Message::Started { .. } => {}
            Message::Origin { at_us } => {
                origin_us = at_us;
                preload_s = started.elapsed().as_secs_f64();
                stage = Stage::Steady;
                let b0 = at_us + timing.warmup.as_micros() as u64;
                baseline = (b0, b0 + baseline_len.as_micros() as u64);
            }
            Message::Sample {
                t_us,
                processed,
                position,
                restored_position,
                latency_sum_us,
                latency_n,
                preloaded,
                running,
                checkpoint_age_ms,
                ..
            } => {
                let last_raw = (processed, latency_sum_us, latency_n);
                samples.push(Sample {
                    t_us,
                    processed: carried.0 + processed,
                    position,
                    restored_position,
                    latency_sum_us: carried.1 + latency_sum_us,
                    latency_n: carried.2 + latency_n,
                    running,
                });
                match stage {
                    Stage::Preload => bar.set_message(format!(
                        "{slug}: preloading state {:.0} %",
                        100.0 * preloaded as f64 / spec.keys.max(1) as f64
                    )),
                    Stage::Steady => {
                        // Halfway between two checkpoints: the latest completed one is half an
                        // interval old (a window of 150 ms, three samples, to catch it).
                        let half = cfg.checkpoint_ms / 2;
                        let age_ok = checkpoint_age_ms.is_some_and(|a| a >= half && a < half + 150)
                            || t_us > baseline.1 + 3 * interval.as_micros() as u64;
                        if t_us >= baseline.1 && age_ok {
                            bar.set_message(format!("{slug}: injecting {:?}", cfg.failure));
                            match cfg.failure {
                                Failure::Panic => {
                                    moments.failure = now_us();
                                    tell(worker, "panic")?;
                                }
                                Failure::Kill => {
                                    moments.failure = now_us();
                                    worker.child.kill().context("killing the worker")?;
                                    worker.child.wait()?;
                                    moments.stopped = Some(now_us());
                                    carried = (carried.0 + last_raw.0, carried.1 + last_raw.1, carried.2 + last_raw.2);
                                    let next = worker.generation + 1;
                                    *worker = spawn(exe, spec, Some(origin_us), log, next, tx)?;
                                }
                            }
                            injected_at = Some(Instant::now());
                            stage = Stage::Recovering;
                        } else {
                            let left = baseline.1.saturating_sub(t_us) as f64 / 1e6;
                            bar.set_message(format!("{slug}: steady, failure in {left:.1} s"));
                        }
                    }
                    Stage::Recovering => {
                        let p = analysis::phases(&samples, baseline, &moments, cfg.rate);
                        let since = injected_at.map(|i| i.elapsed()).unwrap_or_default();
                        let done = p
                            .normal_us
                            .is_some_and(|n| t_us >= n + analysis::NORMAL_WINDOW_US + 500_000);
                        if done || since > timing.max_recovery {
                            if !done {
                                bar.println(format!(
                                    "  {slug}: not back to normal {:.0} s after the failure; stopping",
                                    since.as_secs_f64()
                                ));
                            }
                            tell(worker, "stop")?;
                            stage = Stage::Stopping;
                        }
                        let phase = match (moments.running, p.caught_up_us) {
                            (None, _) => "restoring",
                            (Some(_), None) => "replaying",
                            (Some(_), Some(_)) => "catching up",
                        };
                        bar.set_message(format!(
                            "{slug}: {phase}, {:.1} s after the failure",
                            since.as_secs_f64()
                        ));
                    }
                    Stage::Stopping => bar.set_message(format!("{slug}: final checkpoint and commit")),
                }
            }
            Message::Lifecycle { attempt, phase, at_us } => {
                let after_failure = stage == Stage::Recovering || stage == Stage::Stopping;
                match phase.as_str() {
                    "failure_detected" => failures_seen += 1,
                    "cancelled" if cfg.failure == Failure::Panic && moments.stopped.is_none() => {
                        moments.stopped = Some(at_us)
                    }
                    "restore_started"
                        if after_failure
                            && moments.restore_started.is_none()
                            && (cfg.failure == Failure::Kill || attempt > 1) =>
                    {
                        moments.restore_started = Some(at_us);
                    }
                    "running" if after_failure && moments.running.is_none() && moments.restore_started.is_some() => {
                        moments.running = Some(at_us)
                    }
                    _ => {}
                }
            }
            Message::Panicked { at_us } => moments.failure = at_us,
            Message::Finished {
                end: e,
                checkpoints: c,
                restores,
            } => {
                end = Some(e);
                checkpoints = c;
                engine_restores = restores;
            }
        }
    }
    let injected = u32::from(cfg.failure == Failure::Panic);
    let phases = analysis::phases(&samples, baseline, &moments, cfg.rate);
    Ok(RunData {
        config: cfg.clone(),
        origin_us,
        baseline_us: baseline,
        moments,
        phases,
        audit: Audit {
            end: end.unwrap_or(0),
            ..Default::default()
        },
        preload_s,
        unplanned_failures: failures_seen.saturating_sub(injected),
        checkpoints,
        engine_restores,
        samples,
        wall_s: 0.0,
    })
}
