//! The disaster-recovery drill: a supervisor runs the job as a child process (this binary with
//! the hidden `--worker` flag) and injects failures at seeded moments:
//!
//! * **panic**: the child arms `fail::PROCESS_RECORD` with `FailAction::Panic`; a keyed subtask
//!   panics, the engine cancels the attempt and restarts in-process from the latest completed
//!   checkpoint (RTO: `RestoreStats::detect_to_running_ms` from the child's `JobReport`).
//! * **kill -9**: the supervisor kills the child with SIGKILL (`Child::kill`) and starts a new
//!   one with the same directories, which resumes from the latest completed checkpoint.
//! * **abort after checkpoint**: the child arms `fail::AFTER_METADATA` with `FailAction::Abort`:
//!   the process dies right after a checkpoint became durable and before any sink committed
//!   it; the new child commits that checkpoint's output when it restores.
//!
//! For a process-level failure, RTO is the time from the failure to the restarted child
//! reporting `progress().running == true`. Children talk to the supervisor in JSON lines on
//! stdout ([`Message`]); their stderr goes to `workers.log` in the drill's scratch directory.

use super::pipeline::{self, JobSettings};
use super::report::{ProgressView, Snapshot};
use super::savepoints;
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use weir_engine::fail::{self, FailAction, FailPoints};
use weir_engine::prelude::{CheckpointId, JobReport};
use weir_engine::source::generator::mix;

/// A kind of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    Panic,
    Kill,
    Abort,
    /// `kill -9` of one worker process of a cluster (`--workers N`).
    WorkerKill,
    /// `kill -9` of the cluster's master process.
    MasterKill,
    /// A worker process frozen with SIGSTOP past the heartbeat timeout, then thawed.
    WorkerStop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [FaultKind::Panic, FaultKind::Kill, FaultKind::Abort];
    /// The failures of a job on a master and worker processes: panics and crashes armed in
    /// the job's own process do not reach its workers.
    pub const CLUSTER: [FaultKind; 4] = [
        FaultKind::WorkerKill,
        FaultKind::MasterKill,
        FaultKind::WorkerStop,
        FaultKind::Kill,
    ];

    /// Whether the job's process recovers from it itself (the supervisor does not restart it).
    pub fn in_child(self) -> bool {
        !matches!(self, FaultKind::Kill | FaultKind::Abort)
    }

    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic in a subtask",
            FaultKind::Kill => "kill -9 of the process",
            FaultKind::Abort => "crash after checkpoint, before commit",
            FaultKind::WorkerKill => "kill -9 of a worker process",
            FaultKind::MasterKill => "kill -9 of the master process",
            FaultKind::WorkerStop => "worker frozen (SIGSTOP) past the heartbeat timeout",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::Kill => "kill",
            FaultKind::Abort => "abort",
            FaultKind::WorkerKill => "worker-kill",
            FaultKind::MasterKill => "master-kill",
            FaultKind::WorkerStop => "worker-stop",
        }
    }
}

/// A planned failure: what, and at which input position (events read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub at: u64,
}

/// `n` failures at seeded random positions between 10% and 90% of the input, in increasing
/// order, each kind at least once when `n >= 3`, in seeded random order.
pub fn plan(n: usize, seed: u64, events: u64) -> Vec<Fault> {
    plan_of(&FaultKind::ALL, n, seed, events)
}

/// [`plan`] for a job on a master and worker processes: the first failures are a worker
/// kill, a master kill and a frozen worker, then any of [`FaultKind::CLUSTER`].
pub fn cluster_plan(n: usize, seed: u64, events: u64) -> Vec<Fault> {
    plan_of(&FaultKind::CLUSTER, n, seed, events)
}

fn plan_of(kinds_of: &[FaultKind], n: usize, seed: u64, events: u64) -> Vec<Fault> {
    let r = |k: u64| mix(seed ^ 0xD5111, k);
    let first = kinds_of.len().min(3);
    let mut kinds: Vec<FaultKind> = (0..n)
        .map(|i| {
            if i < first {
                kinds_of[i]
            } else {
                kinds_of[(r(100 + i as u64) % kinds_of.len() as u64) as usize]
            }
        })
        .collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, (r(200 + i as u64) % (i as u64 + 1)) as usize);
    }
    let (lo, span) = (events / 10, events / 10 * 8);
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            // One slot per failure; a random point in the middle of the slot.
            let jitter = 0.2 + 0.6 * (r(300 + i as u64) % 1000) as f64 / 1000.0;
            let at = lo + ((i as f64 + jitter) * span as f64 / n as f64) as u64;
            Fault { kind, at }
        })
        .collect()
}

/// Parses `--inject panic@120000,abort@180000` (the in-process failures of one child).
pub fn parse_injections(s: &str) -> anyhow::Result<Vec<Fault>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (kind, at) = p
                .split_once('@')
                .ok_or_else(|| anyhow!("bad injection {p:?}: expected kind@position"))?;
            let kind = match kind {
                "panic" => FaultKind::Panic,
                "abort" => FaultKind::Abort,
                "worker-kill" => FaultKind::WorkerKill,
                "master-kill" => FaultKind::MasterKill,
                "worker-stop" => FaultKind::WorkerStop,
                _ => {
                    bail!("bad injection kind {kind:?}: expected panic, abort, worker-kill, master-kill or worker-stop")
                }
            };
            Ok(Fault {
                kind,
                at: at.parse().with_context(|| format!("bad injection position in {p:?}"))?,
            })
        })
        .collect()
}

/// A recovery as the engine measured it (`RestoreStats`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recovery {
    pub attempt: u32,
    pub checkpoint: Option<CheckpointId>,
    pub detect_to_running_ms: f64,
    pub restore_ms: f64,
    pub records_replayed: u64,
}

/// The second site's recovery point, as a child reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReplicaLag {
    pub replicated: Option<CheckpointId>,
    pub checkpoints_behind: u64,
    pub seconds_behind: f64,
}

/// What a child tells the supervisor, one JSON object per line on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// The child started; it resumes from this checkpoint (at this input position), if any.
    Started {
        pid: u32,
        checkpoint: Option<CheckpointId>,
        position: u64,
    },
    /// `JobHandle::progress()`, every 100 ms and whenever `running` or the checkpoint changes.
    Progress {
        position: u64,
        source_records: u64,
        sink_records: u64,
        running: bool,
        attempt: u32,
        restarts: u32,
        last_checkpoint: Option<CheckpointId>,
        checkpoint_age_ms: Option<u64>,
        /// With a replica: its newest checkpoint and its lag (checkpoints, seconds).
        #[serde(default)]
        replica: Option<ReplicaLag>,
    },
    /// A fail point was armed at this position.
    Armed { fault: FaultKind, position: u64 },
    /// After an in-process failure, every subtask runs again: from `checkpoint`, with
    /// `replayed` events to read again, `observed_ms` after the job went down.
    Recovered {
        attempt: u32,
        checkpoint: Option<CheckpointId>,
        replayed: Option<u64>,
        observed_ms: Option<f64>,
    },
    /// The job finished: the essentials of its `JobReport`.
    Report {
        duration_ms: f64,
        restarts: u32,
        checkpoints: Vec<CheckpointId>,
        restored_from: Option<CheckpointId>,
        recoveries: Vec<Recovery>,
        failures: Vec<String>,
        late_records: u64,
        duplicates_dropped: u64,
        /// The savepoint the job stopped with (id, location), when it did.
        #[serde(default)]
        stopped_with_savepoint: Option<(CheckpointId, String)>,
        /// The final checkpoint of a graceful stop, when the job stopped at one.
        #[serde(default)]
        stopped_at: Option<CheckpointId>,
    },
    /// Something the user should read (a savepoint taken or failed).
    Note { text: String },
}

fn emit(m: &Message) {
    let line = serde_json::to_string(m).expect("messages serialize");
    let mut out = std::io::stdout().lock();
    // A closed pipe means the supervisor is gone; the job goes on regardless.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child: runs the job, reports progress and arms the in-process failures it was given.
pub fn worker(settings: &JobSettings, mut faults: Vec<Fault>) -> anyhow::Result<()> {
    // A master or worker process of the job's cluster: it runs its part of the job (and
    // exits when the job ends); the launcher process reports to the supervisor.
    if std::env::var_os("WEIR_ROLE").is_some() {
        pipeline::build(settings)?.start()?;
        bail!("a master or worker process returned from starting its job");
    }
    faults.sort_by_key(|f| f.at);
    let mut faults = faults.into_iter().peekable();
    // The engine resumes from the latest completed checkpoint (after a restart too): the
    // input position is that checkpoint's plus what was read since (source_records counts
    // every read of this process, replays included).
    let resumed = savepoints::resume_point(settings);
    let (mut base_position, mut base_records) = (resumed.map(|(_, position)| position).unwrap_or(0), 0u64);
    emit(&Message::Started {
        pid: std::process::id(),
        checkpoint: resumed.map(|(id, _)| id),
        position: base_position,
    });
    let started = Instant::now();
    let handle = pipeline::build(settings)?.start()?;
    let mut schedule = settings.savepoints.schedule();
    let mut stop_at = settings.stop_at_position;
    let mut restarts_seen = 0u32;
    let mut position = base_position;
    // The panic armed and not yet recovered from: when the job went down, how far it had read.
    let mut panic_armed: Option<(Option<Instant>, u64)> = None;
    let mut abort_armed = false;
    let mut last_sent = (false, 0u32, None::<CheckpointId>);
    let mut last_time = Instant::now();
    while !handle.is_finished() {
        schedule.run_due(&handle, started.elapsed(), &mut |text| emit(&Message::Note { text }))?;
        let p = handle.progress();
        if let Some((down, reached)) = &mut panic_armed {
            if !p.running {
                down.get_or_insert_with(Instant::now);
            } else if p.restarts == restarts_seen {
                *reached = base_position + p.source_records.saturating_sub(base_records);
            }
        }
        if p.running && p.restarts > restarts_seen {
            restarts_seen = p.restarts;
            let restored = savepoints::resume_point(settings);
            (base_position, base_records) = (restored.map(|(_, at)| at).unwrap_or(0), p.source_records);
            if let Some((down, reached)) = panic_armed.take() {
                emit(&Message::Recovered {
                    attempt: p.attempt,
                    checkpoint: restored.map(|(id, _)| id),
                    replayed: Some(reached.saturating_sub(base_position)),
                    observed_ms: down.map(|d| d.elapsed().as_secs_f64() * 1e3),
                });
            }
        }
        // While the job is not running (between attempts, at the end), `source_records` may
        // count the last attempt twice: keep the last position seen running.
        if p.running {
            position = base_position + p.source_records.saturating_sub(base_records);
        }
        // One failure at a time: after a panic, wait for the recovery; after arming a crash,
        // arm nothing more (the process dies at the next checkpoint; the supervisor passes
        // the remaining failures to the next worker).
        let idle = panic_armed.is_none() && !abort_armed;
        if p.running && idle && faults.peek().is_some_and(|f| position >= f.at) {
            let f = faults.next().expect("peeked");
            match f.kind {
                FaultKind::Panic => {
                    // The worker process runs one job, which uses the process-wide fail points.
                    FailPoints::process_wide().arm(fail::PROCESS_RECORD, 1, FailAction::Panic);
                    panic_armed = Some((None, position));
                }
                FaultKind::Abort => {
                    FailPoints::process_wide().arm(fail::AFTER_METADATA, 1, FailAction::Abort);
                    abort_armed = true;
                }
                FaultKind::WorkerKill | FaultKind::MasterKill | FaultKind::WorkerStop => {
                    cluster_fault(f.kind, settings, position)?;
                    panic_armed = Some((Some(Instant::now()), position));
                }
                FaultKind::Kill => {}
            }
            emit(&Message::Armed {
                fault: f.kind,
                position,
            });
        }
        if p.running && stop_at.is_some_and(|at| position >= at) {
            stop_at = None;
            match handle.stop() {
                Ok(id) => emit(&Message::Note {
                    text: format!("stopped at checkpoint {id} (event {position})"),
                }),
                Err(e) => emit(&Message::Note {
                    text: format!("the stop failed, the job goes on: {e}"),
                }),
            }
        }
        let checkpoint = p.last_checkpoint.map(|(id, _)| id);
        let state = (p.running, p.attempt, checkpoint);
        if state != last_sent || last_time.elapsed() >= Duration::from_millis(100) {
            emit(&Message::Progress {
                position,
                source_records: p.source_records,
                sink_records: p.sink_records,
                running: p.running,
                attempt: p.attempt,
                restarts: p.restarts,
                last_checkpoint: checkpoint,
                checkpoint_age_ms: p.last_checkpoint.map(|(_, age)| age.as_millis() as u64),
                replica: p.replication.as_ref().map(|r| ReplicaLag {
                    replicated: r.replicated,
                    checkpoints_behind: r.checkpoints_behind,
                    seconds_behind: r.seconds_behind(),
                }),
            });
            last_sent = state;
            last_time = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let restarts = handle.progress().restarts;
    let report = handle.join()?;
    let mut message = report_message(&report);
    if let (
        Message::Report {
            restarts: r,
            recoveries,
            ..
        },
        true,
    ) = (&mut message, on_cluster())
    {
        // The launcher counts the restarts of every master; the recoveries the last master
        // measured are only its own, and the drill measured each one itself.
        *r = restarts.max(*r);
        recoveries.clear();
    }
    emit(&message);
    Ok(())
}

/// Whether the job runs on a master and worker processes this process launches.
fn on_cluster() -> bool {
    std::env::var_os("WEIR_WORKERS").is_some()
}

/// Injects a cluster failure: `kill -9` of a worker or of the master, or a worker frozen for
/// twice the heartbeat timeout. The worker is one that runs subtasks (seeded among the first
/// `parallelism`: slot sharing spreads the slices over the workers in order).
fn cluster_fault(kind: FaultKind, settings: &JobSettings, position: u64) -> anyhow::Result<()> {
    let file = std::env::var_os(weir_engine::cluster::PIDS_ENV).ok_or_else(|| anyhow!("no cluster process list"))?;
    let pids = weir_engine::cluster::ClusterPids::read(Path::new(&file))?;
    let busy = (pids.workers.len() as u64).min(settings.parallelism as u64).max(1);
    let worker = (mix(settings.workload.seed ^ 0xC1, position) % busy) as u32;
    let worker_pid = *pids.workers.get(&worker).ok_or_else(|| anyhow!("no worker {worker}"))?;
    let signal = |sig: &str, pid: u32| -> anyhow::Result<()> {
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status()?.success();
        if !ok {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    };
    match kind {
        FaultKind::WorkerKill => signal("-KILL", worker_pid),
        FaultKind::MasterKill => signal("-KILL", pids.master),
        FaultKind::WorkerStop => {
            let timeout: u64 = std::env::var("WEIR_HEARTBEAT_TIMEOUT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            signal("-STOP", worker_pid)?;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2 * timeout));
                let _ = Command::new("kill").args(["-CONT", &worker_pid.to_string()]).status();
            });
            Ok(())
        }
        _ => bail!("{kind:?} is not a cluster failure"),
    }
}

/// The `Report` message of a finished job.
pub fn report_message(r: &JobReport) -> Message {
    let counter = |op: &str, name: &str| r.operator(op).and_then(|o| o.counters.get(name).copied()).unwrap_or(0);
    Message::Report {
        duration_ms: r.duration.as_secs_f64() * 1e3,
        restarts: r.restarts,
        checkpoints: r.checkpoints.iter().map(|c| c.id).collect(),
        restored_from: r.restored_from,
        recoveries: r
            .restores
            .iter()
            .map(|s| Recovery {
                attempt: s.attempt,
                checkpoint: s.checkpoint,
                detect_to_running_ms: s.detect_to_running_ms,
                restore_ms: s.restore_ms,
                records_replayed: s.records_replayed,
            })
            .collect(),
        failures: r.failures.iter().map(|f| f.error.clone()).collect(),
        late_records: counter("settle", "late_records"),
        duplicates_dropped: counter("dedupe", "duplicates"),
        stopped_with_savepoint: r.stopped_with_savepoint.as_ref().map(|sp| (sp.id, sp.location.clone())),
        stopped_at: r.stopped_at,
    }
}

/// How an injected failure went.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// Where it happened (input position).
    pub at: u64,
    /// The checkpoint the job resumed from.
    pub restored: Option<CheckpointId>,
    /// Events read again after the restore (exact for panics; for process failures, the last
    /// reported position minus the restored checkpoint's).
    pub replayed: Option<u64>,
    /// Failure → every subtask running again.
    pub rto_ms: Option<f64>,
    /// Whether `rto_ms` is the engine's measurement (`RestoreStats`) or the supervisor's; for a
    /// panic in a child that was killed later, only the child's observation of `progress()`.
    pub rto_exact: bool,
}

/// The outcome of a drill.
#[derive(Debug, Clone, Default)]
pub struct DrillOutcome {
    pub planned: Vec<Fault>,
    pub faults: Vec<FaultRecord>,
    /// Processes started (1 + process-level restarts).
    pub processes: u32,
    /// In-process restarts (all children).
    pub in_process_restarts: u32,
    /// Restarts nobody planned (should be 0).
    pub unplanned_restarts: u32,
    /// Completed checkpoints (seen in the children's progress and reports, and resumed from).
    pub checkpoints: BTreeSet<CheckpointId>,
    pub wall: Duration,
    /// The `late_records` counter of the final child's report.
    pub late_records: u64,
    /// The savepoint the job stopped with (id, location), when it did: the run is not over.
    pub stopped_with_savepoint: Option<(CheckpointId, String)>,
    /// The final checkpoint the job stopped at (`stop_at_position`), when it did.
    pub stopped_at: Option<CheckpointId>,
}

impl DrillOutcome {
    pub fn restarts(&self) -> u32 {
        self.processes.saturating_sub(1) + self.in_process_restarts
    }
}

/// Everything a child needs on its command line.
pub(crate) fn child_command(exe: &Path, s: &JobSettings, inject: &[Fault], log: &Path) -> anyhow::Result<Command> {
    let mut c = Command::new(exe);
    c.arg("--worker")
        .args(["--events", &s.workload.events.to_string()])
        .args(["--seed", &s.workload.seed.to_string()])
        .args(["--parallelism", &s.parallelism.to_string()])
        .args(["--checkpoint-ms", &s.checkpoint_interval.as_millis().to_string()])
        .args(["--checkpoint-storage", &s.checkpoint_location])
        .arg("--output-dir")
        .arg(&s.output_dir);
    if let Some(file) = &s.config_file {
        c.arg("--config").arg(file);
    }
    match &s.state_dir {
        Some(d) => c.arg("--state-dir").arg(d),
        None => c.arg("--memory"),
    };
    if let Some(r) = s.rate {
        c.args(["--rate", &r.to_string()]);
    }
    if let Some(r) = s.rules_rate {
        c.args(["--rules-rate", &r.to_string()]);
    }
    if let Some((replica, _)) = &s.replica {
        c.args(["--replica-storage", replica]);
    }
    if let Some(dir) = &s.savepoints.dir {
        c.arg("--savepoint-dir").arg(dir);
    }
    for (flag, after) in [
        ("--savepoint-after-ms", s.savepoints.after),
        ("--stop-with-savepoint-after-ms", s.savepoints.stop_after),
    ] {
        if let Some(after) = after {
            c.args([flag, &after.as_millis().to_string()]);
        }
    }
    if let Some(addr) = s.metrics_addr {
        c.args(["--metrics-addr", &addr.to_string()]);
    }
    if let Some(position) = s.stop_at_position {
        c.args(["--stop-at-position", &position.to_string()]);
    }
    if let Some(addr) = s.status_addr {
        c.args(["--status-addr", &addr.to_string()]);
    }
    if let Some(dir) = &s.from_savepoint {
        c.arg("--from-savepoint").arg(dir);
        if s.allow_non_restored_state {
            c.arg("--allow-non-restored-state");
        }
    }
    if let Some(k) = &s.kafka {
        c.args(["--kafka", &k.brokers, "--kafka-topics", &k.prefix]);
    }
    if !inject.is_empty() {
        let list: Vec<String> = inject.iter().map(|f| format!("{}@{}", f.kind.flag(), f.at)).collect();
        c.args(["--inject", &list.join(",")]);
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file);
    if let Some(n) = s.workers {
        c.env("WEIR_WORKERS", n.to_string())
            .env(weir_engine::cluster::PIDS_ENV, pids_file(log))
            .env("WEIR_HEARTBEAT_MS", "100")
            .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000");
    }
    Ok(c)
}

/// Where a drill's cluster lists its processes (next to the children's log).
pub(crate) fn pids_file(log: &Path) -> std::path::PathBuf {
    log.with_file_name("cluster-pids.json")
}

/// What the supervisor hears from a child.
pub(crate) enum Heard {
    Line(Message, Instant),
    Garbage(String),
    Eof(Instant),
}

pub(crate) fn listen(child: &mut Child) -> mpsc::Receiver<Heard> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let heard = match serde_json::from_str::<Message>(&line) {
                Ok(m) => Heard::Line(m, Instant::now()),
                Err(_) => Heard::Garbage(line),
            };
            if tx.send(heard).is_err() {
                return;
            }
        }
        let _ = tx.send(Heard::Eof(Instant::now()));
    });
    rx
}

/// Whether the worker ended by `abort()` (SIGABRT), as an armed crash does.
fn aborted(status: &std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(6)
    }
    #[cfg(not(unix))]
    {
        !status.success()
    }
}

/// The last lines of a child's log, for an error message.
pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs the drill: the job in child processes, the planned failures injected, until the job
/// finishes. `work_dir` receives the children's logs. A worker that makes no progress (input
/// position, checkpoints, running state) for `stall` is killed and the drill fails.
pub fn supervise(
    s: &JobSettings,
    planned: Vec<Fault>,
    work_dir: &Path,
    view: &ProgressView,
    stall: Duration,
) -> anyhow::Result<DrillOutcome> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let log = work_dir.join("workers.log");
    let started = Instant::now();
    let mut out = DrillOutcome {
        planned: planned.clone(),
        ..Default::default()
    };
    // The next planned failure not yet injected.
    let mut next = 0usize;
    // A process-level failure waiting for the new child to run: (index in out.faults, when).
    let mut recovering: Option<(usize, Instant)> = None;
    let mut last_position = 0u64;
    // Events read by earlier children (replays included), for the rate.
    let mut processed_before = 0u64;
    loop {
        let inject: Vec<Fault> = planned[next..]
            .iter()
            .take_while(|f| f.kind != FaultKind::Kill)
            .copied()
            .collect();
        let mut child = child_command(&exe, s, &inject, &log)?
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        out.processes += 1;
        let rx = listen(&mut child);
        // Panics armed in this child, in order (indexes in out.faults), for its report.
        let mut child_panics: Vec<usize> = Vec::new();
        // Every failure this child injected and recovers from itself (panics and cluster
        // failures), in order.
        let mut armed_in_child: Vec<usize> = Vec::new();
        let mut abort_armed: Option<usize> = None;
        let mut panic_pending = false;
        let mut child_restarts = 0u32;
        let mut child_processed = 0u64;
        let mut report: Option<Message> = None;
        let mut killed = false;
        let (mut last_change, mut last_state) = (Instant::now(), (0u64, None::<CheckpointId>, false));
        loop {
            if last_change.elapsed() > stall {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the worker made no progress for {stall:?}; last lines of {}:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            let heard = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(h) => h,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => Heard::Eof(Instant::now()),
            };
            match heard {
                Heard::Garbage(line) => view.log(format!("  worker: {line}")),
                Heard::Line(Message::Note { text }, _) => view.log(text),
                Heard::Line(
                    Message::Started {
                        checkpoint, position, ..
                    },
                    _,
                ) => {
                    out.checkpoints.extend(checkpoint);
                    if let Some((i, _)) = recovering {
                        out.faults[i].restored = checkpoint;
                        out.faults[i].replayed = Some(out.faults[i].at.max(last_position).saturating_sub(position));
                    }
                    last_position = position;
                }
                Heard::Line(
                    Message::Progress {
                        position,
                        source_records,
                        running,
                        restarts,
                        last_checkpoint,
                        checkpoint_age_ms,
                        ..
                    },
                    when,
                ) => {
                    if (position, last_checkpoint, running) != last_state {
                        (last_change, last_state) = (Instant::now(), (position, last_checkpoint, running));
                    }
                    last_position = position;
                    child_restarts = restarts;
                    if running {
                        child_processed = source_records;
                    }
                    if let Some(id) = last_checkpoint {
                        out.checkpoints.insert(id);
                    }
                    view.update(&Snapshot {
                        position,
                        processed: processed_before + child_processed,
                        checkpoint: last_checkpoint.zip(checkpoint_age_ms.map(Duration::from_millis)),
                        restarts: out.processes - 1 + out.in_process_restarts + restarts,
                        running,
                    });
                    if running {
                        if let Some((i, failed)) = recovering.take() {
                            let rto = when.duration_since(failed).as_secs_f64() * 1e3;
                            out.faults[i].rto_ms = Some(rto);
                            view.log(format!("  a new worker runs again {rto:.0} ms after the failure"));
                        }
                    }
                    let kill_due = planned
                        .get(next)
                        .is_some_and(|f| f.kind == FaultKind::Kill && position >= f.at);
                    let quiet = recovering.is_none() && !panic_pending && abort_armed.is_none() && report.is_none();
                    if kill_due && running && quiet {
                        let f = planned[next];
                        view.log(format!(
                            "failure {}/{} at event {}: kill -9 of the worker (pid {})",
                            next + 1,
                            planned.len(),
                            super::domain::thousands(position),
                            child.id(),
                        ));
                        let failed = Instant::now();
                        // On a cluster, the whole job goes down at once, as with its machine.
                        let cluster = s
                            .workers
                            .and_then(|_| weir_engine::cluster::ClusterPids::read(&pids_file(&log)).ok());
                        child.kill().context("killing the worker")?; // SIGKILL
                        for pid in cluster
                            .iter()
                            .flat_map(|c| std::iter::once(c.master).chain(c.workers.values().copied()))
                        {
                            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                        }
                        let _ = child.wait();
                        out.faults.push(FaultRecord {
                            kind: f.kind,
                            at: position,
                            restored: None,
                            replayed: None,
                            rto_ms: None,
                            rto_exact: true,
                        });
                        recovering = Some((out.faults.len() - 1, failed));
                        next += 1;
                        killed = true;
                        break;
                    }
                }
                Heard::Line(Message::Armed { fault, position }, _) => {
                    if planned.get(next).map(|f| f.kind) != Some(fault) {
                        bail!("the worker armed an unplanned {fault:?} failure");
                    }
                    view.log(format!(
                        "failure {}/{} at event {}: {}",
                        next + 1,
                        planned.len(),
                        super::domain::thousands(position),
                        match fault {
                            FaultKind::Panic => "panic in a keyed subtask (fail point process-record)",
                            FaultKind::Abort => {
                                "crash armed: the worker aborts once the next checkpoint is durable, before any commit"
                            }
                            other => other.describe(),
                        },
                    ));
                    out.faults.push(FaultRecord {
                        kind: fault,
                        at: position,
                        restored: None,
                        replayed: None,
                        rto_ms: None,
                        rto_exact: !fault.in_child(),
                    });
                    match fault {
                        FaultKind::Panic => {
                            child_panics.push(out.faults.len() - 1);
                            armed_in_child.push(out.faults.len() - 1);
                            panic_pending = true;
                        }
                        k if k.in_child() => {
                            armed_in_child.push(out.faults.len() - 1);
                            panic_pending = true;
                        }
                        _ => abort_armed = Some(out.faults.len() - 1),
                    }
                    next += 1;
                }
                Heard::Line(
                    Message::Recovered {
                        checkpoint,
                        replayed,
                        observed_ms,
                        ..
                    },
                    _,
                ) => {
                    panic_pending = false;
                    if let Some(&i) = armed_in_child.last() {
                        let f = &mut out.faults[i];
                        (f.rto_ms, f.restored, f.replayed) = (observed_ms, checkpoint, replayed);
                    }
                    view.log(format!(
                        "  the engine restarted the job from {}: running again after {}",
                        checkpoint
                            .map(|c| format!("checkpoint {c}"))
                            .unwrap_or_else(|| "the start (no checkpoint yet)".into()),
                        observed_ms
                            .map(|ms| format!("~{ms:.0} ms"))
                            .unwrap_or_else(|| "a restart".into())
                    ));
                }
                Heard::Line(m @ Message::Report { .. }, _) => report = Some(m),
                Heard::Eof(when) => {
                    let status = child.wait().context("waiting for the worker")?;
                    if let (true, Some(Message::Report { .. })) = (status.success(), &report) {
                        break;
                    }
                    match abort_armed.take() {
                        Some(i) if aborted(&status) => {
                            view.log(format!("  the worker aborted ({status}); restarting it"));
                            recovering = Some((i, when));
                            killed = true;
                            break;
                        }
                        _ => bail!(
                            "the worker exited unexpectedly ({status}); last lines of {}:\n{}",
                            log.display(),
                            log_tail(&log)
                        ),
                    }
                }
            }
        }
        processed_before += child_processed;
        if killed {
            out.in_process_restarts += child_restarts;
            out.unplanned_restarts += child_restarts.saturating_sub(armed_in_child.len() as u32);
            continue;
        }
        let Some(Message::Report {
            recoveries,
            late_records,
            restarts,
            checkpoints,
            stopped_with_savepoint,
            stopped_at,
            ..
        }) = report
        else {
            bail!("the worker finished without a report");
        };
        out.in_process_restarts += restarts;
        out.checkpoints.extend(checkpoints);
        // Restarts beyond the failures this child injected (a cluster's drill measures each
        // recovery itself; its report carries no recoveries).
        if s.workers.is_some() {
            let cluster_faults = armed_in_child.len() - child_panics.len();
            out.unplanned_restarts += restarts.saturating_sub(cluster_faults as u32);
        }
        // The engine's own measurements replace the child's observations for its panics.
        for (k, r) in recoveries.iter().enumerate() {
            match child_panics.get(k) {
                Some(&i) => {
                    out.faults[i].rto_ms = Some(r.detect_to_running_ms);
                    out.faults[i].rto_exact = true;
                    out.faults[i].restored = r.checkpoint;
                    out.faults[i].replayed = Some(r.records_replayed);
                }
                None => out.unplanned_restarts += 1,
            }
        }
        out.late_records = late_records;
        out.stopped_with_savepoint = stopped_with_savepoint;
        out.stopped_at = stopped_at;
        break;
    }
    // A failure armed too close to the end may never trigger: it was not injected.
    out.faults
        .retain(|f| f.kind == FaultKind::Kill || f.rto_ms.is_some() || f.restored.is_some());
    out.wall = started.elapsed();
    Ok(out)
}

/// RTO statistics of one kind of failure (or of all).
#[derive(Debug, Clone)]
pub struct RtoStats {
    pub name: String,
    pub count: usize,
    /// (min, median, max) in ms, if any RTO was measured.
    pub ms: Option<(f64, f64, f64)>,
}

/// Per-kind RTO statistics of a drill, then over all failures.
pub fn rto_stats(out: &DrillOutcome) -> Vec<RtoStats> {
    let mut by_kind: BTreeMap<FaultKind, Vec<f64>> = BTreeMap::new();
    let mut counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for f in &out.faults {
        *counts.entry(f.kind).or_default() += 1;
        if let Some(ms) = f.rto_ms {
            by_kind.entry(f.kind).or_default().push(ms);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some((v[0], median, v[v.len() - 1]))
    };
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (kind, n) in &counts {
        let mut v = by_kind.remove(kind).unwrap_or_default();
        all.extend(v.iter().copied());
        rows.push(RtoStats {
            name: kind.describe().to_string(),
            count: *n,
            ms: stats(&mut v),
        });
    }
    rows.push(RtoStats {
        name: "all failures".to_string(),
        count: out.faults.len(),
        ms: stats(&mut all),
    });
    rows
}
