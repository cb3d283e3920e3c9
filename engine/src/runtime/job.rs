//! Starting a job: validation, the checkpoint coordinator, the master thread and the handle.
//!
//! The master (`runtime::master`) alone decides that a checkpoint is complete: after
//! every subtask acknowledged its barrier and, with checkpoint storage, after the checkpoint's
//! metadata is durable. Only then are sinks told to commit. Any failure cancels every subtask
//! of the attempt; the restart strategy then decides whether a new attempt restores the latest
//! completed checkpoint. No thread of an attempt outlives it.

use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::pointer::CheckpointPointer;
use crate::checkpoint::staging::StagingArea;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::runtime::handle::{JobHandle, JobStopper, Live};
use crate::runtime::master::Master;
use crate::runtime::plan;
use crate::runtime::status_server::server::serve_status;
use crate::runtime::status_server::snapshot::JobShape;
use crate::{Error, Result};
use crossbeam_channel::unbounded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Distinguishes runs of the same job within one process.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Starts the job described by `graph`.
pub(crate) fn start(graph: Arc<Graph>, cfg: JobConfig) -> Result<JobHandle> {
    start_on(graph, cfg, None, None)
}

/// Starts the job described by `graph` with its subtasks on `remote` workers (in this process
/// when `None`). With workers, the master keeps no keyed state: each worker locks its own
/// state directory, and restores and uploads its own subtasks' snapshots. `pointer` keeps the
/// latest-checkpoint pointer and the id counter (the storage's listing when `None`).
pub(crate) fn start_on(
    graph: Arc<Graph>,
    cfg: JobConfig,
    remote: Option<Box<dyn crate::runtime::remote::RemoteExecutor>>,
    pointer: Option<Arc<dyn CheckpointPointer>>,
) -> Result<JobHandle> {
    let on_workers = remote.is_some();
    plan::validate(&graph, &cfg)?;
    if let Some(addr) = cfg.metrics_addr {
        crate::metrics::serve(addr)?;
    }
    // Everything that can be checked before starting is: `start` returns these errors itself.
    let keyed = graph
        .nodes
        .iter()
        .any(|n| matches!(n.kind, crate::graph::NodeKind::Operator { keyed: true, .. }));
    if keyed && !on_workers {
        cfg.state_backend.validate()?;
    }
    for n in &graph.nodes {
        if let crate::graph::NodeKind::Source(src) = &n.kind {
            src.splits()
                .map_err(|e| e.context(format!("listing the splits of source \"{}\"", n.name)))?;
        }
    }
    // One process per job on its checkpoint storage (taken by the coordinator) and on its
    // state directory: a second process fails here, naming the first.
    let coordinator = match &cfg.checkpoint {
        Some(c) => {
            // Unique per run: two runs of a job (even in one process) never share staging,
            // and a later process that happens to get the same pid does not reuse the name.
            let run = format!(
                "{}-{}-{}-{}",
                crate::state::backend::dir_name(&cfg.name),
                std::process::id(),
                RUN_COUNTER.fetch_add(1, Ordering::Relaxed),
                crate::wall_clock::now_ms()
            );
            let parent = match cfg.state_backend.local_dir() {
                Some(d) => d.join("_snapshots"),
                // Shared by the user's runs (so that a later one removes what a crashed one
                // left), not with other users.
                None => std::env::temp_dir().join(format!(
                    "weir-snapshots-{}",
                    crate::state::backend::dir_name(
                        &std::env::var("USER")
                            .or_else(|_| std::env::var("LOGNAME"))
                            .unwrap_or_default()
                    )
                )),
            };
            let staging = StagingArea::create(&parent, &run)?;
            Some(
                match pointer {
                    Some(p) => Coordinator::with_pointer(c.clone(), &cfg.name, cfg.max_parallelism, staging, p)?,
                    None => Coordinator::new(c.clone(), &cfg.name, cfg.max_parallelism, staging)?,
                }
                .with_fail_points(cfg.fail_points())
                .materializing(!on_workers),
            )
        }
        None => None,
    };
    let state_lock = if keyed && !on_workers {
        cfg.state_backend.lock_job(&cfg.name)?
    } else {
        None
    };
    let (events_tx, events_rx) = unbounded();
    let live = Arc::new(Live::default());
    // Bound before the master starts: an address in use fails the start.
    let status = match cfg.status_addr {
        Some(addr) => Some(serve_status(
            addr,
            live.clone(),
            JobShape::of(&graph, &cfg)?,
            JobStopper::new(live.clone(), events_tx.clone()),
        )?),
        None => None,
    };
    let master = {
        let (live, events_tx) = (live.clone(), events_tx.clone());
        std::thread::Builder::new()
            .name(format!("weir-master-{}", cfg.name))
            .spawn(move || {
                // Held until the job ends (the coordinator holds the storage's lease).
                let _state_lock = state_lock;
                let mut m = Master::new(graph, cfg, coordinator, events_rx, events_tx, live);
                if let Some(remote) = remote {
                    m = m.with_remote(remote);
                }
                m.run()
            })
            .map_err(|e| Error::io("spawning the job master thread", e))?
    };
    Ok(JobHandle {
        live,
        events: events_tx,
        master: Some(master),
        status,
    })
}
