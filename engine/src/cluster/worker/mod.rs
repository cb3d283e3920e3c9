//! A worker process: registers with the master, runs the subtasks the master assigns to it,
//! exchanges data with the other workers, and reports to the master.
//!
//! # After a crash
//! - The master gone (no heartbeat answered within the heartbeat timeout, or an answer that
//!   it does not know this worker): the worker cancels its attempt at once, so that nothing of
//!   it reaches a sink or the storage, and registers again with whatever master answers.
//! - The worker's own process dies: its supervisor starts it again with the same number; it
//!   registers, the master takes the old one as lost and restores the latest completed
//!   checkpoint on the workers present.
//! - With etcd, the worker finds the leader's address there each time it registers, and
//!   refuses a master of a term older than the newest it has seen (a former leader, fenced).

pub(crate) mod attempt;
pub(crate) mod forward;
pub(crate) mod shared;
#[cfg(test)]
mod tests;

use crate::checkpoint::staging::StagingArea;
use crate::cluster::config::{net_settings, WorkerSettings};
use crate::cluster::ha::LeaderLookup;
use crate::cluster::protocol::{connect_master, Deployment, Pulse, Session, WorkerHello, WorkerService};
use crate::cluster::rpc;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::net::inbound::DataPlane;
use crate::runtime::control::Control;
use crate::runtime::events::FailureReport;
use crate::{Error, Result};
use shared::{MasterLink, WorkerCore};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::context::Context;

/// A worker's control service.
#[derive(Clone)]
struct WorkerServer {
    core: Arc<WorkerCore>,
    finished: Arc<AtomicBool>,
}

impl WorkerService for WorkerServer {
    async fn deploy(
        self,
        _: Context,
        session: Session,
        deployment: Deployment,
    ) -> std::result::Result<(), FailureReport> {
        if !self.core.is_session(session) {
            return Err(FailureReport::new(Error::external(
                true,
                "the deployment comes from a master this worker does not report to",
            )));
        }
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.deploy(deployment))
            .await
            .map_err(|e| FailureReport::new(Error::internal(format!("deploying panicked: {e}"))))?
            .map_err(FailureReport::new)
    }

    async fn control(self, _: Context, session: Session, attempt: u32, controls: Vec<(usize, Control)>) {
        if self.core.is_session(session) {
            let core = self.core.clone();
            let _ = tokio::task::spawn_blocking(move || core.control(attempt, controls)).await;
        }
    }

    async fn cancel(self, _: Context, session: Session, attempt: u32) {
        if self.core.is_session(session) {
            self.core.cancel(Some(attempt));
        }
    }

    async fn finish(self, _: Context, session: Session) {
        if self.core.is_session(session) {
            self.finished.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs this process as worker `settings.id` of the job until the master ends the job; then
/// the process exits with status 0.
///
/// # Errors
/// `Config` for what a restart cannot fix: the master refused the worker (another program or
/// job), an address that cannot be bound, or no master answering at `settings.master` within
/// the master wait.
pub(crate) fn run(graph: Graph, mut cfg: JobConfig, settings: WorkerSettings) -> Result<std::convert::Infallible> {
    let me = settings.id;
    if let Some(addr) = settings.metrics.or(cfg.metrics_addr) {
        crate::metrics::serve(addr)?;
    }
    if let Some(b) = cfg.state_backend.for_worker(me) {
        cfg.state_backend = b;
    }
    let keyed = graph
        .nodes
        .iter()
        .any(|n| matches!(n.kind, crate::graph::NodeKind::Operator { keyed: true, .. }));
    if keyed {
        cfg.state_backend.validate()?;
    }
    let _state_lock = if keyed {
        cfg.state_backend.lock_job(&cfg.name)?
    } else {
        None
    };
    let staging_parent = match cfg.state_backend.local_dir() {
        Some(d) => d.join("_snapshots"),
        None => std::env::temp_dir().join(format!("weir-worker-{me}-snapshots")),
    };
    let staging = StagingArea::create(
        &staging_parent,
        &format!(
            "{}-worker-{me}-{}",
            crate::state::backend::dir_name(&cfg.name),
            std::process::id()
        ),
    )?;
    let fingerprint = crate::cluster::fingerprint(&graph, &cfg);
    let net = net_settings(&settings.heartbeats, cfg.channel_capacity);
    let plane = DataPlane::bind(settings.data_bind, net.clone())?;
    let rt = rpc::runtime("worker")?;
    let core = Arc::new(WorkerCore::new(
        Arc::new(graph),
        cfg,
        me,
        fingerprint,
        plane,
        net,
        rt.handle().clone(),
        staging,
    )?);
    let finished = Arc::new(AtomicBool::new(false));
    let server = WorkerServer {
        core: core.clone(),
        finished: finished.clone(),
    };
    let control_bind = SocketAddr::new(settings.data_bind.ip(), 0);
    let control_port = rt
        .block_on(async {
            let incoming = rpc::listen(control_bind, "the worker's control service").await?;
            Ok::<_, Error>(rpc::serve_all!(incoming, server))
        })?
        .port();
    let data_port = core.plane.local_addr().port();
    let master_wait = settings.master_wait;
    let lookup = match &settings.ha {
        Some(ha) => Some(LeaderLookup::connect(ha, &core.cfg.name)?),
        None => None,
    };
    let mut first = true;
    loop {
        // Register (again).
        let host = advertised_host(&settings, master_wait)?;
        let hello = WorkerHello {
            job: core.cfg.name.clone(),
            fingerprint,
            version: env!("CARGO_PKG_VERSION").to_string(),
            worker: me,
            slots: settings.slots,
            control: SocketAddr::new(host, control_port),
            data: SocketAddr::new(host, data_port),
            pid: std::process::id(),
            last_attempt: core.last_attempt(),
        };
        let (client, session, master) =
            register(&rt, &settings.master, lookup.as_ref(), &core, hello, master_wait, first)?;
        first = false;
        core.set_master(Some(MasterLink {
            session,
            client: client.clone(),
        }));
        tracing::info!(worker = me, %master, term = session.term, "registered with the master");
        // Heartbeats until the master is gone or the job is over.
        let mut last_answer = Instant::now();
        let mut first_beat = true;
        loop {
            // The first heartbeat at once: it tells the master this worker took its session.
            if !std::mem::take(&mut first_beat) {
                std::thread::sleep(settings.heartbeats.interval);
            }
            if finished.load(Ordering::SeqCst) {
                core.shutdown();
                tracing::info!(worker = me, "the job is over");
                std::process::exit(0);
            }
            let progress = core.progress();
            let beat = rt.block_on(client.heartbeat(rpc::within(settings.heartbeats.timeout), me, session, progress));
            match beat {
                Ok(Pulse::Known) => last_answer = Instant::now(),
                Ok(Pulse::Unknown) => {
                    tracing::warn!(
                        worker = me,
                        "the master does not know this worker (it restarted or gave it up)"
                    );
                    break;
                }
                Err(_) if last_answer.elapsed() > settings.heartbeats.timeout => {
                    tracing::warn!(worker = me, timeout = ?settings.heartbeats.timeout, "no answer from the master");
                    break;
                }
                Err(_) => {}
            }
        }
        core.set_master(None);
        core.cancel(None);
    }
}

/// Registers with the master at `configured`, or with the leader `lookup` finds in etcd,
/// trying for up to `wait`; returns the client, the session and the master's address.
fn register(
    rt: &tokio::runtime::Runtime,
    configured: &str,
    lookup: Option<&LeaderLookup>,
    core: &WorkerCore,
    hello: WorkerHello,
    wait: Duration,
    first: bool,
) -> Result<(crate::cluster::protocol::MasterServiceClient, Session, String)> {
    let deadline = Instant::now() + wait;
    let mut last_error = String::new();
    let mut master = configured.to_string();
    while Instant::now() < deadline {
        if let Some(lookup) = lookup {
            match lookup.leader() {
                Some((address, _)) => master = address,
                None => {
                    last_error = "etcd names no leader".to_string();
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
        }
        let master = master.as_str();
        // Through etcd, the address may still be a frozen former leader's, which accepts the
        // connection and never answers: give up on it sooner.
        let answer_wait = Duration::from_secs(if lookup.is_some() { 3 } else { 10 });
        let attempt = rt.block_on(async {
            let client = connect_master(master, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            let answer = client
                .register(rpc::within(answer_wait), hello.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((client, answer))
        });
        match attempt {
            Ok((_, Ok(session))) if !core.admit_term(session.term) => {
                last_error = format!(
                    "the master at {master} leads term {}, older than one this worker saw",
                    session.term
                );
            }
            Ok((client, Ok(session))) => return Ok((client, session, master.to_string())),
            Ok((_, Err(refused))) => {
                return Err(Error::config(format!(
                    "the master at {master} refused worker {}: {refused}",
                    hello.worker
                )))
            }
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (at, check) = match lookup {
        Some(_) => (format!("through etcd (last tried {master:?})"), "WEIR_ETCD_ENDPOINTS"),
        None => (format!("at {master}"), "WEIR_MASTER"),
    };
    Err(Error::config(format!(
        "worker {} found no master {at} within {wait:?} ({}): check {check} ({})",
        hello.worker,
        if first { "since it started" } else { "after losing it" },
        last_error
    )))
}

/// The address other processes reach this worker at.
fn advertised_host(settings: &WorkerSettings, wait: Duration) -> Result<IpAddr> {
    if let Some(h) = &settings.advertise_host {
        return (h.as_str(), 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| Error::config(format!("WEIR_ADVERTISE_HOST={h:?} does not resolve")));
    }
    if !settings.data_bind.ip().is_unspecified() {
        return Ok(settings.data_bind.ip());
    }
    if settings.master.is_empty() {
        return Err(Error::config(
            "a worker that finds its master through etcd needs WEIR_ADVERTISE_HOST, WEIR_DATA_ADDR with an ip, \
             or WEIR_MASTER: the address other processes reach it at",
        ));
    }
    // The address this host uses towards the master.
    let deadline = Instant::now() + wait;
    loop {
        let found = settings
            .master
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
            .and_then(|s| s.local_addr().ok());
        if let Some(a) = found {
            return Ok(a.ip());
        }
        if Instant::now() >= deadline {
            return Err(Error::config(format!(
                "worker {} found no master at {} within {wait:?}: check WEIR_MASTER",
                settings.id, settings.master
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
