//! Running a job for a throughput figure: the state backend, checkpoints or not, and what a
//! run measures (events, wall time, CPU time of the whole process). Shared by the `nexmark`
//! example and the `nexmark` and `pipelines` benches.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir_engine::prelude::*;

/// Where keyed state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryBackend`.
    Memory,
    /// `RocksDbBackend` in a fresh directory.
    RocksDb,
}

impl Backend {
    /// `memory` or `rocksdb`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::RocksDb => "rocksdb",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(Backend::Memory),
            "rocksdb" => Ok(Backend::RocksDb),
            _ => Err(format!("unknown backend {s:?}: expected memory or rocksdb")),
        }
    }
}

/// How a measured job is configured.
#[derive(Debug, Clone, Copy)]
pub struct JobSetup {
    /// Parallelism of every step.
    pub parallelism: usize,
    /// State backend.
    pub backend: Backend,
    /// Checkpoint interval; `None` runs without checkpoint storage (commit barriers only, every
    /// second, which is what a job without checkpoints does anyway).
    pub checkpoint: Option<Duration>,
}

/// A pipeline configured per `setup`, and the directory holding its state and checkpoints
/// (delete it after the run). The directory is under `WEIR_BENCH_DIR` if set, else the
/// system's temporary directory.
pub fn pipeline(name: &str, setup: JobSetup) -> (Pipeline, tempfile::TempDir) {
    let base = std::env::var_os("WEIR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("temporary directory for state and checkpoints");
    let mut p = Pipeline::new(name).parallelism(setup.parallelism);
    p = match setup.backend {
        Backend::Memory => p.state_backend(MemoryBackend::new()),
        Backend::RocksDb => p.state_backend(RocksDbBackend::new(dir.path().join("state"))),
    };
    if let Some(interval) = setup.checkpoint {
        p = p
            .checkpoint_storage(dir.path().join("checkpoints"))
            .checkpoint_interval(interval);
    }
    (p, dir)
}

/// CPU time (user + system) of this process so far, all threads, from `/proc/self/stat`
/// (zero where that file does not exist).
pub fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every mainstream architecture.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Source events processed.
    pub events: u64,
    /// Wall time from start to the end of the job.
    pub wall: Duration,
    /// CPU time the process spent meanwhile (every thread: sources, operators, checkpoints).
    pub cpu: Duration,
    /// Checkpoints completed.
    pub checkpoints: usize,
}

impl Measured {
    /// Events per second of wall time.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    /// Events per second of CPU time: throughput per fully used core.
    pub fn rate_per_core(&self) -> f64 {
        if self.cpu.is_zero() {
            return f64::NAN;
        }
        self.events as f64 / self.cpu.as_secs_f64()
    }
}

/// Runs the bounded job `p` to its end and measures it.
///
/// # Panics
/// If the job fails (a benchmark has nothing sensible to report then).
pub fn run_bounded(p: Pipeline, events: u64) -> Measured {
    let (t0, c0) = (Instant::now(), process_cpu_time());
    let report = p.run().expect("benchmark job");
    let (wall, cpu) = (t0.elapsed(), process_cpu_time().saturating_sub(c0));
    Measured {
        events,
        wall,
        cpu,
        checkpoints: report.checkpoints.len(),
    }
}

/// Runs the unbounded job `p` for `warmup + measure`, then cancels it; measures the
/// steady state only (events read by the sources during `measure`).
///
/// # Panics
/// If the job fails.
pub fn run_for(p: Pipeline, warmup: Duration, measure: Duration) -> Measured {
    let handle = p.start().expect("benchmark job starts");
    std::thread::sleep(warmup);
    let (t0, c0, n0) = (Instant::now(), process_cpu_time(), handle.source_records());
    let c_before = handle.progress().last_checkpoint.map(|(id, _)| id);
    std::thread::sleep(measure);
    let (wall, cpu, n1) = (
        t0.elapsed(),
        process_cpu_time().saturating_sub(c0),
        handle.source_records(),
    );
    let c_after = handle.progress().last_checkpoint.map(|(id, _)| id);
    handle.cancel();
    let report = handle.join().expect("benchmark job");
    assert!(
        report.failures.is_empty(),
        "benchmark job failed: {:?}",
        report.failures
    );
    Measured {
        events: n1 - n0,
        wall,
        cpu,
        checkpoints: (c_after.map_or(0, CheckpointId::get) - c_before.map_or(0, CheckpointId::get)) as usize,
    }
}

/// Medians of one case at one checkpoint setting, as a table row.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    /// `none` or `1 s`.
    pub label: &'static str,
    /// Events/s (wall).
    pub rate: f64,
    /// Events/s per core (CPU time).
    pub per_core: f64,
    /// Checkpoints completed during the measured interval.
    pub taken: f64,
    /// Events/s lost against no checkpoints, in % (empty for the baseline).
    pub overhead: String,
    /// Extra CPU time per event against no checkpoints, in % (empty for the baseline).
    pub overhead_cpu: String,
}

/// Measures one case `runs` times without and with checkpoints every second, alternating
/// which goes first (so neither always runs on a warmer process), and returns the baseline
/// row and the checkpointed row with its overhead.
pub fn with_and_without_checkpoints(
    runs: usize,
    mut measure: impl FnMut(Option<Duration>) -> Measured,
) -> [CheckpointRow; 2] {
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut order = [(None, &mut without), (Some(Duration::from_secs(1)), &mut with)];
        if run % 2 == 1 {
            order.reverse();
        }
        for (checkpoint, out) in order {
            out.push(measure(checkpoint));
        }
    }
    let rate = |v: &[Measured]| median(v.iter().map(Measured::rate).collect());
    let per_core = |v: &[Measured]| median(v.iter().map(Measured::rate_per_core).collect());
    let taken = |v: &[Measured]| median(v.iter().map(|m| m.checkpoints as f64).collect());
    let (base, base_cpu) = (rate(&without), per_core(&without));
    [
        CheckpointRow {
            label: "none",
            rate: base,
            per_core: base_cpu,
            taken: taken(&without),
            overhead: String::new(),
            overhead_cpu: String::new(),
        },
        CheckpointRow {
            label: "1 s",
            rate: rate(&with),
            per_core: per_core(&with),
            taken: taken(&with),
            overhead: format!("{:.1}", 100.0 * (1.0 - rate(&with) / base)),
            overhead_cpu: format!("{:.1}", 100.0 * (base_cpu / per_core(&with) - 1.0)),
        },
    ]
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Reads a number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
