//! The local launcher: runs a job as a master and N worker processes of the current program
//! on loopback, restarts whichever dies, and stops them all when the job ends.
//!
//! Every process runs the same executable with the same arguments; the environment tells each
//! its role. The master writes the job's outcome to a report file and exits; the launcher
//! returns it as the job's result.
//!
//! # After a crash
//! - A worker or the master that dies without having reported the job's end is started again
//!   with the same number and address; the job recovers from the latest completed checkpoint.
//! - The launcher itself dying: every process it started watches its parent and ends when the
//!   parent is gone, so no orphan keeps writing.
//! - With `WEIR_MASTERS` > 1 (and etcd), every master but the leader stands by; a master that
//!   dies, or ends because it stopped leading, is started again and stands by.
//!
//! The processes of the run are written to the file `WEIR_CLUSTER_PIDS` names, when set (JSON,
//! rewritten at every start), for drills that kill them.

use crate::cluster::savepoint_relay::{LauncherRelay, MasterRelay, RELAY_ENV};
use crate::runtime::events::{FailureReport, TaskEvent};
use crate::runtime::handle::{JobHandle, Live, Progress};
use crate::runtime::report::JobReport;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in the processes a launcher starts: the launcher's pid, which they watch.
pub(crate) const SUPERVISOR_ENV: &str = "WEIR_SUPERVISOR_PID";
/// Set in the master a launcher starts: where it writes the job's outcome.
pub(crate) const REPORT_ENV: &str = "WEIR_REPORT_FILE";
/// Set in the master a launcher starts: where it shows its progress.
pub(crate) const PROGRESS_ENV: &str = "WEIR_PROGRESS_FILE";
/// Set in every process a launcher starts: how many times a process of its role and number
/// was started before (0 the first time), so that a drill arms its failures only once.
pub const INCARNATION_ENV: &str = "WEIR_INCARNATION";
/// Where the launcher lists the processes it runs.
pub const PIDS_ENV: &str = "WEIR_CLUSTER_PIDS";

/// How often one process may die before the launcher gives the job up.
const MAX_RESTARTS: u32 = 100;

/// How a job launched as processes ended, as its master writes it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The job ended: its report.
    Finished(Box<JobReport>),
    /// The job failed.
    Failed(FailureReport),
}

/// The processes of a local cluster, as written to `WEIR_CLUSTER_PIDS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterPids {
    /// The launcher.
    pub launcher: u32,
    /// The first master's process.
    pub master: u32,
    /// Every master's process, by master number (one unless `WEIR_MASTERS` says more).
    #[serde(default)]
    pub masters: Vec<u32>,
    /// Each worker's process, by worker number.
    pub workers: BTreeMap<u32, u32>,
}

impl ClusterPids {
    /// Reads the file a launcher wrote.
    ///
    /// # Errors
    /// The file is missing or not a launcher's.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::data(format!("{} is not a list of cluster processes: {e}", path.display())))
    }
}

/// Writes the job's outcome where the launcher looks for it (when this process is a launched
/// master) and ends the process; returns `result` otherwise.
pub(crate) fn report_and_exit_if_launched(result: Result<JobReport>) -> Result<JobReport> {
    let Some(path) = std::env::var_os(REPORT_ENV) else {
        return result;
    };
    let ok = result.is_ok();
    let outcome = match result {
        Ok(r) => Outcome::Finished(Box::new(r)),
        Err(e) => Outcome::Failed(FailureReport::new(e)),
    };
    let path = PathBuf::from(path);
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(&outcome)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "the master could not write the job's outcome");
        std::process::exit(3);
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Writes `handle`'s progress where the launcher reads it and relays the launcher's savepoint
/// requests (every 50 ms) until the job ends; returns the job's result.
pub(crate) fn show_progress_until_done(handle: JobHandle) -> Result<JobReport> {
    let progress = std::env::var_os(PROGRESS_ENV).map(PathBuf::from);
    let mut relay = MasterRelay::from_env();
    while !handle.is_finished() {
        if let Some(path) = &progress {
            if let Ok(b) = serde_json::to_vec(&handle.progress()) {
                let tmp = path.with_extension("tmp");
                let _ = std::fs::write(&tmp, b).and_then(|_| std::fs::rename(&tmp, path));
            }
        }
        if let Some(relay) = &mut relay {
            relay.exchange(&handle.live);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The job answered every request before it ended: the answers go out before the outcome.
    if let Some(relay) = &mut relay {
        relay.exchange(&handle.live);
    }
    handle.join()
}

/// Ends this process when the launcher that started it is gone (checked every 100 ms).
pub(crate) fn watch_supervisor() {
    let Some(pid) = std::env::var(SUPERVISOR_ENV).ok().and_then(|p| p.parse::<u32>().ok()) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("weir-supervisor-watch".into())
        .spawn(move || loop {
            if std::os::unix::process::parent_id() != pid {
                tracing::error!(launcher_pid = pid, "the launcher is gone; ending");
                std::process::exit(2);
            }
            std::thread::sleep(Duration::from_millis(100));
        });
}

/// Starts the master and `workers` workers of this program and supervises them; the handle's
/// `join` returns the job's report once the master wrote it.
///
/// # Errors
/// `Io` when a process cannot be started.
pub(crate) fn start(
    job: &str,
    workers: u32,
    slots: u32,
    masters: u32,
    metrics: Option<std::net::SocketAddr>,
) -> Result<JobHandle> {
    let dir = std::env::temp_dir().join(format!(
        "weir-cluster-{}-{}-{}",
        crate::state::backend::dir_name(job),
        std::process::id(),
        crate::wall_clock::now_ms()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut master_addrs = Vec::new();
    for _ in 0..masters.max(1) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free port for the master", e))?
            .port();
        master_addrs.push(format!("127.0.0.1:{port}"));
    }
    let relay = LauncherRelay::new(dir.join("savepoints"))?;
    let mut cluster = Local {
        master_addrs,
        relay,
        report: dir.join("outcome.json"),
        progress: dir.join("progress.json"),
        earlier: (0, 0),
        last: Progress::default(),
        dir,
        workers,
        slots,
        masters: BTreeMap::new(),
        worker_procs: BTreeMap::new(),
        starts: BTreeMap::new(),
        restarts: 0,
        pids_file: std::env::var_os(PIDS_ENV).map(PathBuf::from),
        metrics,
    };
    for m in 0..masters.max(1) {
        cluster.spawn_master(m)?;
    }
    for w in 0..workers {
        cluster.spawn_worker(w)?;
    }
    let (events, rx) = crossbeam_channel::unbounded::<TaskEvent>();
    let live = Arc::new(Live::default());
    let shown = live.clone();
    let master = std::thread::Builder::new()
        .name("weir-launcher".into())
        .spawn(move || {
            let result = cluster.supervise(&rx, &shown);
            let why = match &result {
                Ok(report) if report.cancelled => "the job was cancelled",
                Ok(_) => "the job has ended",
                Err(_) => "the job failed",
            };
            cluster.relay.job_ended(&shown, why);
            cluster.stop();
            result
        })
        .map_err(|e| Error::io("spawning the launcher thread", e))?;
    Ok(JobHandle {
        live,
        events,
        master: Some(master),
        // The master process serves the status (WEIR_STATUS_ADDR).
        status: None,
    })
}

/// A local cluster's processes.
struct Local {
    /// Each master's control address, by master number.
    master_addrs: Vec<String>,
    /// Savepoint requests of the launcher's handle, on their way to the master process.
    relay: LauncherRelay,
    dir: PathBuf,
    report: PathBuf,
    /// Where the master shows its progress.
    progress: PathBuf,
    /// Source records read and restarts made by masters that died.
    earlier: (u64, u32),
    /// The current master's latest progress.
    last: Progress,
    workers: u32,
    slots: u32,
    masters: BTreeMap<u32, Child>,
    worker_procs: BTreeMap<u32, Child>,
    /// Starts so far of each master (`(true, n)`) and worker (`(false, n)`).
    starts: BTreeMap<(bool, u32), u32>,
    restarts: u32,
    pids_file: Option<PathBuf>,
    /// The job's metrics address: master `m` serves at its port + m, worker `w` at its
    /// port + masters + w (every process at port 0 when it is 0).
    metrics: Option<std::net::SocketAddr>,
}

impl Local {
    fn command(&mut self, who: (bool, u32)) -> Result<Command> {
        let exe = std::env::current_exe().map_err(|e| Error::io("finding this program's executable", e))?;
        let starts = self.starts.entry(who).or_default();
        let incarnation = *starts;
        *starts += 1;
        let mut c = Command::new(exe);
        // A group of its own: a Ctrl-C at the terminal reaches the launcher, which stops the
        // job gracefully, and not its processes, which it supervises and ends itself.
        c.process_group(0);
        c.args(std::env::args_os().skip(1))
            .env(INCARNATION_ENV, incarnation.to_string())
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            .env("WEIR_MASTER", &self.master_addrs[0])
            .env("WEIR_WORKERS", self.workers.to_string())
            .env_remove("WEIR_MASTERS")
            .env_remove(PIDS_ENV)
            .env_remove(REPORT_ENV)
            .env_remove(PROGRESS_ENV)
            .env_remove(RELAY_ENV)
            .env_remove(crate::cluster::config::METRICS_ADDR_ENV);
        Ok(c)
    }

    fn spawn_master(&mut self, m: u32) -> Result<()> {
        let mut c = self.command((true, m))?;
        let addr = self.master_addrs[m as usize].clone();
        c.env("WEIR_ROLE", "master")
            .env("WEIR_MASTER", &addr)
            .env(REPORT_ENV, &self.report)
            .env(PROGRESS_ENV, &self.progress)
            .env(RELAY_ENV, self.relay.dir());
        if let Some(a) = self.metrics_addr(m) {
            c.env(crate::cluster::config::METRICS_ADDR_ENV, a.to_string());
        }
        let child = c.spawn().map_err(|e| Error::io("starting the master process", e))?;
        tracing::info!(master = m, pid = child.id(), %addr, "master process started");
        self.masters.insert(m, child);
        self.write_pids();
        Ok(())
    }

    fn spawn_worker(&mut self, w: u32) -> Result<()> {
        let mut c = self.command((false, w))?;
        c.env("WEIR_ROLE", "worker")
            .env("WEIR_WORKER_ID", w.to_string())
            .env("WEIR_SLOTS", self.slots.to_string())
            .env("WEIR_DATA_ADDR", "127.0.0.1:0")
            .env_remove("WEIR_ADVERTISE_HOST");
        if let Some(a) = self.metrics_addr(self.master_addrs.len() as u32 + w) {
            c.env(crate::cluster::config::METRICS_ADDR_ENV, a.to_string());
        }
        let child = c
            .spawn()
            .map_err(|e| Error::io(format!("starting worker process {w}"), e))?;
        tracing::info!(worker = w, pid = child.id(), "worker process started");
        self.worker_procs.insert(w, child);
        self.write_pids();
        Ok(())
    }

    /// The metrics address of the `n`th process (masters first, then workers).
    fn metrics_addr(&self, n: u32) -> Option<std::net::SocketAddr> {
        let mut a = self.metrics?;
        if a.port() != 0 {
            a.set_port(a.port().saturating_add(u16::try_from(n).unwrap_or(u16::MAX)));
        }
        Some(a)
    }

    fn write_pids(&self) {
        let Some(path) = &self.pids_file else { return };
        let masters: Vec<u32> = self.masters.values().map(Child::id).collect();
        let pids = ClusterPids {
            launcher: std::process::id(),
            master: masters.first().copied().unwrap_or(0),
            masters,
            workers: self.worker_procs.iter().map(|(&w, c)| (w, c.id())).collect(),
        };
        let tmp = path.with_extension("tmp");
        if let Ok(b) = serde_json::to_vec(&pids) {
            if std::fs::write(&tmp, b)
                .and_then(|_| std::fs::rename(&tmp, path))
                .is_err()
            {
                tracing::warn!(file = %path.display(), "could not write the cluster's process list");
            }
        }
    }

    /// Restarts dead processes until the master reports the job's end.
    fn supervise(&mut self, cancel: &crossbeam_channel::Receiver<TaskEvent>, live: &Live) -> Result<JobReport> {
        loop {
            if let Some(p) = std::fs::read(&self.progress)
                .ok()
                .and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
            {
                self.last = p;
                live.show(&self.last, self.earlier.0, self.earlier.1);
            }
            self.relay.exchange(live);
            if let Ok(TaskEvent::CancelRequested) = cancel.try_recv() {
                self.kill_all();
                return Ok(JobReport {
                    cancelled: true,
                    ..JobReport::default()
                });
            }
            let master_exits: Vec<(u32, std::process::ExitStatus)> = self
                .masters
                .iter_mut()
                .filter_map(|(&m, c)| c.try_wait().ok().flatten().map(|s| (m, s)))
                .collect();
            for (m, status) in master_exits {
                if let Some(outcome) = self.read_outcome() {
                    return match outcome {
                        Outcome::Finished(r) => Ok(*r),
                        Outcome::Failed(f) => Err(f.into_error()),
                    };
                }
                self.give_up_if_crash_looping(&format!("master {m}"), &status.to_string())?;
                self.relay
                    .master_lost(&format!("master process {m} ended ({status}) while it was being taken"));
                // The dead master's reads and restarts stay counted; its restart is one more.
                let _ = std::fs::remove_file(&self.progress);
                self.earlier = (
                    self.earlier.0 + self.last.source_records,
                    self.earlier.1 + self.last.restarts + 1,
                );
                self.last = Progress::default();
                live.show(&self.last, self.earlier.0, self.earlier.1);
                tracing::warn!(master = m, %status, "a master process ended without the job's outcome; starting it again");
                self.spawn_master(m)?;
            }
            let dead: Vec<(u32, String)> = self
                .worker_procs
                .iter_mut()
                .filter_map(|(&w, c)| c.try_wait().ok().flatten().map(|s| (w, s.to_string())))
                .collect();
            for (w, status) in dead {
                self.give_up_if_crash_looping(&format!("worker {w}"), &status)?;
                tracing::warn!(worker = w, %status, "a worker process ended; starting it again");
                self.spawn_worker(w)?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn give_up_if_crash_looping(&mut self, who: &str, status: &str) -> Result<()> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(Error::internal(format!(
                "{who} of the local cluster ended ({status}) after {MAX_RESTARTS} restarts of its processes; giving up"
            )));
        }
        Ok(())
    }

    fn read_outcome(&self) -> Option<Outcome> {
        let bytes = std::fs::read(&self.report).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Kills every process at once.
    fn kill_all(&mut self) {
        for c in self.worker_procs.values_mut().chain(self.masters.values_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits briefly for the workers the master told to end, then kills what is left.
    fn stop(&mut self) {
        // The master that ended the job has exited; the others stand by and never end alone.
        for c in self.masters.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all: Vec<Child> = std::mem::take(&mut self.worker_procs).into_values().collect();
        for c in &mut all {
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
