//! `Pipeline`: the entry point of the API. It holds the job's configuration and the graph
//! that streams add steps to.

use super::stream::Stream;
use crate::checkpoint::{CheckpointConfig, RestoreMode};
use crate::config::JobConfig;
use crate::graph::{Graph, NodeKind};
use crate::runtime::exchange::Partitioning;
use crate::runtime::handle::JobHandle;
use crate::runtime::job;
use crate::runtime::report::JobReport;
use crate::runtime::restart::RestartStrategy;
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
    config: JobConfig,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A new pipeline named `name` with default configuration (see [`JobConfig::new`]).
    pub fn new(name: impl Into<String>) -> Self {
        Pipeline {
            graph: Rc::new(RefCell::new(Graph::default())),
            config: JobConfig::new(name),
        }
    }

    /// Parallelism of every step that does not set its own.
    pub fn parallelism(mut self, n: usize) -> Self {
        self.config.parallelism = n;
        self
    }

    /// Number of key groups (the upper bound of any keyed step's parallelism). Fixed for the
    /// life of a job: checkpointed state is partitioned by it.
    pub fn max_parallelism(mut self, n: usize) -> Self {
        self.config.max_parallelism = n;
        self
    }

    /// Where keyed state lives ([`RocksDbBackend`] or [`MemoryBackend`](crate::state::MemoryBackend)).
    pub fn state_backend(mut self, backend: impl StateBackend + 'static) -> Self {
        self.config.state_backend = Arc::new(backend);
        self
    }

    /// Keeps keyed state in RocksDB under `dir`.
    pub fn state_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.state_backend(RocksDbBackend::new(dir))
    }

    /// Takes checkpoints into local directory `dir` every second (see [`CheckpointConfig`]
    /// for the defaults). With checkpoints, a failed job restarts from the latest completed one
    /// per the restart strategy, and a new run of the job resumes from it.
    pub fn checkpoint_storage(self, dir: impl Into<PathBuf>) -> Self {
        self.checkpointing(CheckpointConfig::new(dir))
    }

    /// Sets the complete checkpoint configuration.
    pub fn checkpointing(mut self, config: CheckpointConfig) -> Self {
        self.config.checkpoint = Some(config);
        self
    }

    /// Sets the checkpoint interval (with checkpoint storage) or the commit interval (without).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        match &mut self.config.checkpoint {
            Some(c) => c.interval = interval,
            None => self.config.commit_interval = interval,
        }
        self
    }

    /// Which checkpoint a new run starts from (default: the latest completed one).
    pub fn restore_mode(mut self, mode: RestoreMode) -> Self {
        match &mut self.config.checkpoint {
            Some(c) => c.restore = mode,
            None => self.config.graph_errors_restore_without_storage = true,
        }
        self
    }

    /// What to do when the job fails (default: at most 10 failures within 5 minutes, see
    /// [`RestartStrategy::default`]).
    pub fn restart_strategy(mut self, strategy: RestartStrategy) -> Self {
        self.config.restart = strategy;
        self
    }

    /// How long a failed or cancelled attempt's subtasks may take to stop, and what happens
    /// then (default: 180 s, then the process exits with
    /// [`CANCELLATION_TIMEOUT_EXIT_CODE`](crate::runtime::cancellation::CANCELLATION_TIMEOUT_EXIT_CODE)
    /// so that its supervisor restarts it).
    pub fn cancellation_timeout(
        mut self,
        timeout: Duration,
        action: crate::runtime::cancellation::CancellationTimeoutAction,
    ) -> Self {
        self.config.cancellation_timeout = timeout;
        self.config.on_cancellation_timeout = action;
        self
    }

    /// Records per source batch.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n;
        self
    }

    /// Batches buffered per channel before senders block.
    pub fn channel_capacity(mut self, n: usize) -> Self {
        self.config.channel_capacity = n;
        self
    }

    /// The configuration so far.
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
    pub fn start(self) -> Result<JobHandle> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        job::start(Arc::new(graph), self.config)
    }

    /// Runs the job to completion (bounded sources) and returns its report.
    ///
    /// # Errors
    /// A `Config` error for an invalid pipeline, or the first failure of any subtask.
    pub fn run(self) -> Result<JobReport> {
        self.start()?.join()
    }
}
