//! A worker's share of one attempt: the channels from other workers deployed on its data
//! plane, its subtasks built and running on their threads, and a data connection to every
//! worker its subtasks send to.
//!
//! # After a crash
//! Nothing here is durable. Cancelling stops the subtasks (as in-process), shuts the data
//! connections and closes the attempt on the data plane, so that nothing of this attempt is
//! accepted or sent any more, even if the worker was cut off and the job moved on without it.

use crate::checkpoint::restore::RestoreInput;
use crate::cluster::assignment::Assignment;
use crate::config::JobConfig;
use crate::graph::Graph;
use crate::net::frame::{Hello, PROTOCOL_VERSION};
use crate::net::inbound::{DataPlane, InboundChannel};
use crate::net::outbound::{FailureSink, OutboundConnection};
use crate::net::{NetSettings, WorkerId};
use crate::runtime::attempt::JobShared;
use crate::runtime::control::Control;
use crate::runtime::events::{FailureReport, TaskEvent};
use crate::runtime::layout::Layout;
use crate::runtime::plan::{self, Placement};
use crate::runtime::report::MetricsEntry;
use crate::{Error, Result};
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a worker needs to start its share of an attempt.
pub(crate) struct AttemptSpec<'a> {
    pub(crate) graph: &'a Graph,
    pub(crate) cfg: &'a JobConfig,
    /// Hash of graph and configuration, checked on every data connection.
    pub(crate) fingerprint: u64,
    pub(crate) me: WorkerId,
    pub(crate) attempt: u32,
    pub(crate) assignment: &'a Assignment,
    /// Every worker's data-plane address.
    pub(crate) peers: &'a BTreeMap<WorkerId, SocketAddr>,
    pub(crate) restore: &'a RestoreInput,
    /// Where this worker's subtasks stage checkpoint snapshots.
    pub(crate) snapshot_root: Option<PathBuf>,
    pub(crate) net: &'a NetSettings,
}

/// A running share of an attempt.
pub(crate) struct WorkerAttempt {
    attempt: u32,
    shared: Arc<JobShared>,
    controls: BTreeMap<usize, Sender<Control>>,
    threads: Vec<JoinHandle<()>>,
    connections: Vec<OutboundConnection>,
    /// The metrics of this worker's operators.
    metrics: Vec<MetricsEntry>,
}

impl std::fmt::Debug for WorkerAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerAttempt")
            .field("attempt", &self.attempt)
            .field("tasks", &self.controls.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WorkerAttempt {
    /// Deploys the attempt's incoming channels on `plane`, builds and starts this worker's
    /// subtasks (they report to `events`), and connects to the workers they send to. A data
    /// connection that fails later is reported to `events` as [`TaskEvent::AttemptFailed`].
    ///
    /// # Errors
    /// Whatever building the subtasks or connecting to a peer returned; what was started is
    /// cancelled first.
    pub(crate) fn start(spec: AttemptSpec<'_>, plane: &DataPlane, events: Sender<TaskEvent>) -> Result<Self> {
        let layout = Layout::of(spec.graph, spec.cfg)?;
        let worker_of_task = &spec.assignment.worker_of_task;
        if worker_of_task.len() != layout.task_count() {
            return Err(Error::internal(format!(
                "the assignment places {} subtasks, the job has {}",
                worker_of_task.len(),
                layout.task_count()
            )));
        }
        let inbound: Vec<InboundChannel> = layout
            .channels(spec.graph)
            .into_iter()
            .filter(|c| worker_of_task[c.to_task] == spec.me && worker_of_task[c.from_task] != spec.me)
            .map(|c| InboundChannel {
                channel: c.id,
                from: worker_of_task[c.from_task],
                codec: spec.graph.nodes[spec.graph.edges[c.id.edge as usize].from].output,
            })
            .collect();
        let ends = plane.open_attempt(&spec.cfg.name, spec.fingerprint, spec.attempt, &inbound)?;
        let shared = Arc::new(JobShared::new(
            spec.snapshot_root.clone(),
            spec.cfg.fail_points(),
            spec.attempt,
        ));
        let placement = Placement {
            me: spec.me,
            worker_of_task: worker_of_task.clone(),
            inbound: ends,
        };
        let built = plan::build(
            spec.graph,
            spec.cfg,
            shared.clone(),
            events.clone(),
            spec.restore,
            Some(placement),
        );
        let plan = match built {
            Ok(p) => p,
            Err(e) => {
                plane.close_attempt(spec.attempt);
                return Err(e);
            }
        };
        let mut me = WorkerAttempt {
            attempt: spec.attempt,
            shared,
            controls: plan.controls,
            threads: Vec::new(),
            connections: Vec::new(),
            metrics: plan.metrics,
        };
        let started = (|| {
            for task in plan.tasks {
                me.threads
                    .push(task.spawn().map_err(|e| Error::io("spawning a subtask thread", e))?);
            }
            let failed: FailureSink = {
                let events = events.clone();
                Arc::new(move |e: Error| {
                    let _ = events.send(TaskEvent::AttemptFailed {
                        report: FailureReport::new(e),
                    });
                })
            };
            for (peer, channels) in plan.outbound {
                let addr = *spec.peers.get(&peer).ok_or_else(|| {
                    Error::internal(format!(
                        "no data address of worker {peer}, which runs subtasks of this attempt"
                    ))
                })?;
                let hello = Hello {
                    protocol: PROTOCOL_VERSION,
                    job: spec.cfg.name.clone(),
                    fingerprint: spec.fingerprint,
                    attempt: spec.attempt,
                    from: spec.me,
                };
                let conn = OutboundConnection::open(addr, hello, channels, spec.net, failed.clone())
                    .map_err(|e| e.context(format!("worker {} connecting to worker {peer}", spec.me)))?;
                me.connections.push(conn);
            }
            Ok(())
        })();
        if let Err(e) = started {
            me.cancel(plane);
            me.join(Duration::from_secs(30));
            return Err(e);
        }
        Ok(me)
    }

    /// The attempt's number.
    pub(crate) fn number(&self) -> u32 {
        self.attempt
    }

    /// Records this worker's source subtasks read and its sink subtasks received, in this
    /// attempt.
    pub(crate) fn records(&self) -> (u64, u64) {
        let source = self
            .metrics
            .iter()
            .filter(|m| m.is_source)
            .map(|m| m.metrics.records_out())
            .sum();
        let sink = self
            .metrics
            .iter()
            .filter(|m| m.is_sink)
            .map(|m| m.metrics.records_in())
            .sum();
        (source, sink)
    }

    /// The counters of each subtask this worker runs in this attempt.
    pub(crate) fn counters(&self) -> Vec<crate::runtime::status::SubtaskCounters> {
        crate::runtime::status::SubtaskCounters::of(&self.metrics)
    }

    /// The subtasks this worker runs.
    pub(crate) fn tasks(&self) -> impl Iterator<Item = usize> + '_ {
        self.controls.keys().copied()
    }

    /// Hands `control` to subtask `task` (ignored for a subtask not run here).
    pub(crate) fn control(&self, task: usize, control: Control) {
        if let Some(c) = self.controls.get(&task) {
            let _ = c.send(control);
        }
    }

    /// Stops everything of the attempt at once: subtasks, data connections, and the channels
    /// deployed on the data plane.
    pub(crate) fn cancel(&self, plane: &DataPlane) {
        self.shared.cancel();
        for c in self.controls.values() {
            let _ = c.send(Control::Cancel);
        }
        for c in &self.connections {
            c.abort();
        }
        plane.close_attempt(self.attempt);
    }

    /// Waits for the subtask threads and connections to end, at most `timeout`; false if some
    /// did not (they are left running, detached).
    pub(crate) fn join(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in self.connections.drain(..) {
            c.join();
        }
        true
    }
}
