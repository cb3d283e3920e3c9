//! The payments example's command line and its runs: a drill (the job in child processes with
//! injected failures), one run in this process, or a verification of committed output.
//! `examples/payments.rs` parses these flags (with the program's name, version and about) and
//! calls [`main`].

use super::domain::{self, thousands};
use super::generator::Workload;
use super::pipeline::{self, JobSettings};
use super::report::{self, ProgressView, Snapshot};
use super::savepoints::{self, SavepointPlan};
use super::{audit, drill, kafka, rescale};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

// The flags. No doc comment on the struct: flattened into the example's parser, it would
// replace the program's about text.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of requests to generate (payments, client retries and refunds).
    #[arg(long, default_value_t = 500_000, value_parser = at_least_one, allow_negative_numbers = true)]
    pub events: u64,

    /// Seed of the generator and of the drill's failure plan.
    #[arg(long, default_value_t = 42, value_parser = seed, allow_negative_numbers = true)]
    pub seed: u64,

    /// Parallelism of every step (the source always has 8 splits).
    #[arg(long, default_value_t = 2, value_parser = parallelism, allow_negative_numbers = true)]
    pub parallelism: u64,

    /// Requests per second in total [default: as fast as possible].
    #[arg(long, value_parser = positive_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Fraud rule changes per second on the rules stream [default: the whole schedule at
    /// once]. A slow rules stream makes `authorize` hold payments back until their rules are
    /// published.
    #[arg(long, value_parser = positive_rate, allow_negative_numbers = true)]
    pub rules_rate: Option<f64>,

    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = at_least_one, allow_negative_numbers = true)]
    pub checkpoint_ms: u64,

    /// Checkpoint directory [default: a temporary directory]. Requires --output-dir; with both,
    /// the job is resumable: run it again with the same flags after any crash and it continues
    /// from its latest completed checkpoint.
    #[arg(long, requires = "output_dir", conflicts_with = "checkpoint_storage")]
    pub checkpoint_dir: Option<PathBuf>,

    /// Checkpoint storage as a directory or an object store URL: s3://bucket/prefix (endpoint
    /// and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION), gs://bucket/prefix, az://container/prefix. Without --output-dir the
    /// location must not hold an earlier run's checkpoints.
    #[arg(long, value_name = "URL")]
    pub checkpoint_storage: Option<String>,

    /// A second site's checkpoint storage (directory or URL): every completed checkpoint is
    /// copied there, verified, and the sinks commit a checkpoint only once the replica holds
    /// it. Start the job with this as --checkpoint-storage to recover at the second site.
    #[arg(long, value_name = "URL")]
    pub replica_storage: Option<String>,

    /// Cross-site disaster-recovery drill: the job runs at site A (--checkpoint-storage, or a
    /// temporary directory) replicating to site B (--replica-storage, or a temporary
    /// directory); mid-run every process at site A is killed and site A's checkpoints and
    /// state are deleted; the job starts at site B from the replica. Reports RPO and RTO;
    /// the audit must find 0 lost and 0 duplicated events.
    #[arg(long, conflicts_with_all = ["worker", "verify_only", "checkpoint_dir"])]
    pub dr_drill: bool,

    /// Directory of the committed output: decisions/, refunds/, fraud-alerts/, settlements/,
    /// late/ and workload.json [default: a temporary directory, deleted at exit].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,

    /// Keep keyed state in memory instead of RocksDB.
    #[arg(long)]
    pub memory: bool,

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
    pub drill: u64,

    /// Verify the committed output against the sequential model (the default).
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,

    /// Skip the verification.
    #[arg(long, overrides_with = "verify")]
    pub no_verify: bool,

    /// Only verify the committed output in --output-dir (no job runs); the workload is read
    /// from its workload.json. Exits non-zero on any difference.
    #[arg(long, requires = "output_dir", conflicts_with_all = ["no_verify", "checkpoint_dir", "checkpoint_storage"])]
    pub verify_only: bool,

    /// Run against Kafka at these brokers (host:port[,host:port]): the requests are loaded into
    /// a topic, read with the Kafka source, and every output is committed to its own topic
    /// through the exactly-once Kafka sink; the audit reads them back with read_committed.
    #[arg(long, value_name = "BROKERS", value_parser = brokers)]
    pub kafka: Option<String>,

    /// Topic name prefix with --kafka: topics <PREFIX>.requests, <PREFIX>.decisions, ...
    /// [default: weir-payments-<seed>-<unix time>, new topics for every run].
    #[arg(long, value_name = "PREFIX", requires = "kafka", value_parser = topic_prefix)]
    pub kafka_topics: Option<String>,

    /// Run the job on a master and N worker processes of this program on this machine
    /// (launched and supervised by the job's process). The drill then injects the failures of
    /// a cluster: kill -9 of a worker, kill -9 of the master, a worker frozen with SIGSTOP,
    /// and kill -9 of every process of the job.
    #[arg(long, value_name = "N", value_parser = workers, allow_negative_numbers = true, conflicts_with = "kafka")]
    pub workers: Option<u64>,

    /// Rescale drill: run the job in segments at these parallelisms (for example 2,3,1), each
    /// stopping gracefully at a final checkpoint after its share of the input and the next
    /// restoring it at its own parallelism; then the audit. With --workers N, on a cluster.
    #[arg(long, value_name = "LIST", value_parser = rescale::parse, conflicts_with_all = ["kafka", "dr_drill", "worker"])]
    pub rescale: Option<rescale::Steps>,

    /// Where --savepoint-after-ms and --stop-with-savepoint-after-ms write savepoints: each
    /// into a new directory DIR/savepoint-<unix ms> (printed), which can be copied anywhere.
    /// Needs --drill 0 (with --workers N, the launcher asks the cluster's master for them).
    #[arg(long, value_name = "DIR")]
    pub savepoint_dir: Option<PathBuf>,

    /// Take a savepoint N ms after the start, while the job keeps running.
    #[arg(long, value_name = "N", requires = "savepoint_dir", value_parser = at_least_one, allow_negative_numbers = true)]
    pub savepoint_after_ms: Option<u64>,

    /// Stop the job with a savepoint N ms after the start: the output up to the savepoint is
    /// committed, then the job stops. Finish the run later with --from-savepoint (the audit
    /// runs then).
    #[arg(long, value_name = "N", requires = "savepoint_dir", value_parser = at_least_one, allow_negative_numbers = true)]
    pub stop_with_savepoint_after_ms: Option<u64>,

    /// Start from the savepoint in this directory (a savepoint-<unix ms> directory, wherever
    /// it was copied). Needs checkpoint storage without completed checkpoints (a job that has
    /// checkpoints of its own resumes from those; default: a new temporary directory) and the
    /// --output-dir of the job that took the savepoint. Needs --drill 0 (with --workers N, every
    /// worker fetches its subtasks' state from the savepoint).
    #[arg(long, value_name = "PATH", requires = "output_dir")]
    pub from_savepoint: Option<PathBuf>,

    /// With --from-savepoint: drop the savepoint's state of steps this job no longer has
    /// (otherwise such a start is refused, naming the steps).
    #[arg(long, requires = "from_savepoint")]
    pub allow_non_restored_state: bool,

    /// Serve the job's status page and API on this address (for example 127.0.0.1:8081; open
    /// it in a browser, or use `weir status --job http://ADDR`). With --workers N, the cluster's
    /// master process serves it.
    #[arg(long, value_name = "ADDR")]
    pub status_addr: Option<std::net::SocketAddr>,

    /// A Weir configuration file (TOML; see docs/configuration.md), with WEIR_* variables over
    /// it and these flags over both: job.parallelism, checkpoint.interval, checkpoint.storage,
    /// checkpoint.replica and state.backend set the matching flags when they are not given; the
    /// other keys (restart, checkpoint timeout and retention, cluster) apply to the job.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The configuration keys left for the job once the flags took theirs.
    #[arg(skip)]
    pub configuration: weir_engine::config::layered::Configuration,
    /// Serve the job's metrics for Prometheus at http://ADDR/metrics (for example
    /// 127.0.0.1:9464) while it runs; see docs/metrics.md. With --workers N the master serves
    /// at ADDR and worker i (0-based) at ADDR's port + 1 + i.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Internal: run as a drill's child process (JSON lines on stdout).
    #[arg(long, hide = true, requires_all = ["checkpoint_storage", "output_dir"])]
    pub worker: bool,

    /// Internal: failures a child arms (`panic@POSITION,abort@POSITION`).
    #[arg(long, hide = true, requires = "worker")]
    pub inject: Option<String>,

    /// Internal: a child stops the job gracefully once it has read this far.
    #[arg(long, hide = true, requires = "worker")]
    pub stop_at_position: Option<u64>,

    /// Internal: a child's RocksDB state directory.
    #[arg(long, hide = true, requires = "worker")]
    pub state_dir: Option<PathBuf>,
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

/// With `WEIR_LOG` set, prints what the drill's child processes logged (their stderr goes to
/// `workers.log` in the scratch directory, which is deleted at exit).
fn show_child_logs(scratch: &Path) {
    if std::env::var_os("WEIR_LOG").is_some() {
        if let Ok(text) = std::fs::read_to_string(scratch.join("workers.log")) {
            eprint!("{text}");
        }
    }
}

/// Runs the example with parsed flags; prints the error and fails on any.
pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the example: a drill, one run, or a verification.
pub fn run(args: Args) -> anyhow::Result<()> {
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
    let replica = match &args.replica_storage {
        Some(location) => Some((location.clone(), open_storage(location)?)),
        None => None,
    };
    if args.worker {
        let location = args.checkpoint_storage.clone().expect("required by clap");
        let settings = JobSettings {
            workload,
            parallelism: args.parallelism as usize,
            rate: args.rate,
            rules_rate: args.rules_rate,
            checkpoint_storage: open_storage(&location)?,
            checkpoint_location: location,
            replica,
            checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
            output_dir: args.output_dir.clone().expect("required by clap"),
            state_dir: if args.memory { None } else { args.state_dir.clone() },
            kafka: kafka.clone(),
            workers: None,
            from_savepoint: args.from_savepoint.clone(),
            allow_non_restored_state: args.allow_non_restored_state,
            savepoints: savepoint_plan(&args),
            stop_at_position: args.stop_at_position,
            status_addr: args.status_addr,
            config_file: args.config.clone(),
            configuration: args.configuration.clone(),
            metrics_addr: args.metrics_addr,
        };
        let faults = drill::parse_injections(args.inject.as_deref().unwrap_or(""))?;
        return drill::worker(&settings, faults);
    }
    if args.verify_only {
        let dir = args.output_dir.as_deref().expect("required by clap");
        return verify(dir, kafka.as_ref(), None, None);
    }

    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let site = if args.dr_drill { "site-a/" } else { "" };
    let location = match (&args.checkpoint_storage, &args.checkpoint_dir) {
        (Some(url), _) => url.clone(),
        (None, Some(dir)) => dir.display().to_string(),
        (None, None) => scratch.path().join(format!("{site}checkpoints")).display().to_string(),
    };
    let replica = match (replica, args.dr_drill) {
        (None, true) => {
            let location = scratch.path().join("site-b/checkpoints").display().to_string();
            Some((location.clone(), open_storage(&location)?))
        }
        (r, _) => r,
    };
    let storage = open_storage(&location)?;
    if args.output_dir.is_none() && pipeline::latest_checkpoint(storage.as_ref()).is_some() {
        bail!(
            "{location} holds checkpoints of an earlier run: resume it with that run's --output-dir, \
             or use a new location"
        );
    }
    let settings = JobSettings {
        workload,
        parallelism: args.parallelism as usize,
        rate: args.rate,
        rules_rate: args.rules_rate,
        checkpoint_storage: storage,
        checkpoint_location: location,
        replica,
        checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
        output_dir: args.output_dir.clone().unwrap_or_else(|| scratch.path().join("output")),
        state_dir: (!args.memory).then(|| scratch.path().join(format!("{site}state"))),
        kafka: kafka.clone(),
        workers: args.workers.map(|n| n as u32),
        from_savepoint: args.from_savepoint.clone(),
        allow_non_restored_state: args.allow_non_restored_state,
        savepoints: savepoint_plan(&args),
        stop_at_position: None,
        status_addr: args.status_addr,
        config_file: args.config.clone(),
        configuration: args.configuration.clone(),
        metrics_addr: args.metrics_addr,
    };
    let with_savepoints = !settings.savepoints.is_empty() || settings.from_savepoint.is_some();
    if with_savepoints && args.rescale.is_some() {
        bail!("--rescale takes no savepoint flags: its segments stop at final checkpoints of their own");
    }
    if with_savepoints && (args.drill != 0 || args.dr_drill) {
        bail!(
            "--savepoint-dir and --from-savepoint run the job without injected failures: add --drill 0 (with or \
             without --workers), and no --dr-drill"
        );
    }
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
        settings.checkpoint_location,
        settings.output_dir.display(),
        if args.output_dir.is_none() {
            " (temporary; pass --output-dir to keep it)"
        } else {
            ""
        }
    );

    let view = ProgressView::new(workload.events);
    if let Some(rescale::Steps(steps)) = &args.rescale {
        println!(
            "rescale drill: parallelism {}, each segment a child process{}",
            steps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" -> "),
            args.workers
                .map(|n| format!(" on a master and {n} worker processes"))
                .unwrap_or_default()
        );
        let outcome = rescale::run(&settings, steps, scratch.path(), &view);
        view.finish();
        show_child_logs(scratch.path());
        let (segments, _) = outcome?;
        println!("{}", rescale::table(&segments));
        return verify(&settings.output_dir, kafka.as_ref(), None, None);
    }
    if args.dr_drill {
        let Some((b_location, b_storage)) = settings.replica.clone() else {
            unreachable!("the drill always has a replica")
        };
        if pipeline::latest_checkpoint(b_storage.as_ref()).is_some() {
            bail!("site B's storage {b_location} already holds checkpoints: give the drill an empty one");
        }
        let at_b = JobSettings {
            checkpoint_location: b_location,
            checkpoint_storage: b_storage,
            replica: None,
            state_dir: settings.state_dir.as_ref().map(|_| scratch.path().join("site-b/state")),
            ..settings.clone()
        };
        let outcome = super::dr::run(&settings, &at_b, scratch.path(), &view);
        view.finish();
        show_child_logs(scratch.path());
        let outcome = outcome?;
        return verify(&settings.output_dir, kafka.as_ref(), None, Some(&outcome));
    }
    // A cluster's processes are this program's children: with --workers even an undisturbed
    // run goes through the drill's supervisor.
    let drill_outcome = if args.drill == 0 && args.workers.is_none() {
        if let Some(stopped) = run_in_process(&settings, &view)? {
            println!("{stopped}");
            return Ok(());
        }
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
        show_child_logs(scratch.path());
        let outcome = outcome?;
        if let Some((id, location)) = &outcome.stopped_with_savepoint {
            println!("{}", savepoints::stopped_message(*id, location));
            return Ok(());
        }
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
    verify(&settings.output_dir, kafka.as_ref(), drill_outcome.as_ref(), None)
}

/// The checkpoint storage at `location` (a directory or an object store URL), checked: a
/// missing bucket or rejected credentials stop the example before anything runs.
fn open_storage(location: &str) -> anyhow::Result<std::sync::Arc<dyn weir_engine::checkpoint::CheckpointStorage>> {
    let storage = weir_object_storage::open(location).with_context(|| format!("checkpoint storage {location}"))?;
    storage
        .validate()
        .with_context(|| format!("checkpoint storage {location}"))?;
    Ok(storage)
}

/// Refuses to write a fresh job's output over committed output of an earlier one (resume it
/// with its --checkpoint-dir instead), and records the workload in the output directory.
fn prepare_output_dir(s: &JobSettings) -> anyhow::Result<()> {
    let has_output = s.output_dir.join(audit::MANIFEST).exists();
    // A start from a savepoint continues the output of the job that took it.
    if has_output && s.from_savepoint.is_none() && pipeline::latest_checkpoint(s.checkpoint_storage.as_ref()).is_none()
    {
        let committed = weir_engine::sink::file::committed_files(s.output_dir.join(domain::DECISIONS_DIR))
            .map(|f| !f.is_empty())
            .unwrap_or(false);
        if committed {
            bail!(
                "{} already holds committed output and {} has no checkpoint to resume from; \
                 resume with the job's --checkpoint-dir or use an empty --output-dir",
                s.output_dir.display(),
                s.checkpoint_location
            );
        }
    }
    audit::claim_output_dir(&s.output_dir, &s.workload)
}

/// The savepoints the flags ask for.
fn savepoint_plan(args: &Args) -> SavepointPlan {
    SavepointPlan {
        dir: args.savepoint_dir.clone(),
        after: args.savepoint_after_ms.map(Duration::from_millis),
        stop_after: args.stop_with_savepoint_after_ms.map(Duration::from_millis),
    }
}

/// Runs the job once in this process with a progress bar, and prints the engine's report;
/// when the job stopped before the end of its input (with a savepoint, or at a final
/// checkpoint on SIGTERM or Ctrl-C), returns what to tell the user instead of auditing.
fn run_in_process(s: &JobSettings, view: &ProgressView) -> anyhow::Result<Option<String>> {
    let base = savepoints::resume_point(s);
    match (
        base,
        pipeline::latest_checkpoint(s.checkpoint_storage.as_ref()),
        &s.from_savepoint,
    ) {
        (Some((id, position)), Some(_), _) => {
            view.log(format!("resuming from checkpoint {id} (event {})", thousands(position)))
        }
        (Some((id, position)), None, Some(dir)) => view.log(format!(
            "starting from savepoint {id} (event {}) in {}",
            thousands(position),
            dir.display()
        )),
        _ => {}
    }
    let started = Instant::now();
    let handle = pipeline::build(s)?.start()?;
    // SIGTERM or Ctrl-C stops the job at a final checkpoint; a second one cancels it.
    weir_engine::runtime::stop_on_termination(&handle, Duration::from_secs(60))?;
    let mut schedule = s.savepoints.schedule();
    while !handle.is_finished() {
        schedule.run_due(&handle, started.elapsed(), &mut |line| view.log(line))?;
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
    if let Some(sp) = &report.stopped_with_savepoint {
        return Ok(Some(savepoints::stopped_message(sp.id, &sp.location)));
    }
    if let Some(id) = report.stopped_at {
        return Ok(Some(format!(
            "the job stopped at checkpoint {id} (SIGTERM or Ctrl-C): the output up to it is committed; finish the \
             run with the same --checkpoint-dir and --output-dir (the audit runs then)"
        )));
    }
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
    Ok(None)
}

/// Verifies `output_dir`, prints the result (and the drill report), fails on any difference.
fn verify(
    output_dir: &Path,
    kafka: Option<&kafka::KafkaSettings>,
    drill_outcome: Option<&drill::DrillOutcome>,
    dr_outcome: Option<&super::dr::DrOutcome>,
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
    if let Some(d) = dr_outcome {
        println!();
        println!("{}", super::dr::report(d, a.events_lost(), a.events_duplicated()));
    }
    if !a.passed() {
        bail!("verification failed: the committed output differs from the sequential model");
    }
    Ok(())
}
