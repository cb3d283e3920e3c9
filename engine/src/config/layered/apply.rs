//! What a [`Configuration`] means for a job: its keys checked together and turned into the
//! engine's settings (a restart strategy, a state backend, checkpoint storage).
//! [`Pipeline::configure`](crate::api::Pipeline::configure) applies them.

use super::sections::{BackendKind, Configuration, RestartSection, StrategyKind};
use crate::checkpoint::location::open_location;
use crate::checkpoint::CheckpointStorage;
use crate::config::restart::RestartStrategy;
use crate::state::{BackendOverrides, MemoryBackend, RocksDbBackend, StateBackend};
use crate::{Error, Result};
use std::sync::Arc;

impl Configuration {
    /// Checks the keys that depend on each other (without opening anything).
    ///
    /// # Errors
    /// `Config`, naming the keys.
    pub fn check(&self) -> Result<()> {
        if let (Some(BackendKind::Memory), Some(dir)) = (self.state.backend, &self.state.dir) {
            return Err(Error::config(format!(
                "state.backend = \"memory\" keeps state on the heap: remove state.dir ({}) or use \"rocksdb\"",
                dir.display()
            )));
        }
        if self.state.backend == Some(BackendKind::Rocksdb) && self.state.dir.is_none() {
            return Err(Error::config(
                "state.backend = \"rocksdb\" needs state.dir, the directory RocksDB works in",
            ));
        }
        if self.state.backend == Some(BackendKind::Memory) {
            let rocksdb_only = [
                (
                    "state.cache_mb",
                    "the cache in front of RocksDB",
                    self.state.cache_mb.map(|mb| mb.to_string()),
                ),
                (
                    "state.memtable_at_barrier",
                    "how RocksDB snapshots its memtable",
                    self.state.memtable_at_barrier.map(|c| format!("\"{}\"", c.name())),
                ),
            ];
            if let Some((key, sets, value)) = rocksdb_only.into_iter().find_map(|(k, s, v)| Some((k, s, v?))) {
                return Err(Error::config(format!(
                    "{key} = {value} sets {sets}; state.backend = \"memory\" has none: remove {key} or use \"rocksdb\""
                )));
            }
        }
        if let (Some(mb), None) = (self.state.cache_mb, self.state_cache_bytes()) {
            return Err(Error::config(format!(
                "state.cache_mb = {mb} is more memory than this machine can address"
            )));
        }
        for (key, value) in [
            ("checkpoint.interval", self.checkpoint.interval),
            ("checkpoint.timeout", self.checkpoint.timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(Error::config(format!("{key} must be greater than zero")));
            }
        }
        if self.checkpoint.retained == Some(0) {
            return Err(Error::config("checkpoint.retained must be at least 1"));
        }
        for (key, value) in [
            ("job.parallelism", self.job.parallelism),
            ("job.max_parallelism", self.job.max_parallelism),
        ] {
            if value == Some(0) {
                return Err(Error::config(format!("{key} must be at least 1")));
            }
        }
        if let Some(strategy) = self.restart_strategy()? {
            strategy.validate()?;
        }
        Ok(())
    }

    /// Whether any `[checkpoint]` key is set.
    pub fn sets_checkpointing(&self) -> bool {
        self.checkpoint != Default::default()
    }

    /// The restart strategy `[restart]` describes (`None`: the section is empty); parameters
    /// it does not set keep the defaults of that strategy.
    ///
    /// # Errors
    /// `Config` for parameters without a strategy, or of another strategy.
    pub fn restart_strategy(&self) -> Result<Option<RestartStrategy>> {
        let r = &self.restart;
        let Some(kind) = r.strategy else {
            return match set_keys(r).first() {
                Some(key) => Err(Error::config(format!(
                    "restart.{key} is set without restart.strategy: add strategy = \"fixed-delay\", \
                     \"exponential-backoff\", \"failure-rate\" or \"none\""
                ))),
                None => Ok(None),
            };
        };
        let allowed: &[&str] = match kind {
            StrategyKind::None => &[],
            StrategyKind::FixedDelay => &["max_attempts", "delay"],
            StrategyKind::ExponentialBackoff => &["max_attempts", "initial_delay", "max_delay", "multiplier"],
            StrategyKind::FailureRate => &["max_failures", "interval", "delay", "max_delay", "jitter"],
        };
        if let Some(key) = set_keys(r).into_iter().find(|k| !allowed.contains(k)) {
            return Err(Error::config(format!(
                "restart.{key} is not a parameter of restart.strategy = \"{}\" (its parameters: {})",
                kind_name(kind),
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let strategy = match kind {
            StrategyKind::None => RestartStrategy::None,
            StrategyKind::FixedDelay => RestartStrategy::FixedDelay {
                max_attempts: r.max_attempts.unwrap_or(3),
                delay: r.delay.unwrap_or(std::time::Duration::from_secs(1)),
            },
            StrategyKind::ExponentialBackoff => RestartStrategy::ExponentialBackoff {
                initial: r.initial_delay.unwrap_or(std::time::Duration::from_millis(100)),
                max: r.max_delay.unwrap_or(std::time::Duration::from_secs(10)),
                multiplier: r.multiplier.unwrap_or(2.0),
                max_attempts: r.max_attempts.unwrap_or(10),
            },
            StrategyKind::FailureRate => {
                let RestartStrategy::FailureRate {
                    max_failures,
                    interval,
                    delay,
                    max_delay,
                    jitter,
                } = RestartStrategy::default()
                else {
                    unreachable!("the default strategy is failure-rate")
                };
                RestartStrategy::FailureRate {
                    max_failures: r.max_failures.unwrap_or(max_failures),
                    interval: r.interval.unwrap_or(interval),
                    delay: r.delay.unwrap_or(delay),
                    max_delay: r.max_delay.unwrap_or(max_delay),
                    jitter: r.jitter.unwrap_or(jitter),
                }
            }
        };
        Ok(Some(strategy))
    }

    /// The state backend `[state]` describes (`None`: it names no backend; `state.cache_mb`
    /// and `state.memtable_at_barrier` alone change the program's backend, see
    /// [`Pipeline::configure`](crate::api::Pipeline::configure)).
    pub fn state_backend(&self) -> Option<Arc<dyn StateBackend>> {
        match (self.state.backend, &self.state.dir) {
            (Some(BackendKind::Memory), _) => Some(Arc::new(MemoryBackend::new())),
            (_, Some(dir)) => RocksDbBackend::new(dir).with_overrides(&self.state_overrides()),
            (Some(BackendKind::Rocksdb), None) | (None, None) => None,
        }
    }

    /// The settings of `[state]` that change the program's backend when `[state]` names none.
    pub fn state_overrides(&self) -> BackendOverrides {
        BackendOverrides {
            cache_size: self.state_cache_bytes(),
            memtable_at_barrier: self.state.memtable_at_barrier,
        }
    }

    /// `state.cache_mb` in bytes (`None`: not set, or too large for a `usize`, which
    /// [`check`](Self::check) refuses).
    pub fn state_cache_bytes(&self) -> Option<usize> {
        let mb = usize::try_from(self.state.cache_mb?).ok()?;
        mb.checked_mul(1 << 20)
    }

    /// The checkpoint storage `checkpoint.storage` names, opened (`None`: not set).
    ///
    /// # Errors
    /// `Config` for a location that cannot be opened (an object store URL needs
    /// `weir::object_storage::install()` first).
    pub fn checkpoint_storage(&self) -> Result<Option<Arc<dyn CheckpointStorage>>> {
        self.checkpoint
            .storage
            .as_deref()
            .map(|location| open_location(location).map_err(|e| e.context("checkpoint.storage")))
            .transpose()
    }

    /// The replica storage `checkpoint.replica` names, opened (`None`: not set).
    ///
    /// # Errors
    /// As [`checkpoint_storage`](Self::checkpoint_storage).
    pub fn replica_storage(&self) -> Result<Option<Arc<dyn CheckpointStorage>>> {
        self.checkpoint
            .replica
            .as_deref()
            .map(|location| open_location(location).map_err(|e| e.context("checkpoint.replica")))
            .transpose()
    }
}

fn kind_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::None => "none",
        StrategyKind::FixedDelay => "fixed-delay",
        StrategyKind::ExponentialBackoff => "exponential-backoff",
        StrategyKind::FailureRate => "failure-rate",
    }
}

/// The parameter keys of `[restart]` that are set.
fn set_keys(r: &RestartSection) -> Vec<&'static str> {
    [
        ("max_attempts", r.max_attempts.is_some()),
        ("delay", r.delay.is_some()),
        ("initial_delay", r.initial_delay.is_some()),
        ("max_delay", r.max_delay.is_some()),
        ("multiplier", r.multiplier.is_some()),
        ("max_failures", r.max_failures.is_some()),
        ("interval", r.interval.is_some()),
        ("jitter", r.jitter.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect()
}
