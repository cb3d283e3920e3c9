//! What the builder methods of a [`Pipeline`](super::Pipeline) were told, and the one
//! [`JobConfig`] it resolves to. The resolution does not depend on the order of the calls:
//! `.checkpoint_interval(60 s).checkpoint_storage(dir)` and
//! `.checkpoint_storage(dir).checkpoint_interval(60 s)` give the same job.
//!
//! Rules:
//! - a method called twice keeps its last value (an explicit override);
//! - a dedicated setter (`checkpoint_interval`, `restore_mode`) overrides the matching field of
//!   the checkpoint configuration whichever came first;
//! - two different methods that set the same thing (`state_backend` and `state_dir`,
//!   `checkpoint_storage` and `checkpointing`) are a configuration error, because which one
//!   wins would depend on their order.

use crate::checkpoint::{CheckpointConfig, RestoreMode, SavepointRestore};
use crate::config::JobConfig;
use crate::state::StateBackend;
use std::sync::Arc;
use std::time::Duration;

/// The explicit settings of a pipeline, by the method that gave them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) parallelism: Option<usize>,
    pub(crate) max_parallelism: Option<usize>,
    /// The state backend and the methods that set one.
    pub(crate) state_backend: Option<Arc<dyn StateBackend>>,
    pub(crate) state_set_by: Vec<&'static str>,
    /// The checkpoint configuration and the methods that set one.
    pub(crate) checkpoint: Option<CheckpointConfig>,
    pub(crate) checkpoint_set_by: Vec<&'static str>,
    /// `checkpoint_interval`: the checkpoint interval with storage, the commit interval without.
    pub(crate) interval: Option<Duration>,
    pub(crate) restore: Option<RestoreMode>,
    /// `from_savepoint`: the savepoint a job without checkpoints of its own starts from.
    pub(crate) savepoint: Option<SavepointRestore>,
    /// `fallback_to_older_checkpoint_reproducing_output` was called.
    pub(crate) fallback_reproducing_output: bool,
    pub(crate) restart: Option<crate::config::restart::RestartStrategy>,
    pub(crate) batch_size: Option<usize>,
    pub(crate) channel_capacity: Option<usize>,
    /// `cancellation_timeout`: the timeout and what happens when it passes.
    pub(crate) cancellation: Option<(Duration, crate::config::cancellation_timeout::CancellationTimeoutAction)>,
    /// `fail_points`: the job's own fail points.
    pub(crate) fail_points: Option<crate::fail::FailPoints>,
    /// `status_addr`: where the status server listens.
    pub(crate) status_addr: Option<std::net::SocketAddr>,
    /// `configure`: deployment variables from a configuration file's `[cluster]` section.
    pub(crate) cluster_vars: std::collections::BTreeMap<String, String>,
    /// `metrics_addr`: where the job's process serves its metrics.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
}

/// Records that `method` set what `set_by` tracks (each method once).
pub(crate) fn note(set_by: &mut Vec<&'static str>, method: &'static str) {
    if !set_by.contains(&method) {
        set_by.push(method);
    }
}

impl Settings {
    /// The job configuration these settings give, on top of [`JobConfig::new`]'s defaults.
    /// Conflicting settings become configuration errors that `JobConfig::validate` reports.
    pub(crate) fn resolve(&self, name: &str) -> JobConfig {
        let mut c = JobConfig::new(name);
        if let Some(n) = self.parallelism {
            c.parallelism = n;
        }
        if let Some(n) = self.max_parallelism {
            c.max_parallelism = n;
        }
        if let Some(b) = &self.state_backend {
            c.state_backend = b.clone();
        }
        if let Some(r) = &self.restart {
            c.restart = r.clone();
        }
        if let Some(n) = self.batch_size {
            c.batch_size = n;
        }
        if let Some(n) = self.channel_capacity {
            c.channel_capacity = n;
        }
        if let Some((timeout, action)) = self.cancellation {
            c.cancellation_timeout = timeout;
            c.on_cancellation_timeout = action;
        }
        c.fail_points = self.fail_points.clone();
        c.status_addr = self.status_addr;
        c.cluster_vars = self.cluster_vars.clone();
        c.metrics_addr = self.metrics_addr;
        c.checkpoint = self.checkpoint.clone();
        match (&mut c.checkpoint, self.interval) {
            (Some(chk), Some(i)) => chk.interval = i,
            (None, Some(i)) => c.commit_interval = i,
            (_, None) => {}
        }
        match (&mut c.checkpoint, self.restore) {
            (Some(chk), Some(mode)) => chk.restore = mode,
            (None, Some(_)) => c.builder_errors.push(
                "restore_mode() needs checkpoint storage: also call checkpoint_storage() or checkpointing()".into(),
            ),
            (_, None) => {}
        }
        match (&mut c.checkpoint, &self.savepoint) {
            (Some(chk), Some(sp)) => chk.from_savepoint = Some(sp.clone()),
            (None, Some(_)) => c.builder_errors.push(
                "from_savepoint() needs checkpoint storage: also call checkpoint_storage() or checkpointing()".into(),
            ),
            (_, None) => {}
        }
        if self.fallback_reproducing_output {
            match &mut c.checkpoint {
                Some(chk) => chk.fallback_to_older_checkpoint_reproducing_output = true,
                None => c.builder_errors.push(
                    "fallback_to_older_checkpoint_reproducing_output() needs checkpoint storage: also call checkpoint_storage() or checkpointing()".into(),
                ),
            }
        }
        for (what, set_by) in [
            ("where keyed state lives", &self.state_set_by),
            ("the checkpoint storage", &self.checkpoint_set_by),
        ] {
            if set_by.len() > 1 {
                c.builder_errors.push(format!(
                    "{} both set {what}; call only one of them (which one wins would depend on the order of the calls)",
                    set_by
                        .iter()
                        .map(|m| format!("{m}()"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ));
            }
        }
        c
    }
}
