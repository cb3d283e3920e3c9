//! Command line of the recovery benchmark (the example and `cargo bench --bench recovery`).

use super::report::{self, Row};
use super::run::{self, Backend, Failure, RunConfig, Timing};
use super::workload::JobSpec;
use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

/// Recovery time of a stateful Weir job: runs a keyed job at a steady input rate, injects a
/// failure, and measures detection, restore, replay and back-to-normal (RTO), and checks that
/// no event was lost or committed twice (RPO).
///
/// Modes: `--quick` (10 MB, 1 s checkpoints, RocksDB, panic and kill, parallelism 1; a few
/// minutes); no mode flag: the headline figures (100 MB and 1 GB of RocksDB state, 1 s
/// checkpoints, panic and kill; ~15 min); `--grid`: the whole grid (10 MB, 100 MB, 1 GB ×
/// 0.5/1/5 s × RocksDB/memory × panic/kill × parallelism 1/2; hours). Any of the list flags
/// below overrides that dimension of the mode's grid.
#[derive(Parser, Debug)]
#[command(name = "recovery")]
pub struct Args {
    /// Small grid with short windows: finishes in a few minutes.
    #[arg(long, conflicts_with = "grid")]
    pub quick: bool,
    /// The full parameter grid (takes hours).
    #[arg(long)]
    pub grid: bool,
    /// Keyed state sizes, MiB (1 KiB of state per key).
    #[arg(long, value_delimiter = ',')]
    pub state_mb: Vec<u64>,
    /// Checkpoint intervals, ms.
    #[arg(long, value_delimiter = ',')]
    pub checkpoint_ms: Vec<u64>,
    /// State backends.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub backend: Vec<Backend>,
    /// Failure kinds: a panicking subtask (in-process recovery) or kill -9 of the process.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub failure: Vec<Failure>,
    /// Parallelism of every step.
    #[arg(long, value_delimiter = ',')]
    pub parallelism: Vec<usize>,
    /// Input rate, events per second (all sources together).
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Runs of each grid point (the summary gives medians).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Where runs.csv, runs.json and the plots go.
    #[arg(long, default_value = "target/recovery")]
    pub out: PathBuf,
    /// Where each run keeps its state, checkpoints and output (default: OUT/work); removed
    /// after each run unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep each run's working directory.
    #[arg(long)]
    pub keep: bool,
    /// Seconds of steady input after the preload before the baseline window.
    #[arg(long)]
    pub warmup_s: Option<f64>,
    /// Seconds of the pre-failure baseline window (at least two checkpoint intervals).
    #[arg(long)]
    pub baseline_s: Option<f64>,
    /// Give up waiting for back-to-normal after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub max_recovery_s: f64,
    /// The restart strategy's delay before an in-process restore, ms.
    #[arg(long, default_value_t = 0)]
    pub restart_delay_ms: u64,
    /// Draw no plots.
    #[arg(long)]
    pub no_plot: bool,
    /// Internal: run as the worker process of a run (the job's spec as JSON).
    #[arg(long, hide = true)]
    pub worker: Option<String>,
    /// Internal: the input schedule's origin for a restarted worker.
    #[arg(long, hide = true)]
    pub origin_us: Option<u64>,
}

fn or<T: Clone>(given: &[T], default: &[T]) -> Vec<T> {
    if given.is_empty() {
        default.to_vec()
    } else {
        given.to_vec()
    }
}

impl Args {
    /// Every run of the chosen grid, smallest state first.
    pub fn configs(&self) -> Vec<RunConfig> {
        use Backend::*;
        use Failure::*;
        let (states, intervals, backends, parallelism): (&[u64], &[u64], &[Backend], &[usize]) = if self.quick {
            (&[10], &[1000], &[Rocksdb], &[1])
        } else if self.grid {
            (&[10, 100, 1024], &[500, 1000, 5000], &[Rocksdb, Memory], &[1, 2])
        } else {
            (&[100, 1024], &[1000], &[Rocksdb], &[1])
        };
        let mut out = Vec::new();
        for state_mb in or(&self.state_mb, states) {
            for backend in or(&self.backend, backends) {
                for checkpoint_ms in or(&self.checkpoint_ms, intervals) {
                    for parallelism in or(&self.parallelism, parallelism) {
                        for failure in or(&self.failure, &[Panic, Kill]) {
                            for repetition in 0..self.repeat.max(1) {
                                out.push(RunConfig {
                                    state_mb,
                                    checkpoint_ms,
                                    backend,
                                    failure,
                                    parallelism,
                                    rate: self.rate,
                                    repetition,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn timing(&self) -> Timing {
        let (warmup, baseline) = if self.quick { (1.0, 3.0) } else { (3.0, 6.0) };
        Timing {
            warmup: Duration::from_secs_f64(self.warmup_s.unwrap_or(warmup)),
            baseline: Duration::from_secs_f64(self.baseline_s.unwrap_or(baseline)),
            max_recovery: Duration::from_secs_f64(self.max_recovery_s),
            restart_delay_ms: self.restart_delay_ms,
        }
    }
}

/// Parses the arguments (ignoring `--bench`, which `cargo bench` passes) and runs.
pub fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(std::env::args_os().filter(|a| a != "--bench"));
    if let Some(spec) = &args.worker {
        let spec: JobSpec = serde_json::from_str(spec).context("parsing the worker's job spec")?;
        return super::worker::run(&spec, args.origin_us);
    }
    let configs = args.configs();
    let timing = args.timing();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let work_root = args.work_dir.clone().unwrap_or_else(|| args.out.join("work"));
    println!(
        "recovery benchmark: {} runs, input {:.0} events/s, results in {}",
        configs.len(),
        args.rate,
        args.out.display()
    );
    if std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0") {
        println!(
            "note: RUST_BACKTRACE is set: a panicking subtask first symbolizes a backtrace, which adds \
             ~100 ms to the detection phase of panic runs (RUST_BACKTRACE=0 to leave it out)"
        );
    }
    let mut runs = Vec::new();
    let mut failed = 0;
    for (i, cfg) in configs.iter().enumerate() {
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{prefix}] {elapsed:>4} {wide_msg}").expect("valid template"),
        );
        bar.set_prefix(format!("{}/{}", i + 1, configs.len()));
        bar.enable_steady_tick(Duration::from_millis(200));
        match run::run(cfg, &timing, &work_root.join(cfg.slug()), args.keep, &bar) {
            Ok(d) => {
                bar.finish_and_clear();
                let row = Row::of(&d);
                print!(
                    "{}",
                    report::table(std::slice::from_ref(&row))
                        .lines()
                        .nth(1)
                        .unwrap_or_default()
                );
                println!();
                if !args.no_plot {
                    let path = args.out.join(format!("{}.png", cfg.slug()));
                    if let Err(e) = super::plot::draw(&d, &path) {
                        eprintln!("  plot {}: {e:#}", path.display());
                    }
                }
                if !d.audit.ok() {
                    failed += 1;
                }
                runs.push(d);
                report::write_files(&args.out, &runs)?;
            }
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("run {} failed: {e:#}", cfg.slug());
                failed += 1;
            }
        }
    }
    let rows: Vec<Row> = runs.iter().map(Row::of).collect();
    println!("\n{}", report::table(&rows));
    if args.repeat > 1 {
        println!(
            "medians over {} runs of each point:\n{}",
            args.repeat,
            report::summary(&rows)
        );
    }
    println!(
        "phases: detect = failure -> failed job stopped; restore = -> all subtasks running on restored state; \
         replay = -> input position back at the failure's; normal = -> throughput within 10 % and latency \
         <= +10 % of pre-failure for 2 s. RTO = their sum. lost/dup: checked in the committed output."
    );
    println!(
        "files: {}, {}{}",
        args.out.join("runs.csv").display(),
        args.out.join("runs.json").display(),
        if args.no_plot {
            String::new()
        } else {
            format!(", {}/*.png", args.out.display())
        }
    );
    if failed > 0 {
        anyhow::bail!("{failed} run(s) failed or lost/duplicated events");
    }
    Ok(())
}
