//! Job configuration and its validation, with the policies the runtime applies: when a failed
//! attempt is restarted ([`restart`]) and what happens when a cancelled attempt does not stop
//! ([`cancellation_timeout`]).

pub mod cancellation_timeout;
pub mod layered;
pub mod restart;

use crate::checkpoint::CheckpointConfig;
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::{MemoryBackend, StateBackend};
use crate::{Error, Result};
use cancellation_timeout::CancellationTimeoutAction;
use restart::RestartStrategy;
use std::sync::Arc;

/// How a job runs: parallelism, key groups, state, batching.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The job's name (part of state and checkpoint paths).
    pub name: String,
    /// Parallelism of steps that do not set their own.
    pub parallelism: usize,
    /// Number of key groups: the upper bound for any keyed step's parallelism.
    pub max_parallelism: usize,
    /// Where keyed state lives.
    pub state_backend: Arc<dyn StateBackend>,
    /// Records per batch read from a source.
    pub batch_size: usize,
    /// Batches buffered per channel before the sender blocks (backpressure; default 16). A
    /// barrier waits behind what is buffered, so under backpressure this bounds how long it
    /// travels: 4 took 17–36 ms off the checkpoint duration of a RocksDB running sum at full
    /// speed, but cost 4–5 % of its throughput, and up to 40 % with the state cache
    /// (`docs/benchmarks.md`, "Checkpoints without a memtable flush").
    pub channel_capacity: usize,
    /// Checkpointing; `None` means sinks commit only at the commit barriers (every
    /// `commit_interval`) and a failure fails the job (nothing to restore from).
    pub checkpoint: Option<CheckpointConfig>,
    /// Time between commit barriers when no checkpoint storage is configured.
    pub commit_interval: std::time::Duration,
    /// What to do when the job fails (only with checkpoint storage).
    pub restart: RestartStrategy,
    /// Conflicting builder settings (for example a restore mode without checkpoint storage),
    /// reported by [`validate`](Self::validate).
    pub(crate) builder_errors: Vec<String>,
    /// How long the master waits for the subtasks of a failed or cancelled attempt to stop
    /// before it applies `on_cancellation_timeout` (default 180 s).
    pub cancellation_timeout: std::time::Duration,
    /// What happens when a cancellation times out (default: the process exits with
    /// [`CANCELLATION_TIMEOUT_EXIT_CODE`](crate::config::cancellation_timeout::CANCELLATION_TIMEOUT_EXIT_CODE)).
    pub on_cancellation_timeout: CancellationTimeoutAction,
    /// The job's fail points (tests and drills inject failures there); `None`, the default,
    /// means the process-wide set, which nothing arms outside a drill's child process.
    pub fail_points: Option<crate::fail::FailPoints>,
    /// Where the process that runs the job's master serves the job's status page and API
    /// (`None`, the default: no status server). See [`crate::runtime::status`].
    pub status_addr: Option<std::net::SocketAddr>,
    /// Deployment variables from a configuration file's `[cluster]` section
    /// ([`Configuration::cluster_vars`](layered::Configuration::cluster_vars)): where the
    /// environment does not set a variable, the cluster reads it here.
    pub cluster_vars: std::collections::BTreeMap<String, String>,
    /// Where the process running the job serves its metrics for Prometheus
    /// (`http://addr/metrics`); `None`, the default, serves none. `WEIR_METRICS_ADDR`, when
    /// set, takes precedence (see [`crate::cluster::config`]).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl JobConfig {
    /// Defaults: parallelism 1, 128 key groups, in-memory state, batches of 1024 records.
    pub fn new(name: impl Into<String>) -> Self {
        JobConfig {
            name: name.into(),
            parallelism: 1,
            max_parallelism: 128,
            state_backend: Arc::new(MemoryBackend::new()),
            batch_size: 1024,
            channel_capacity: 16,
            checkpoint: None,
            commit_interval: std::time::Duration::from_secs(1),
            restart: RestartStrategy::default(),
            builder_errors: Vec::new(),
            cancellation_timeout: crate::config::cancellation_timeout::DEFAULT_CANCELLATION_TIMEOUT,
            on_cancellation_timeout: CancellationTimeoutAction::default(),
            fail_points: None,
            status_addr: None,
            cluster_vars: Default::default(),
            metrics_addr: None,
        }
    }

    /// The fail points the job checks: its own, or else the process-wide set.
    pub fn fail_points(&self) -> crate::fail::FailPoints {
        self.fail_points
            .clone()
            .unwrap_or_else(crate::fail::FailPoints::process_wide)
    }

    /// Serves the metrics of the process running the job at `http://addr/metrics`
    /// ([`metrics_addr`](Self::metrics_addr)).
    pub fn with_metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Checks the settings that do not depend on the graph.
    ///
    /// # Errors
    /// A `Config` error that says which setting is wrong and why.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::config("the job name must not be empty"));
        }
        if self.parallelism == 0 {
            return Err(Error::config("parallelism must be at least 1, got 0"));
        }
        if self.max_parallelism == 0 || self.max_parallelism > MAX_KEY_GROUPS {
            return Err(Error::config(format!(
                "max parallelism (the number of key groups) must be between 1 and {MAX_KEY_GROUPS}, got {}",
                self.max_parallelism
            )));
        }
        if self.parallelism > self.max_parallelism {
            return Err(Error::config(format!(
                "parallelism {} exceeds max parallelism {}: a keyed step cannot have more subtasks than key groups",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size must be at least 1"));
        }
        if self.channel_capacity == 0 {
            return Err(Error::config("channel capacity must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(Error::config("commit interval must be greater than zero"));
        }
        self.restart.validate()?;
        if self.cancellation_timeout.is_zero() {
            return Err(Error::config("cancellation timeout must be greater than zero"));
        }
        if let Some(e) = self.builder_errors.first() {
            return Err(Error::config(e.clone()));
        }
        if let Some(c) = &self.checkpoint {
            c.validate()?;
        }
        Ok(())
    }
}
