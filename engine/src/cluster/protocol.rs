//! The control plane's messages and services: what a worker tells the master and what the
//! master tells a worker, over tarpc (serde messages, bincode on TCP). Every process runs the
//! same build, so both sides share these Rust types; no schema is kept apart from the code.
//!
//! Every call carries the master's session (a new one each time a master process starts, with
//! the term it leads) and, where it concerns subtasks, the attempt: a worker ignores calls of a
//! session or attempt that is not its current one, or of an older term than it has seen, and
//! the master ignores reports of an attempt that is over.

use crate::cluster::assignment::Assignment;
use crate::cluster::rpc::MAX_FRAME;
use crate::message::CheckpointId;
use crate::net::WorkerId;
use crate::runtime::control::Control;
use crate::runtime::events::{FailureReport, TaskEvent};
use crate::runtime::status::SubtaskCounters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tarpc::serde_transport::tcp;
use tarpc::tokio_serde::formats::Json;

/// Identifies one run of a master process, and the term it leads: workers drop calls of any
/// other run, and of a term older than the newest they have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The run of the master process.
    pub id: u64,
    /// The term the master leads (0 without etcd: one master, no election).
    pub term: u64,
}

/// A worker introducing itself to the master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerHello {
    /// The job the worker's program runs.
    pub job: String,
    /// Hash of the worker's job graph and configuration (the master refuses another program).
    pub fingerprint: u64,
    /// Weir's version of the worker's build.
    pub version: String,
    /// The worker's stable number.
    pub worker: WorkerId,
    /// Pipeline slices it runs.
    pub slots: u32,
    /// Where the master reaches its control service.
    pub control: SocketAddr,
    /// Where other workers reach its data plane.
    pub data: SocketAddr,
    /// Its process id (for drills and logs).
    pub pid: u32,
    /// The newest attempt it ever ran (a restarted master numbers its attempts above it, so
    /// that the workers' data planes take them as newer).
    pub last_attempt: u32,
}

/// How far a worker's share of an attempt got, sent with every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptProgress {
    /// The attempt (0: none runs).
    pub attempt: u32,
    /// Records its source subtasks read in the attempt.
    pub source_records: u64,
    /// Records its sink subtasks received in the attempt.
    pub sink_records: u64,
    /// The counters of each of its subtasks in the attempt (for the status page).
    #[serde(default)]
    pub subtasks: Vec<SubtaskCounters>,
}

/// The master's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pulse {
    /// The master knows the worker in this session.
    Known,
    /// The master does not know it (it restarted, or gave the worker up): register again.
    Unknown,
}

/// What one worker runs in an attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// The attempt.
    pub attempt: u32,
    /// Where every subtask of the attempt runs.
    pub assignment: Assignment,
    /// Every worker's data-plane address, for the channels that cross workers.
    pub peers: BTreeMap<WorkerId, SocketAddr>,
    /// The checkpoint to restore, if any (its metadata is read from the checkpoint storage,
    /// and each worker fetches the files of its own subtasks).
    pub restore: Option<CheckpointId>,
    /// The savepoint's location when `restore` names the savepoint the job starts from: its
    /// metadata and files are read from the savepoint's storage (the one each worker's program
    /// configured as its `from_savepoint`, which must describe itself as this location).
    #[serde(default)]
    pub from_savepoint: Option<String>,
    /// Records the job's sources had read at that checkpoint.
    pub base_source_records: u64,
}

/// The master's service, called by workers.
#[tarpc::service]
pub(crate) trait MasterService {
    /// A worker joins the job (again, after a restart of either side). The answer is the
    /// master's session, or why the worker cannot join (another job or program, a worker
    /// number already taken by a live process).
    async fn register(hello: WorkerHello) -> Result<Session, String>;
    /// The worker is alive, and got this far.
    async fn heartbeat(worker: WorkerId, session: Session, progress: AttemptProgress) -> Pulse;
    /// Events of the worker's subtasks in attempt `attempt`, in the order they happened.
    async fn report(worker: WorkerId, session: Session, attempt: u32, events: Vec<TaskEvent>) -> Pulse;
}

/// A worker's service, called by the master.
#[tarpc::service]
pub(crate) trait WorkerService {
    /// Runs the worker's share of an attempt (cancelling any older one first).
    async fn deploy(session: Session, deployment: Deployment) -> Result<(), FailureReport>;
    /// Control messages for subtasks of `attempt`, in order.
    async fn control(session: Session, attempt: u32, controls: Vec<(usize, Control)>);
    /// Cancels `attempt`: the worker stops its subtasks and reports them exited.
    async fn cancel(session: Session, attempt: u32);
    /// The job is over: the worker process ends.
    async fn finish(session: Session);
}

/// Connects to a worker's control service at `addr`.
pub(crate) async fn connect_worker(addr: SocketAddr, timeout: Duration) -> std::io::Result<WorkerServiceClient> {
    let mut connecting = tcp::connect(addr, Json::default);
    connecting.config_mut().max_frame_length(MAX_FRAME);
    let transport = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| timed_out(timeout))??;
    Ok(WorkerServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Connects to the master's service at `addr` (`host:port`).
pub(crate) async fn connect_master(addr: &str, timeout: Duration) -> std::io::Result<MasterServiceClient> {
    let mut connecting = tcp::connect(addr, Json::default);
    connecting.config_mut().max_frame_length(MAX_FRAME);
    let transport = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| timed_out(timeout))??;
    Ok(MasterServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}

fn timed_out(after: Duration) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {after:?}"))
}
