//! The master of a cluster: the control service workers register and report to, and the
//! executor that deploys each attempt of the job's master loop on the registered workers.
//!
//! # After a crash
//! - A worker that stops answering (process dead, frozen, or cut off) is lost after the
//!   heartbeat timeout, or at once when its process restarts and registers again: the attempt
//!   fails, its subtasks count as exited, and the next attempt restores the latest completed
//!   checkpoint on the workers present. The lost worker cancels its subtasks on its own once it
//!   misses the master for the same timeout, and its data plane refuses the old attempt.
//! - A master that dies loses nothing durable: its supervisor starts it again, it restores the
//!   latest completed checkpoint (the checkpoint storage holds everything), and the workers,
//!   having cancelled what they ran, register with it again.
//! - With etcd ([`crate::cluster::ha`]), a master acts only while its lease is valid: before
//!   deploying and before any control message (a trigger, the notification that makes sinks
//!   commit) leaves it, it checks its lease and ends its process if the lease lapsed.

pub(crate) mod registry;

use crate::cluster::assignment::{assign, WorkerSlots};
use crate::cluster::config::MasterSettings;
use crate::cluster::ha::etcd::Leadership;
use crate::cluster::protocol::{
    AttemptProgress, Deployment, MasterService, Pulse, Session, WorkerHello, WorkerServiceClient,
};
use crate::cluster::rpc;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::net::WorkerId;
use crate::runtime::control::Control;
use crate::runtime::events::TaskEvent;
use crate::runtime::layout::Layout;
use crate::runtime::remote::{AttemptRequest, RemoteAttempt, RemoteExecutor};
use crate::{Error, Result};
use crossbeam_channel::Sender;
use registry::{ActiveAttempt, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tarpc::context::Context;

/// How long a deploy call may take: a worker restores its subtasks' state before answering.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a control call may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the master's service and its executor share.
struct Shared {
    session: Session,
    job: String,
    fingerprint: u64,
    registry: Mutex<Registry>,
    /// Signalled when a worker registers.
    changed: Condvar,
    heartbeats: crate::cluster::config::Heartbeats,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The master's control service.
#[derive(Clone)]
struct MasterServer(Arc<Shared>);

impl MasterService for MasterServer {
    async fn register(self, _: Context, hello: WorkerHello) -> std::result::Result<Session, String> {
        let s = &self.0;
        if hello.job != s.job {
            return Err(format!(
                "this master runs job \"{}\", the worker's program runs job \"{}\"",
                s.job, hello.job
            ));
        }
        if hello.fingerprint != s.fingerprint || hello.version != env!("CARGO_PKG_VERSION") {
            return Err(format!(
                "the worker runs another version of the program than the master (job graph and configuration \
                 {:016x} on the worker, {:016x} here; Weir {} on the worker, {} here): every process of a job \
                 must run the same build",
                hello.fingerprint,
                s.fingerprint,
                hello.version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        let client = crate::cluster::protocol::connect_worker(hello.control, s.heartbeats.timeout)
            .await
            .map_err(|e| {
                format!(
                    "the master cannot reach the worker's control address {}: {e}",
                    hello.control
                )
            })?;
        tracing::info!(worker = hello.worker, pid = hello.pid, control = %hello.control, data = %hello.data, "worker registered");
        s.registry().register(hello, client, Instant::now());
        s.changed.notify_all();
        Ok(s.session)
    }

    async fn heartbeat(self, _: Context, worker: WorkerId, session: Session, progress: AttemptProgress) -> Pulse {
        if session != self.0.session {
            return Pulse::Unknown;
        }
        let (pulse, became_ready) = self.0.registry().heartbeat(worker, progress, Instant::now());
        if became_ready {
            self.0.changed.notify_all();
        }
        pulse
    }

    async fn report(
        self,
        _: Context,
        worker: WorkerId,
        session: Session,
        attempt: u32,
        events: Vec<TaskEvent>,
    ) -> Pulse {
        if session != self.0.session {
            return Pulse::Unknown;
        }
        self.0.registry().report(worker, attempt, events, Instant::now())
    }
}

/// Runs the job's attempts on the workers that registered with this master.
pub(crate) struct ClusterMaster {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    graph: Arc<Graph>,
    layout: Layout,
    settings: MasterSettings,
    /// The address the control service listens on.
    pub(crate) addr: SocketAddr,
    /// The wire number of the latest attempt deployed.
    wire: u32,
    /// Workers of the current attempt and their control forwarders.
    forwarders: BTreeMap<WorkerId, tokio::sync::mpsc::UnboundedSender<(usize, Control)>>,
    /// This master's leadership, with etcd (`None`: it leads alone).
    leadership: Option<Arc<Leadership>>,
}

/// Ends the process unless `leadership` (if any) is still valid.
fn ensure_leading(leadership: &Option<Arc<Leadership>>) {
    if let Some(l) = leadership {
        l.ensure();
    }
}

impl ClusterMaster {
    /// Starts the control service on `settings.bind`.
    ///
    /// # Errors
    /// `Config` when the address cannot be bound.
    pub(crate) fn start(
        graph: Arc<Graph>,
        cfg: &JobConfig,
        settings: MasterSettings,
        leadership: Option<Arc<Leadership>>,
    ) -> Result<Self> {
        let layout = Layout::of(&graph, cfg)?;
        let rt = rpc::runtime("master")?;
        let shared = Arc::new(Shared {
            session: Session {
                id: crate::wall_clock::now_ms() ^ ((std::process::id() as u64) << 40),
                term: leadership.as_ref().map_or(0, |l| l.term()),
            },
            job: cfg.name.clone(),
            fingerprint: crate::cluster::fingerprint(&graph, cfg),
            registry: Mutex::new(Registry::default()),
            changed: Condvar::new(),
            heartbeats: settings.heartbeats,
        });
        let server = MasterServer(shared.clone());
        let addr = rt.block_on(async {
            let incoming = rpc::listen(settings.bind, "the master").await?;
            Ok::<_, Error>(rpc::serve_all!(incoming, server))
        })?;
        // Lose workers that stop sending heartbeats.
        {
            let shared = shared.clone();
            let (interval, timeout) = (settings.heartbeats.interval, settings.heartbeats.timeout);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(interval / 2);
                loop {
                    tick.tick().await;
                    shared.registry().expire(timeout, Instant::now());
                }
            });
        }
        tracing::info!(%addr, workers = settings.workers, "master listening for workers");
        Ok(ClusterMaster {
            rt,
            shared,
            graph,
            layout,
            settings,
            addr,
            wire: 0,
            forwarders: BTreeMap::new(),
            leadership,
        })
    }

    /// Waits until every expected worker registered, or the wait is over and the workers
    /// present have slots enough; returns the workers to deploy on.
    fn await_workers(&self) -> Result<Vec<(WorkerId, u32, SocketAddr, WorkerServiceClient)>> {
        let needed = self.layout.chains.iter().map(|c| c.parallelism).max().unwrap_or(1) as u32;
        let deadline = Instant::now() + self.settings.worker_wait;
        let mut reg = self.shared.registry();
        loop {
            let present = reg.ready().count() as u32;
            let slots: u32 = reg.ready().map(|(_, w)| w.hello.slots).sum();
            let now = Instant::now();
            // The first attempt waits for every worker, to spread the job over all of them; a
            // recovery starts at once on the workers present when their slots suffice (a lost
            // worker that comes back becomes a standby).
            let enough = present > 0 && slots >= needed && (self.wire > 0 || now >= deadline);
            if present >= self.settings.workers || enough {
                return Ok(reg
                    .ready()
                    .map(|(&id, w)| (id, w.hello.slots, w.hello.data, w.client.clone()))
                    .collect());
            }
            if now >= deadline + self.settings.worker_wait * 5 {
                return Err(Error::external(
                    true,
                    format!(
                        "{present} of {} workers registered with the master at {} (slots {slots}, needed {needed})",
                        self.settings.workers, self.addr
                    ),
                ));
            }
            let wait = deadline.saturating_duration_since(now).max(Duration::from_millis(50));
            reg = self
                .shared
                .changed
                .wait_timeout(reg, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl RemoteExecutor for ClusterMaster {
    fn deploy(&mut self, request: &AttemptRequest, events: Sender<TaskEvent>) -> Result<RemoteAttempt> {
        let workers = self.await_workers()?;
        ensure_leading(&self.leadership);
        let slots: Vec<WorkerSlots> = workers
            .iter()
            .map(|&(worker, slots, ..)| WorkerSlots { worker, slots })
            .collect();
        let assignment = assign(&self.layout.subtasks(), &slots)?;
        let peers: BTreeMap<WorkerId, SocketAddr> = workers.iter().map(|&(id, _, data, _)| (id, data)).collect();
        let mut tasks_of: BTreeMap<WorkerId, BTreeSet<usize>> = BTreeMap::new();
        for (t, &w) in assignment.worker_of_task.iter().enumerate() {
            tasks_of.entry(w).or_default().insert(t);
        }
        {
            let mut reg = self.shared.registry();
            self.wire = self.wire.max(reg.newest_seen) + 1;
            reg.attempt = Some(ActiveAttempt {
                wire: self.wire,
                events,
                tasks_of: tasks_of.clone(),
                exited: BTreeSet::new(),
                failed: false,
            });
            // A worker lost between choosing and now fails the attempt at once.
            let gone: Vec<WorkerId> = tasks_of
                .keys()
                .filter(|w| !reg.workers.contains_key(w))
                .copied()
                .collect();
            for w in gone {
                reg.lose(w, "it left before the attempt was deployed");
            }
        }
        let deployment = Deployment {
            attempt: self.wire,
            assignment: assignment.clone(),
            peers,
            restore: request.restore,
            from_savepoint: request.from_savepoint.clone(),
            base_source_records: request.base_source_records,
        };
        tracing::info!(attempt = request.attempt, wire = self.wire, workers = workers.len(), restore = ?request.restore, from_savepoint = ?request.from_savepoint, "deploying attempt");
        let session = self.shared.session;
        let calls: Vec<_> = workers
            .iter()
            .map(|(id, _, _, client)| {
                let (id, client, d) = (*id, client.clone(), deployment.clone());
                self.rt.spawn(async move {
                    let r = client.deploy(rpc::within(DEPLOY_TIMEOUT), session, d).await;
                    (id, r)
                })
            })
            .collect();
        let mut failure: Option<Error> = None;
        for call in calls {
            let (id, r) = self
                .rt
                .block_on(call)
                .map_err(|e| Error::internal(format!("a deploy call failed: {e}")))?;
            let e = match r {
                Ok(Ok(())) => continue,
                Ok(Err(refused)) => refused.into_error(),
                Err(e) => {
                    // Its process is gone (or cut off): the next attempt goes without it.
                    let why = format!("its control service did not answer: {e}");
                    self.shared.registry().lose(id, &why);
                    Error::external(true, why)
                }
            };
            let e = e.context(format!("worker {id} could not start attempt {}", self.wire));
            // A corrupt checkpoint is the cause; peers that could not connect are its effect.
            if failure.is_none() || e.reason() == Some(crate::Reason::RestoredStateCorrupt) {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            for (_, _, _, client) in &workers {
                let (client, wire) = (client.clone(), self.wire);
                self.rt.spawn(async move {
                    let _ = client.cancel(rpc::within(CONTROL_TIMEOUT), session, wire).await;
                });
            }
            self.shared.registry().attempt = None;
            return Err(e);
        }
        // One forwarder per worker keeps its control messages in order.
        self.forwarders.clear();
        for (id, _, _, client) in &workers {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Control)>();
            let (client, wire, leadership) = (client.clone(), self.wire, self.leadership.clone());
            self.rt.spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    // A batch queued before this process froze must not leave after its lease lapsed.
                    ensure_leading(&leadership);
                    if client
                        .control(rpc::within(CONTROL_TIMEOUT), session, wire, batch)
                        .await
                        .is_err()
                    {
                        // The worker is lost or going: its heartbeats decide.
                        continue;
                    }
                }
            });
            self.forwarders.insert(*id, tx);
        }
        let routes: BTreeMap<usize, tokio::sync::mpsc::UnboundedSender<(usize, Control)>> = assignment
            .worker_of_task
            .iter()
            .enumerate()
            .filter_map(|(t, w)| self.forwarders.get(w).map(|f| (t, f.clone())))
            .collect();
        let leadership = self.leadership.clone();
        Ok(RemoteAttempt {
            tasks: self.layout.task_names(&self.graph),
            source_tasks: self.layout.source_tasks(&self.graph),
            send: Box::new(move |task, control| {
                ensure_leading(&leadership);
                if let Some(f) = routes.get(&task) {
                    let _ = f.send((task, control));
                }
            }),
        })
    }

    fn records(&self) -> (u64, u64) {
        self.shared.registry().records()
    }

    fn subtasks(&self) -> Vec<crate::runtime::status::SubtaskCounters> {
        self.shared.registry().subtasks()
    }

    fn workers(&self) -> Vec<crate::runtime::status::WorkerStatus> {
        self.shared
            .registry()
            .status(self.shared.heartbeats.timeout, Instant::now())
    }

    fn end_attempt(&mut self) {
        self.forwarders.clear();
        self.shared.registry().attempt = None;
    }

    fn finish(&mut self) {
        self.forwarders.clear();
        ensure_leading(&self.leadership);
        let session = self.shared.session;
        let clients: Vec<WorkerServiceClient> = self
            .shared
            .registry()
            .workers
            .values()
            .map(|w| w.client.clone())
            .collect();
        self.rt.block_on(async move {
            let calls = clients
                .into_iter()
                .map(|c| async move { c.finish(rpc::within(Duration::from_secs(5)), session).await });
            futures::future::join_all(calls).await;
        });
    }
}
