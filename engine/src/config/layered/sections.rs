//! The sections and keys of a configuration file. Every key is optional: a key no layer sets
//! leaves the program's own setting (or Weir's default) in place.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a configuration file (and its environment variables) may set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Configuration {
    /// Parallelism and key groups.
    pub job: JobSection,
    /// Checkpoint storage and timing.
    pub checkpoint: CheckpointSection,
    /// Where keyed state lives.
    pub state: StateSection,
    /// What happens when the job fails.
    pub restart: RestartSection,
    /// Where the process serves Prometheus metrics.
    pub metrics: ListenSection,
    /// Where the job's master serves its status page and API.
    pub status: ListenSection,
    /// How the job's processes find each other (a cluster).
    pub cluster: ClusterSection,
}

/// `[job]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSection {
    /// Parallelism of the steps that do not set their own.
    pub parallelism: Option<usize>,
    /// Number of key groups (fixed for the life of a job's checkpoints).
    pub max_parallelism: Option<usize>,
}

/// `[checkpoint]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// A directory, `file://` path or object store URL (`s3://bucket/prefix`: needs
    /// `weir::object_storage::install()` in the program).
    pub storage: Option<String>,
    /// Time between checkpoints (`"1s"`, `"500ms"`).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// A checkpoint not complete after this long is aborted.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Least time between the end of one checkpoint and the next trigger.
    #[serde(with = "humantime_serde")]
    pub min_pause: Option<Duration>,
    /// Completed checkpoints kept.
    pub retained: Option<usize>,
    /// Checkpoints that may fail in a row before the job restarts.
    pub tolerable_failed: Option<u32>,
    /// A second site's storage every completed checkpoint is copied to.
    pub replica: Option<String>,
}

/// `[state]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// `rocksdb` (needs `dir`) or `memory`; `dir` alone means RocksDB.
    pub backend: Option<BackendKind>,
    /// RocksDB's working directory.
    pub dir: Option<PathBuf>,
    /// The write-back cache in front of each RocksDB store, MiB (0: none, the default).
    pub cache_mb: Option<u64>,
    /// What a RocksDB store's snapshot at a barrier does with its memtable: `flush` (the
    /// default) or `log`.
    pub memtable_at_barrier: Option<crate::state::MemtableAtBarrier>,
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// RocksDB under `state.dir`.
    Rocksdb,
    /// On the heap.
    Memory,
}

/// `[restart]`: a strategy and its parameters (each strategy takes only its own keys; see
/// [`RestartStrategy`](crate::config::restart::RestartStrategy)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSection {
    /// The strategy; parameters it does not set keep Weir's defaults for it.
    pub strategy: Option<StrategyKind>,
    /// `fixed-delay`, `exponential-backoff`: restarts allowed over the job's life.
    pub max_attempts: Option<u32>,
    /// `fixed-delay`, `failure-rate`: wait before a restart.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// `exponential-backoff`: the first delay.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Option<Duration>,
    /// `exponential-backoff`, `failure-rate`: the largest delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Option<Duration>,
    /// `exponential-backoff`: growth per restart.
    pub multiplier: Option<f64>,
    /// `failure-rate`: failures tolerated within `interval`.
    pub max_failures: Option<u32>,
    /// `failure-rate`: the sliding window.
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// `failure-rate`: relative random spread of each delay (0 to 1).
    pub jitter: Option<f64>,
}

/// A restart strategy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Fail at the first failure.
    None,
    /// A fixed delay, a bounded number of times.
    FixedDelay,
    /// A growing delay, a bounded number of times.
    ExponentialBackoff,
    /// Restart unless failures come too often (Weir's default).
    FailureRate,
}

/// `[metrics]` and `[status]`: an address to serve on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    /// `ip:port`.
    pub address: Option<SocketAddr>,
}

/// `[cluster]`: the deployment settings of [`cluster::config`](crate::cluster::config), which
/// otherwise come from `WEIR_*` variables; a variable that is set wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `WEIR_ROLE`: `master` or `worker`.
    pub role: Option<String>,
    /// `WEIR_WORKERS`.
    pub workers: Option<u32>,
    /// `WEIR_MASTER`: the master's `host:port`.
    pub master: Option<String>,
    /// `WEIR_WORKER_ID`.
    pub worker_id: Option<u32>,
    /// `WEIR_SLOTS`.
    pub slots: Option<u32>,
    /// `WEIR_DATA_ADDR`.
    pub data_addr: Option<String>,
    /// `WEIR_ADVERTISE_HOST`.
    pub advertise_host: Option<String>,
    /// `WEIR_HEARTBEAT_MS`.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// `WEIR_HEARTBEAT_TIMEOUT_MS`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Option<Duration>,
    /// `WEIR_MASTER_WAIT_MS`.
    #[serde(with = "humantime_serde")]
    pub master_wait: Option<Duration>,
    /// `WEIR_WORKER_WAIT_MS`.
    #[serde(with = "humantime_serde")]
    pub worker_wait: Option<Duration>,
    /// `WEIR_ETCD_ENDPOINTS`.
    pub etcd_endpoints: Option<Vec<String>>,
    /// `WEIR_HA_LEASE_MS`.
    #[serde(with = "humantime_serde")]
    pub ha_lease: Option<Duration>,
    /// `WEIR_MASTERS`.
    pub masters: Option<u32>,
}
