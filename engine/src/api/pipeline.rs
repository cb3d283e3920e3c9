//! `Pipeline`: the entry point of the API. It holds the job's configuration and the graph
//! that streams add steps to.

use super::settings::{note, Settings};
use super::stream::Stream;
use crate::checkpoint::{CheckpointConfig, RestoreMode};
use crate::config::restart::RestartStrategy;
use crate::config::JobConfig;
use crate::graph::Partitioning;
use crate::graph::{Graph, NodeKind};
use crate::runtime::handle::JobHandle;
use crate::runtime::report::JobReport;
use crate::source::Source;
use crate::state::{RocksDbBackend, StateBackend};
use crate::Result;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A dataflow pipeline under construction.
///
/// ```no_run
/// use weir_engine::prelude::*;
/// let p = Pipeline::new("doubler");
/// p.source("numbers", VecSource::new(vec![1u64, 2, 3]))
///     .map("double", |x| x * 2)
///     .sink("out", DiscardSink::new());
/// let report = p.run().unwrap();
/// ```
pub struct Pipeline {
    pub(crate) graph: Rc<RefCell<Graph>>,
    name: String,
    /// What the builder methods were told.
    settings: Settings,
    /// `settings` resolved (kept up to date by every builder method).
    config: JobConfig,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The builder methods give the same job whatever the order of the calls (see each method for
/// what it overrides); two methods that set the same thing are a configuration error.
impl Pipeline {
    /// A new pipeline named `name` with default configuration (see [`JobConfig::new`]).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Pipeline {
            graph: Rc::new(RefCell::new(Graph::default())),
            config: JobConfig::new(name.clone()),
            name,
            settings: Settings::default(),
        }
    }

    /// Applies `f` to the settings and resolves the configuration again.
    pub(super) fn set(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self.config = self.settings.resolve(&self.name);
        self
    }

    /// Parallelism of every step that does not set its own.
    pub fn parallelism(self, n: usize) -> Self {
        self.set(|s| s.parallelism = Some(n))
    }

    /// Number of key groups (the upper bound of any keyed step's parallelism). Fixed for the
    /// life of a job: checkpointed state is partitioned by it.
    pub fn max_parallelism(self, n: usize) -> Self {
        self.set(|s| s.max_parallelism = Some(n))
    }

    /// Where keyed state lives ([`RocksDbBackend`] or [`MemoryBackend`](crate::state::MemoryBackend)).
    /// Not together with [`state_dir`](Self::state_dir) (a configuration error).
    pub fn state_backend(self, backend: impl StateBackend + 'static) -> Self {
        let backend: Arc<dyn StateBackend> = Arc::new(backend);
        self.set(|s| {
            s.state_backend = Some(backend);
            note(&mut s.state_set_by, "state_backend");
        })
    }

    /// Keeps keyed state in RocksDB under `dir`. Not together with
    /// [`state_backend`](Self::state_backend) (a configuration error).
    pub fn state_dir(self, dir: impl Into<PathBuf>) -> Self {
        let backend: Arc<dyn StateBackend> = Arc::new(RocksDbBackend::new(dir));
        self.set(|s| {
            s.state_backend = Some(backend);
            note(&mut s.state_set_by, "state_dir");
        })
    }

    /// Takes checkpoints into local directory `dir`, every second unless
    /// [`checkpoint_interval`](Self::checkpoint_interval) says otherwise (before or after this
    /// call; see [`CheckpointConfig`] for the other defaults). With checkpoints, a failed job
    /// restarts from the latest completed one per the restart strategy, and a new run of the
    /// job resumes from it. Not together with [`checkpointing`](Self::checkpointing).
    pub fn checkpoint_storage(self, dir: impl Into<PathBuf>) -> Self {
        let config = CheckpointConfig::new(dir);
        self.set(|s| {
            s.checkpoint = Some(config);
            note(&mut s.checkpoint_set_by, "checkpoint_storage");
        })
    }

    /// Sets the complete checkpoint configuration. [`checkpoint_interval`](Self::checkpoint_interval)
    /// and [`restore_mode`](Self::restore_mode), called before or after, override its interval
    /// and restore mode. Not together with [`checkpoint_storage`](Self::checkpoint_storage).
    pub fn checkpointing(self, config: CheckpointConfig) -> Self {
        self.set(|s| {
            s.checkpoint = Some(config);
            note(&mut s.checkpoint_set_by, "checkpointing");
        })
    }

    /// Sets the checkpoint interval (with checkpoint storage, whether set before or after this
    /// call) or the commit interval (without).
    pub fn checkpoint_interval(self, interval: Duration) -> Self {
        self.set(|s| s.interval = Some(interval))
    }

    /// Which checkpoint a new run starts from (default: the latest completed one). Needs
    /// checkpoint storage, set before or after this call (otherwise a configuration error).
    pub fn restore_mode(self, mode: RestoreMode) -> Self {
        self.set(|s| s.restore = Some(mode))
    }

    /// Starts the job from `savepoint` (taken with
    /// [`JobHandle::savepoint`](crate::runtime::JobHandle::savepoint) or
    /// [`stop_with_savepoint`](crate::runtime::JobHandle::stop_with_savepoint), and copied
    /// anywhere since) while the job's checkpoint storage holds no completed checkpoint; once
    /// the job completed one, restarts and new runs restore that instead. Ids continue after
    /// the savepoint's, and the first checkpoint stores every file anew: the savepoint may be
    /// deleted once it completed. Needs checkpoint storage, set before or after this call.
    pub fn from_savepoint(self, savepoint: crate::checkpoint::SavepointRestore) -> Self {
        self.set(|s| s.savepoint = Some(savepoint))
    }

    /// Allows a restore to use an older checkpoint than the newest complete one, when the
    /// newest is corrupt or a sink's committed output is ahead of the checkpoint restored (see
    /// [`CheckpointConfig::fallback_to_older_checkpoint_reproducing_output`] for what it risks:
    /// append-only sinks then hold the output after the restored checkpoint twice). Needs
    /// checkpoint storage, set before or after this call.
    pub fn fallback_to_older_checkpoint_reproducing_output(self) -> Self {
        self.set(|s| s.fallback_reproducing_output = true)
    }

    /// What to do when the job fails (default: at most 10 failures within 5 minutes, see
    /// [`RestartStrategy::default`]).
    pub fn restart_strategy(self, strategy: RestartStrategy) -> Self {
        self.set(|s| s.restart = Some(strategy))
    }

    /// How long a failed or cancelled attempt's subtasks may take to stop, and what happens
    /// then (default: 180 s, then the process exits with
    /// [`CANCELLATION_TIMEOUT_EXIT_CODE`](crate::config::cancellation_timeout::CANCELLATION_TIMEOUT_EXIT_CODE)
    /// so that its supervisor restarts it).
    pub fn cancellation_timeout(
        self,
        timeout: Duration,
        action: crate::config::cancellation_timeout::CancellationTimeoutAction,
    ) -> Self {
        self.set(|s| s.cancellation = Some((timeout, action)))
    }

    /// Records per source batch.
    pub fn batch_size(self, n: usize) -> Self {
        self.set(|s| s.batch_size = Some(n))
    }

    /// Batches buffered per channel before senders block (default 16): more smooths bursts
    /// and keeps a fast consumer busy, fewer lets barriers through a backpressured channel
    /// sooner.
    pub fn channel_capacity(self, n: usize) -> Self {
        self.set(|s| s.channel_capacity = Some(n))
    }

    /// Gives the job its own fail points (off by default: then the job uses the process-wide
    /// set, which only a drill's child process arms). Tests arm points on `points` and, after
    /// the run, ask it which fired.
    pub fn fail_points(self, points: crate::fail::FailPoints) -> Self {
        self.set(|s| s.fail_points = Some(points))
    }

    /// Serves the job's status page (`GET /`) and its HTTP API (`/api/status`,
    /// `/api/checkpoints`, `/api/savepoint`, `/api/stop`, `/api/cancel`) on `addr`, in the
    /// process that runs the job's master (see [`crate::runtime::status`]). An address that
    /// cannot be bound makes [`start`](Self::start) fail with a `Config` error naming it.
    pub fn status_addr(self, addr: std::net::SocketAddr) -> Self {
        self.set(|s| s.status_addr = Some(addr))
    }

    /// Serves the metrics of the process running the job at `http://addr/metrics` for
    /// Prometheus (see `docs/metrics.md`; off by default). Jobs of one process asking for the
    /// same address share its endpoint. In a cluster, `WEIR_METRICS_ADDR` sets each process's
    /// address instead; a local cluster gives its master this port and worker `i` port + 1 + i.
    pub fn metrics_addr(self, addr: std::net::SocketAddr) -> Self {
        self.set(|s| s.metrics_addr = Some(addr))
    }

    /// The effective configuration so far (the same whatever the order of the builder calls).
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// Adds a source step named `name`.
    pub fn source<S: Source>(&self, name: &str, source: S) -> Stream<S::Out> {
        let mut g = self.graph.borrow_mut();
        g.claim_name(name);
        let id = g.add_node(name, NodeKind::Source(Arc::new(source)));
        drop(g);
        Stream::new(self.graph.clone(), vec![id], Partitioning::Forward)
    }

    /// One line per step: kind, parallelism, inputs and their partitioning.
    pub fn explain(&self) -> String {
        self.graph.borrow().describe(self.config.parallelism)
    }

    /// Starts the job and returns a handle to cancel or wait for it.
    ///
    /// # Errors
    /// A `Config` error for an invalid pipeline or configuration (nothing is started then).
    ///
    /// Where the job runs comes from the environment ([`Deployment`](crate::cluster::Deployment)):
    /// in this process by default; with `WEIR_WORKERS=N`, on a master and N worker processes
    /// of this program that this call launches on loopback; with `WEIR_ROLE=master` or
    /// `WEIR_ROLE=worker`, as one process of a cluster. A worker does not return from here: it
    /// runs until the master ends the job, then the process exits.
    pub fn start(self) -> Result<JobHandle> {
        let (graph, cfg) = self.into_parts();
        crate::cluster::start(graph, cfg)
    }

    /// The job's graph and configuration, for a runtime that deploys them itself.
    pub(crate) fn into_parts(self) -> (Graph, JobConfig) {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        (graph, self.config)
    }

    /// Runs the job to completion (bounded sources) and returns its report.
    ///
    /// # Errors
    /// A `Config` error for an invalid pipeline, or the first failure of any subtask.
    pub fn run(self) -> Result<JobReport> {
        self.start()?.join()
    }
}
