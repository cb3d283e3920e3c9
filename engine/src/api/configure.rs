//! [`Pipeline::configure`]: a [`Configuration`] (file, environment, flags) over the program's
//! own builder calls.

use super::pipeline::Pipeline;
use crate::checkpoint::replication::ReplicationConfig;
use crate::checkpoint::CheckpointConfig;
use crate::config::layered::Configuration;
use crate::{Error, Result};

impl Pipeline {
    /// Applies `config` over what the builder methods said so far: every key it sets wins (a
    /// configuration file, its environment variables and flags are how an operator changes a
    /// job without recompiling it). Call it after the other builder methods; a builder method
    /// called afterwards wins over the configuration again.
    ///
    /// - `[job]`: parallelism and max parallelism of the job;
    /// - `[checkpoint]`: `storage` replaces the program's storage (or turns checkpointing on),
    ///   the other keys change the program's checkpoint configuration (they need storage from
    ///   one of the two);
    /// - `[state]`: the state backend; `cache_mb` alone sets the cache of the program's RocksDB
    ///   backend;
    /// - `[restart]`: the restart strategy;
    /// - `[metrics]`: where the process serves Prometheus metrics
    ///   ([`metrics_addr`](Self::metrics_addr));
    /// - `[status]`: where the job's master serves its status page and API
    ///   ([`status_addr`](Self::status_addr));
    /// - `[cluster]`: deployment variables the environment does not set.
    ///
    /// # Errors
    /// `Config` for keys that need checkpoint storage when neither the program nor the
    /// configuration gives one, and for a storage location that cannot be opened.
    pub fn configure(self, config: &Configuration) -> Result<Self> {
        config.check()?;
        let storage = config.checkpoint_storage()?;
        let replica = config.replica_storage()?;
        let restart = config.restart_strategy()?;
        let overrides = config.state_overrides();
        let backend = match config.state_backend() {
            Some(backend) => Some(backend),
            None if overrides.is_empty() => None,
            // `state.cache_mb` or `state.memtable_at_barrier` alone: the program's backend
            // with those settings.
            None => Some(self.config().state_backend.with_overrides(&overrides).ok_or_else(|| {
                let key = if overrides.cache_size.is_some() {
                    "state.cache_mb sets the cache in front of RocksDB"
                } else {
                    "state.memtable_at_barrier sets how RocksDB snapshots its memtable"
                };
                Error::config(format!(
                    "{key}, and the job's state backend is {}: set state.dir (or the program's RocksDB backend)",
                    self.config().state_backend.name()
                ))
            })?),
        };
        let has_storage = storage.is_some() || self.config().checkpoint.is_some();
        let c = &config.checkpoint;
        if !has_storage {
            let needs = [
                ("checkpoint.timeout", c.timeout.is_some()),
                ("checkpoint.min_pause", c.min_pause.is_some()),
                ("checkpoint.retained", c.retained.is_some()),
                ("checkpoint.tolerable_failed", c.tolerable_failed.is_some()),
                ("checkpoint.replica", replica.is_some()),
            ];
            if let Some((key, _)) = needs.iter().find(|(_, set)| *set) {
                return Err(Error::config(format!(
                    "{key} needs checkpoint storage: set checkpoint.storage (the program sets none)"
                )));
            }
        }
        let cluster_vars = config.cluster_vars();
        let c = c.clone();
        Ok(self.set(move |s| {
            if let Some(n) = config.job.parallelism {
                s.parallelism = Some(n);
            }
            if let Some(addr) = config.status.address {
                s.status_addr = Some(addr);
            }
            if let Some(addr) = config.metrics.address {
                s.metrics_addr = Some(addr);
            }
            if let Some(n) = config.job.max_parallelism {
                s.max_parallelism = Some(n);
            }
            if let Some(backend) = backend {
                s.state_backend = Some(backend);
                s.state_set_by = vec!["configure"];
            }
            if let Some(strategy) = restart {
                s.restart = Some(strategy);
            }
            if let Some(storage) = storage {
                match &mut s.checkpoint {
                    Some(chk) => chk.storage = storage,
                    None => {
                        s.checkpoint = Some(CheckpointConfig::with_storage(storage));
                        s.checkpoint_set_by = vec!["configure"];
                    }
                }
            }
            if let Some(i) = c.interval {
                s.interval = Some(i);
            }
            if let Some(chk) = &mut s.checkpoint {
                if let Some(t) = c.timeout {
                    chk.timeout = t;
                }
                if let Some(p) = c.min_pause {
                    chk.min_pause = p;
                }
                if let Some(n) = c.retained {
                    chk.retained = n;
                }
                if let Some(n) = c.tolerable_failed {
                    chk.tolerable_failed_checkpoints = n;
                }
                if let Some(r) = replica {
                    chk.replication = Some(ReplicationConfig::new(r));
                }
            }
            s.cluster_vars.extend(cluster_vars);
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::layered::Configuration;
    use crate::config::restart::RestartStrategy;
    use crate::prelude::*;
    use std::time::Duration;

    #[test]
    fn the_file_wins_over_the_program_and_fills_in_what_it_left() {
        let dir = tempfile::tempdir().unwrap();
        let config = Configuration::from_toml(&format!(
            "[job]\nparallelism = 3\n[checkpoint]\nstorage = {:?}\ninterval = \"250ms\"\nretained = 5\n\
             [restart]\nstrategy = \"fixed-delay\"\nmax_attempts = 7\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        let p = Pipeline::new("configured")
            .parallelism(2)
            .checkpoint_interval(Duration::from_secs(9));
        let p = p.configure(&config).unwrap();
        let c = p.config();
        assert_eq!(c.parallelism, 3);
        let chk = c.checkpoint.as_ref().expect("checkpointing on");
        assert_eq!(chk.interval, Duration::from_millis(250));
        assert_eq!(chk.retained, 5);
        assert_eq!(
            c.restart,
            RestartStrategy::FixedDelay {
                max_attempts: 7,
                delay: Duration::from_secs(1)
            }
        );
        c.validate().unwrap();
    }

    #[test]
    fn state_cache_mb_sizes_the_rocksdb_cache_and_is_refused_without_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let with_dir = Configuration::from_toml(&format!(
            "[state]\ndir = {:?}\ncache_mb = 8\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        let p = Pipeline::new("cached").configure(&with_dir).unwrap();
        let described = format!("{:?}", p.config().state_backend);
        assert!(described.contains(&format!("cache_size: {}", 8 << 20)), "{described}");

        // Alone, it sizes the program's RocksDB backend.
        let alone = Configuration::from_toml("[state]\ncache_mb = 0\n").unwrap();
        let p = Pipeline::new("cached")
            .state_backend(crate::state::RocksDbBackend::new(dir.path()))
            .configure(&alone)
            .unwrap();
        let described = format!("{:?}", p.config().state_backend);
        assert!(described.contains("cache_size: 0"), "{described}");

        let e = Pipeline::new("memory").configure(&alone).unwrap_err();
        assert!(
            e.to_string().contains("state.cache_mb") && e.to_string().contains("memory"),
            "{e}"
        );
        let e = Configuration::from_toml("[state]\nbackend = \"memory\"\ncache_mb = 8\n").unwrap_err();
        assert!(e.to_string().contains("state.cache_mb = 8"), "{e}");
    }

    #[test]
    fn state_memtable_at_barrier_sets_the_rocksdb_snapshot_and_is_refused_without_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let with_dir = Configuration::from_toml(&format!(
            "[state]\ndir = {:?}\nmemtable_at_barrier = \"log\"\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        let p = Pipeline::new("log").configure(&with_dir).unwrap();
        let described = format!("{:?}", p.config().state_backend);
        assert!(described.contains("memtable_at_barrier: Log"), "{described}");

        // Alone, it changes the program's RocksDB backend and keeps its cache.
        let alone = Configuration::from_toml("[state]\nmemtable_at_barrier = \"log\"\n").unwrap();
        let p = Pipeline::new("log")
            .state_backend(crate::state::RocksDbBackend::new(dir.path()).cache_size(4 << 20))
            .configure(&alone)
            .unwrap();
        let described = format!("{:?}", p.config().state_backend);
        assert!(
            described.contains("memtable_at_barrier: Log") && described.contains(&format!("cache_size: {}", 4 << 20)),
            "{described}"
        );

        let e = Pipeline::new("memory").configure(&alone).unwrap_err();
        assert!(
            e.to_string().contains("state.memtable_at_barrier") && e.to_string().contains("memory"),
            "{e}"
        );
        let e = Configuration::from_toml("[state]\nbackend = \"memory\"\nmemtable_at_barrier = \"log\"\n").unwrap_err();
        assert!(e.to_string().contains("state.memtable_at_barrier = \"log\""), "{e}");
        let e = Configuration::from_toml("[state]\nmemtable_at_barrier = \"wal\"\n").unwrap_err();
        assert!(e.to_string().contains("memtable_at_barrier"), "{e}");
    }

    #[test]
    fn keys_that_need_storage_are_refused_without_any() {
        let config = Configuration::from_toml("[checkpoint]\nretained = 5\n").unwrap();
        let e = Pipeline::new("x").configure(&config).unwrap_err();
        assert!(
            e.to_string().contains("checkpoint.retained needs checkpoint storage"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_contradictions_are_refused_naming_the_key() {
        let e = Configuration::from_toml("[checkpoint]\nintervall = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
        let e = Configuration::from_toml("[checkpoints]\ninterval = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("checkpoints"), "{e}");
        let e = Configuration::from_toml("[restart]\nstrategy = \"none\"\ndelay = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("restart.delay"), "{e}");
        let e = Configuration::from_toml("[restart]\nmax_attempts = 3\n").unwrap_err();
        assert!(e.to_string().contains("without restart.strategy"), "{e}");
        let e = Configuration::from_toml("[state]\nbackend = \"rocksdb\"\n").unwrap_err();
        assert!(e.to_string().contains("needs state.dir"), "{e}");
        let e = Configuration::from_toml("[job]\nparallelism = \"four\"\n").unwrap_err();
        assert!(e.to_string().contains("parallelism"), "{e}");
        let e = Configuration::from_toml("[checkpoint]\ninterval = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Configuration::load(Some(std::path::Path::new("/nonexistent/weir.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/weir.toml"), "{e}");
    }
}
