//! One job across several processes and machines: a master and N workers running the same
//! executable, which builds the same graph in every process.
//!
//! # The design
//!
//! - **Roles** come from the environment ([`config`]): in-process (the default), a local
//!   cluster launched by the program itself on loopback, or the master or a worker of a cluster
//!   spread over machines (Kubernetes: a master Deployment and a worker StatefulSet).
//! - **Placement** ([`assignment`]): before every attempt the master assigns subtasks to the
//!   workers present by slot sharing; a chain is one subtask and never split.
//! - **Data plane** ([`crate::net`]): channels between subtasks of different workers travel
//!   over one TCP connection per pair of workers and attempt, in order, with per-channel
//!   credits so that a channel held by barrier alignment never stalls the others.
//! - **Control plane**: master and workers call each other over RPC with serializable
//!   messages ([`crate::runtime::control::Control`] down, task events up); every message names
//!   the attempt, and a worker drops what belongs to another one.
//! - **Failure detection**: a closed connection or heartbeats missing for the heartbeat timeout
//!   fail the attempt; failover is global (every worker cancels, the job restores the latest
//!   completed checkpoint on the workers present). A worker that loses the master cancels its
//!   subtasks on its own, so nothing of an old attempt reaches a sink after the timeout.
//! - **High availability** ([`ha`]): with etcd, two or more masters elect a leader; its term
//!   fences the latest-checkpoint pointer, the id counter and every call to the workers.

pub mod assignment;
pub mod config;
pub mod ha;
pub mod launcher;
pub(crate) mod master;
pub(crate) mod protocol;
pub(crate) mod rpc;
pub(crate) mod savepoint_relay;
pub(crate) mod worker;

pub use assignment::{assign, Assignment, SubtaskShape, WorkerSlots};
pub use config::{Deployment, HaSettings, Heartbeats, MasterSettings, WorkerSettings};
pub use ha::STEPPED_DOWN_EXIT;
pub use launcher::{ClusterPids, INCARNATION_ENV, PIDS_ENV};

use crate::config::JobConfig;
use crate::graph::Graph;
use crate::runtime::handle::JobHandle;
use crate::runtime::job;
use crate::Result;
use std::sync::Arc;

/// Starts the job the way this process's environment says ([`Deployment::from_env`], with the
/// configuration file's `[cluster]` keys where no variable is set): in this
/// process, as a local cluster, or as the master or a worker of a cluster.
///
/// A worker never returns from here unless it fails: it runs until the master ends the job,
/// then the process exits. A master started by the local launcher writes the job's outcome
/// for the launcher and exits too.
///
/// # Errors
/// `Config` for a bad deployment setting or a pipeline that cannot run; a worker's error when
/// the master refused it or could not be reached.
pub(crate) fn start(graph: Graph, mut cfg: JobConfig) -> Result<JobHandle> {
    let deployment = Deployment::from_vars(|k| std::env::var(k).ok().or_else(|| cfg.cluster_vars.get(k).cloned()))?;
    if let Some(addr) = config::metrics_addr_from_env()? {
        cfg.metrics_addr = Some(addr);
    }
    launcher::watch_supervisor();
    match deployment {
        Deployment::InProcess => job::start(Arc::new(graph), cfg),
        Deployment::Local {
            workers,
            slots,
            masters,
        } => {
            crate::runtime::plan::validate(&graph, &cfg)?;
            launcher::start(&cfg.name, workers, slots, masters, cfg.metrics_addr)
        }
        Deployment::Master(settings) => {
            let mut cfg = cfg;
            if let Some(addr) = settings.status {
                cfg.status_addr = Some(addr);
            }
            let started = (|| {
                let mut cfg = cfg;
                cfg.metrics_addr = settings.metrics.or(cfg.metrics_addr);
                crate::runtime::plan::validate(&graph, &cfg)?;
                let graph = Arc::new(graph);
                // With etcd, a standby waits here until it leads.
                let lead = match &settings.ha {
                    Some(ha) => Some(ha::lead(ha, &cfg.name, &settings)?),
                    None => None,
                };
                let leadership = lead.as_ref().map(|l| l.leadership.clone());
                let remote = master::ClusterMaster::start(graph.clone(), &cfg, settings, leadership)?;
                job::start_on(graph, cfg, Some(Box::new(remote)), lead.map(|l| l.pointer))
            })();
            if std::env::var_os(launcher::REPORT_ENV).is_some() {
                let result = started.and_then(launcher::show_progress_until_done);
                launcher::report_and_exit_if_launched(result)?;
                unreachable!("a launched master exits after reporting");
            }
            started
        }
        Deployment::Worker(settings) => match worker::run(graph, cfg, settings)? {},
    }
}

/// What every process of a job must agree on: the graph and the settings that shape its
/// physical plan.
pub(crate) fn fingerprint(graph: &Graph, cfg: &JobConfig) -> u64 {
    let settings = format!(
        "{} parallelism={} max_parallelism={} checkpoints={}",
        cfg.name,
        cfg.parallelism,
        cfg.max_parallelism,
        cfg.checkpoint.is_some()
    );
    graph.fingerprint() ^ xxhash_rust::xxh3::xxh3_64(settings.as_bytes())
}
