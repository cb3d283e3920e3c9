//! Card payments, exactly once, through a disaster-recovery drill.
//!
//! A seeded generator produces payment requests (with client retries, some late) and refund
//! requests. The Weir job deduplicates them by idempotency key, authorizes payments against
//! each customer's credit in RocksDB keyed state (with event-time fraud rules), carries out or
//! rejects refunds, settles every merchant per one-minute event-time window, and commits
//! decisions, refund results, fraud alerts, settlements and one record per dropped client
//! retry to exactly-once file sinks.
//!
//! By default it runs a drill: the job runs as a child process, and three failures are injected
//! at seeded random moments: a panic inside a subtask (the engine recovers in-process), a
//! `kill -9` of the process, and a crash right after a checkpoint became durable and before
//! the sinks committed it (the supervisor restarts the process each time). Then it verifies
//! the committed output against a sequential model of the same rules over the same input:
//! every payment decided exactly once, identical decisions, refunds, alerts and settlements,
//! exactly the model's dropped retries (an input event the engine processed twice would be
//! dropped by deduplication and show up only there), money conserved. It prints the verification and the drill report (RPO, RTO, throughput)
//! and exits non-zero on any difference.
//!
//! ```text
//! cargo run --release --example payments                            # drill with 3 failures + verify
//! cargo run --release --example payments -- --drill 10 --events 1000000
//! cargo run --release --example payments -- --drill 0               # one run, no failures
//! cargo run --release --example payments -- --verify-only --output-dir out/
//! ```
//!
//! The modules are in `examples/payments/`: `domain.rs` (events and outputs), `rules.rs`
//! (authorization, fraud and refund rules), `generator.rs`, `pipeline.rs` (the Weir job),
//! `model.rs` (the sequential model), `audit.rs` (verification), `drill.rs` (supervisor and
//! failure injection), `report.rs` (progress bar and summary tables).

#[path = "payments/audit.rs"]
mod audit;
#[path = "payments/domain.rs"]
mod domain;
#[path = "payments/drill.rs"]
mod drill;
#[path = "payments/generator.rs"]
mod generator;
#[path = "payments/kafka.rs"]
mod kafka;
#[path = "payments/model.rs"]
mod model;
#[path = "payments/pipeline.rs"]
mod pipeline;
#[path = "payments/report.rs"]
mod report;
#[path = "payments/rules.rs"]
mod rules;

use anyhow::{bail, Context};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use domain::thousands;
use generator::Workload;
use pipeline::JobSettings;
use report::{ProgressView, Snapshot};

/// Card payments with retries, refunds, fraud rules and settlement, exactly once, through a
/// disaster-recovery drill.
///
/// Without flags: runs the job as a child process, injects three failures (a panic in a
/// subtask, a kill -9, a crash between checkpoint and commit), then verifies the committed
/// output against a sequential model and prints the drill report. Exits non-zero if the
/// output differs from the model in any way.
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Args {
    /// Number of requests to generate (payments, client retries and refunds).
    #[arg(long, default_value_t = 500_000, value_parser = at_least_one, allow_negative_numbers = true)]
    events: u64,

    /// Seed of the generator and of the drill's failure plan.
    #[arg(long, default_value_t = 42, value_parser = seed, allow_negative_numbers = true)]
    seed: u64,

    /// Parallelism of every step (the source always has 8 splits).
    #[arg(long, default_value_t = 2, value_parser = parallelism, allow_negative_numbers = true)]
    parallelism: u64,

    /// Requests per second in total [default: as fast as possible].
    #[arg(long, value_parser = positive_rate, allow_negative_numbers = true)]
    rate: Option<f64>,

    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = at_least_one, allow_negative_numbers = true)]
    checkpoint_ms: u64,

    /// Checkpoint directory [default: a temporary directory]. Requires --output-dir; with both,
    /// the job is resumable: run it again with the same flags after any crash and it continues
    /// from its latest completed checkpoint.
    #[arg(long, requires = "output_dir")]
    checkpoint_dir: Option<PathBuf>,

    /// Directory of the committed output: decisions/, refunds/, fraud-alerts/, settlements/,
    /// late/ and workload.json [default: a temporary directory, deleted at exit].
    #[arg(long)]
    output_dir: Option<PathBuf>,

    /// Keep keyed state in memory instead of RocksDB.
    #[arg(long)]
    memory: bool,

    /// Disaster-recovery drill: run the job as a child process and inject N failures of mixed
    /// kinds (panic in a subtask, kill -9, crash after checkpoint before commit) at seeded
    /// random moments. 0 runs the job once, in this process, without failures.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = failures,
        allow_negative_numbers = true
    )]
    drill: u64,

    /// Verify the committed output against the sequential model (the default).
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,

    /// Skip the verification.
    #[arg(long, overrides_with = "verify")]
    no_verify: bool,

    /// Only verify the committed output in --output-dir (no job runs); the workload is read
    /// from its workload.json. Exits non-zero on any difference.
    #[arg(long, requires = "output_dir", conflicts_with_all = ["no_verify", "checkpoint_dir"])]
    verify_only: bool,

    /// Run against Kafka at these brokers (host:port[,host:port]): the requests are loaded into
    /// a topic, read with the Kafka source, and every output is committed to its own topic
    /// through the exactly-once Kafka sink; the audit reads them back with read_committed.
    #[arg(long, value_name = "BROKERS", value_parser = brokers)]
    kafka: Option<String>,

    /// Topic name prefix with --kafka: topics <PREFIX>.requests, <PREFIX>.decisions, ...
    /// [default: weir-payments-<seed>-<unix time>, new topics for every run].
    #[arg(long, value_name = "PREFIX", requires = "kafka", value_parser = topic_prefix)]
    kafka_topics: Option<String>,

    /// Run the job on a master and N worker processes of this program on this machine
    /// (launched and supervised by the job's process). The drill then injects the failures of
    /// a cluster: kill -9 of a worker, kill -9 of the master, a worker frozen with SIGSTOP,
    /// and kill -9 of every process of the job.
    #[arg(long, value_name = "N", value_parser = workers, allow_negative_numbers = true, conflicts_with = "kafka")]
    workers: Option<u64>,

    /// Internal: run as a drill's child process (JSON lines on stdout).
    #[arg(long, hide = true, requires_all = ["checkpoint_dir", "output_dir"])]
    worker: bool,

    /// Internal: failures a child arms (`panic@POSITION,abort@POSITION`).
    #[arg(long, hide = true, requires = "worker")]
    inject: Option<String>,

    /// Internal: a child's RocksDB state directory.
    #[arg(long, hide = true, requires = "worker")]
    state_dir: Option<PathBuf>,
}

/// A non-empty broker list.
fn brokers(s: &str) -> Result<String, String> {
    let ok = !s.trim().is_empty()
        && s.split(',').all(|b| {
            b.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a broker list: expected host:port[,host:port...]"))
    }
}

/// A prefix that makes valid Kafka topic names.
fn topic_prefix(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} cannot start Kafka topic names: use 1-200 of a-z A-Z 0-9 . _ -"
        ))
    }
}

/// A whole number in `min..=max`, with a message that says so.
fn whole(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == u64::MAX && min == 0 => Err(format!("must be a non-negative whole number, got {s}")),
        _ if max == u64::MAX => Err(format!("must be a whole number of at least {min}, got {s}")),
        _ => Err(format!("must be a whole number from {min} to {max}, got {s}")),
    }
}

fn workers(s: &str) -> Result<u64, String> {
    whole(s, 1, 64)
}

fn at_least_one(s: &str) -> Result<u64, String> {
    whole(s, 1, u64::MAX)
}

fn parallelism(s: &str) -> Result<u64, String> {
    whole(s, 1, 128)
}

fn failures(s: &str) -> Result<u64, String> {
    whole(s, 0, 100)
}

fn seed(s: &str) -> Result<u64, String> {
    whole(s, 0, u64::MAX)
}

fn positive_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if r > 0.0 && r.is_finite() {
        Ok(r)
    } else {
        Err(format!("must be a positive number of events per second, got {s}"))
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let workload = Workload {
        events: args.events,
        seed: args.seed,
    };
    let kafka = args.kafka.clone().map(|brokers| kafka::KafkaSettings {
        brokers,
        prefix: args.kafka_topics.clone().unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!("weir-payments-{}-{now}", args.seed)
        }),
    });
    if args.worker {
        let settings = JobSettings {
            workload,
            parallelism: args.parallelism as usize,
            rate: args.rate,
            checkpoint_dir: args.checkpoint_dir.clone().expect("required by clap"),
            checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
            output_dir: args.output_dir.clone().expect("required by clap"),
            state_dir: if args.memory { None } else { args.state_dir.clone() },
            kafka: kafka.clone(),
            workers: None,
        };
        let faults = drill::parse_injections(args.inject.as_deref().unwrap_or(""))?;
        return drill::worker(&settings, faults);
    }
    if args.verify_only {
        let dir = args.output_dir.as_deref().expect("required by clap");
        return verify(dir, kafka.as_ref(), None);
    }

    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let settings = JobSettings {
        workload,
        parallelism: args.parallelism as usize,
        rate: args.rate,
        checkpoint_dir: args
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| scratch.path().join("checkpoints")),
        checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
        output_dir: args.output_dir.clone().unwrap_or_else(|| scratch.path().join("output")),
        state_dir: (!args.memory).then(|| scratch.path().join("state")),
        kafka: kafka.clone(),
        workers: args.workers.map(|n| n as u32),
    };
    prepare_output_dir(&settings)?;
    if let Some(k) = &kafka {
        k.create_topics(&domain::OUTPUTS, settings.parallelism)?;
        let started = Instant::now();
        let n = k.load_requests(&workload, scratch.path())?;
        println!(
            "kafka: {} requests in {} ({:.1} s to load), outputs to {}.{{{}}}",
            thousands(n),
            k.topic(kafka::REQUESTS),
            started.elapsed().as_secs_f64(),
            k.prefix,
            domain::OUTPUTS.join(",")
        );
    }
    println!(
        "payments: {} requests (seed {}), parallelism {}, {} state, checkpoint every {} ms{}",
        thousands(workload.events),
        workload.seed,
        settings.parallelism,
        if args.memory { "in-memory" } else { "RocksDB" },
        args.checkpoint_ms,
        args.rate.map(|r| format!(", {r} requests/s")).unwrap_or_default()
    );
    println!(
        "  checkpoints: {}\n  output:      {}{}",
        settings.checkpoint_dir.display(),
        settings.output_dir.display(),
        if args.output_dir.is_none() {
            " (temporary; pass --output-dir to keep it)"
        } else {
            ""
        }
    );

    let view = ProgressView::new(workload.events);
    // A cluster's processes are this program's children: with --workers even an undisturbed
    // run goes through the drill's supervisor.
    let drill_outcome = if args.drill == 0 && args.workers.is_none() {
        run_in_process(&settings, &view)?;
        None
    } else {
        let planned = match args.workers {
            Some(_) => drill::cluster_plan(args.drill as usize, workload.seed, workload.events),
            None => drill::plan(args.drill as usize, workload.seed, workload.events),
        };
        // A worker without progress for this long is stuck (slow rates read rarely).
        let stall = Duration::from_secs_f64(args.rate.map_or(0.0, |r| 20.0 / r).max(120.0));
        println!(
            "drill: {} failures planned, the job runs as a child process{}",
            planned.len(),
            args.workers
                .map(|n| format!(" on a master and {n} worker processes"))
                .unwrap_or_default()
        );
        let outcome = drill::supervise(&settings, planned, scratch.path(), &view, stall);
        view.finish();
        let outcome = outcome?;
        println!(
            "job finished: {} events in {:.1} s ({} processes, {} checkpoints)",
            thousands(workload.events),
            outcome.wall.as_secs_f64(),
            outcome.processes,
            outcome.checkpoints.len()
        );
        Some(outcome)
    };
    if args.no_verify {
        println!("verification skipped (--no-verify)");
        if let Some(d) = &drill_outcome {
            println!("\n{}", report::drill_report(d, None, workload.events));
        }
        return Ok(());
    }
    verify(&settings.output_dir, kafka.as_ref(), drill_outcome.as_ref())
}

/// Refuses to write a fresh job's output over committed output of an earlier one (resume it
/// with its --checkpoint-dir instead), and records the workload in the output directory.
fn prepare_output_dir(s: &JobSettings) -> anyhow::Result<()> {
    let has_output = s.output_dir.join(audit::MANIFEST).exists();
    if has_output && pipeline::latest_checkpoint(&s.checkpoint_dir).is_none() {
        let committed = weir::engine::sink::file::committed_files(s.output_dir.join(domain::DECISIONS_DIR))
            .map(|f| !f.is_empty())
            .unwrap_or(false);
        if committed {
            bail!(
                "{} already holds committed output and {} has no checkpoint to resume from; \
                 resume with the job's --checkpoint-dir or use an empty --output-dir",
                s.output_dir.display(),
                s.checkpoint_dir.display()
            );
        }
    }
    audit::claim_output_dir(&s.output_dir, &s.workload)
}

/// Runs the job once in this process with a progress bar, and prints the engine's report.
fn run_in_process(s: &JobSettings, view: &ProgressView) -> anyhow::Result<()> {
    let base = pipeline::latest_checkpoint(&s.checkpoint_dir);
    if let Some((id, position)) = base {
        view.log(format!("resuming from checkpoint {id} (event {})", thousands(position)));
    }
    let started = Instant::now();
    let handle = pipeline::build(s).start()?;
    while !handle.is_finished() {
        let p = handle.progress();
        view.update(&Snapshot {
            position: base.map(|b| b.1).unwrap_or(0) + p.source_records,
            processed: p.source_records,
            checkpoint: p.last_checkpoint,
            restarts: p.restarts,
            running: p.running,
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    view.finish();
    let report = handle.join()?;
    let secs = started.elapsed().as_secs_f64();
    println!("{report}");
    let late = report
        .operator("settle")
        .and_then(|o| o.counters.get("late_records").copied())
        .unwrap_or(0);
    if late > 0 {
        bail!("the settlement windows dropped {late} late records");
    }
    println!(
        "throughput: {} events/s ({} events in {secs:.1} s, {} checkpoints)",
        thousands((s.workload.events.saturating_sub(base.map(|b| b.1).unwrap_or(0)) as f64 / secs) as u64),
        thousands(s.workload.events),
        report.checkpoints.len()
    );
    Ok(())
}

/// Verifies `output_dir`, prints the result (and the drill report), fails on any difference.
fn verify(
    output_dir: &Path,
    kafka: Option<&kafka::KafkaSettings>,
    drill_outcome: Option<&drill::DrillOutcome>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let a = match kafka {
        None => audit::verify(output_dir)?,
        Some(k) => {
            let topics = kafka::KafkaOutput {
                settings: k,
                aborted_copies: Default::default(),
            };
            let a = audit::verify_output(output_dir, &topics)?;
            println!(
                "\nread back from Kafka with read_committed: {}.{{{}}}",
                k.prefix,
                domain::OUTPUTS.join(",")
            );
            let aborted = topics.aborted_copies.get();
            if aborted > 0 {
                println!(
                    "  {aborted} records of aborted transactions were left out: this broker shows them to \
                     read_committed consumers (Kafka does not); the sink's epoch headers identify them"
                );
            }
            a
        }
    };
    println!();
    println!("{}", report::business_summary(&a));
    println!();
    println!("{a}");
    println!("  (verified in {:.1} s)", started.elapsed().as_secs_f64());
    if let Some(d) = drill_outcome {
        println!();
        println!("{}", report::drill_report(d, Some(&a), a.workload.events));
        if d.late_records > 0 {
            bail!("the settlement windows counted {} late records", d.late_records);
        }
    }
    if !a.passed() {
        bail!("verification failed: the committed output differs from the sequential model");
    }
    Ok(())
}
