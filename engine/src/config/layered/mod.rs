//! Settings a user changes without recompiling: a TOML file, layered with environment
//! variables and the program's flags.
//!
//! ```toml
//! # weir.toml
//! [job]
//! parallelism = 4
//! max_parallelism = 128
//!
//! [checkpoint]
//! storage = "s3://ledger-checkpoints/payments"   # or a directory, or file:///...
//! interval = "1s"
//! timeout = "10m"
//! min_pause = "0s"
//! retained = 3
//! tolerable_failed = 3
//! replica = "s3://ledger-checkpoints-dr/payments"
//!
//! [state]
//! backend = "rocksdb"                            # or "memory"
//! dir = "/var/lib/weir/state"
//! cache_mb = 32                                  # write-back cache per RocksDB store (default 0: none)
//! memtable_at_barrier = "log"                    # snapshot the write-ahead log, not a flush (default "flush")
//!
//! [restart]
//! strategy = "failure-rate"                      # "none", "fixed-delay", "exponential-backoff"
//! max_failures = 10
//! interval = "5m"
//! delay = "100ms"
//! max_delay = "10s"
//! jitter = 0.2
//!
//! [metrics]
//! address = "0.0.0.0:9464"
//!
//! [status]
//! address = "0.0.0.0:8081"
//!
//! [cluster]                                      # see weir::engine::cluster::config
//! workers = 3
//! master = "weir-master:6123"
//! ```
//!
//! Layers, lowest first: the program's own builder calls, the file, environment variables,
//! the program's flags. [`Configuration::load`] reads the file and the environment; a program
//! sets the fields its flags gave last, then applies the result with
//! [`Pipeline::configure`](crate::api::Pipeline::configure) after its other builder calls.
//! Each key's variable is `WEIR_<SECTION>_<KEY>` in capitals (`WEIR_CHECKPOINT_INTERVAL=2s`,
//! `WEIR_STATE_BACKEND=memory`, `WEIR_JOB_PARALLELISM=8`), except the metrics and status
//! addresses (`WEIR_METRICS_ADDR`, `WEIR_STATUS_ADDR`) and the `[cluster]` keys, whose variables
//! are the cluster's own (`WEIR_WORKERS`, `WEIR_MASTER`, ...; see
//! [`cluster::config`](crate::cluster::config)).
//!
//! Unknown keys, in the file or as a `WEIR_<SECTION>_...` variable of a known section, are
//! errors naming the key; so are values that do not parse and settings that contradict each
//! other (a restart key that the chosen strategy does not have).

mod apply;
mod cluster;
mod load;
mod sections;

pub use load::ENV_KEYS;
pub use sections::{
    BackendKind, CheckpointSection, ClusterSection, Configuration, JobSection, ListenSection, RestartSection,
    StateSection, StrategyKind,
};
