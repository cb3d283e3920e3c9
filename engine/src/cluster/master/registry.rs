//! The master's knowledge of its workers and of the attempt they run: who registered, when each
//! was last heard from, which subtasks of the current attempt each runs and which have exited.
//! Decisions only; the RPC service and the executor carry them out.
//!
//! # After a crash
//! Nothing here is durable. A master that restarts starts with no workers; they register again
//! (their heartbeats are answered [`Pulse::Unknown`]), and its attempts are numbered above any
//! attempt a registering worker ran, so the workers' data planes take them as newer.

use crate::cluster::protocol::{AttemptProgress, Pulse, WorkerHello, WorkerServiceClient};
use crate::net::WorkerId;
use crate::runtime::events::{FailureReport, TaskEvent, TaskOutcome};
use crate::runtime::status::{SubtaskCounters, WorkerStatus};
use crate::{Error, ErrorKind};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A registered worker.
pub(crate) struct WorkerEntry {
    pub(crate) hello: WorkerHello,
    pub(crate) client: WorkerServiceClient,
    pub(crate) last_seen: Instant,
    /// Whether it has heartbeated since it registered: it took the master's session and
    /// accepts deployments (a deployment sent before would be refused as another master's).
    pub(crate) ready: bool,
    /// What its last heartbeat said.
    pub(crate) progress: AttemptProgress,
}

/// The attempt deployed on the workers.
pub(crate) struct ActiveAttempt {
    /// Its number on the wire.
    pub(crate) wire: u32,
    /// Where its events go (the master's event channel).
    pub(crate) events: Sender<TaskEvent>,
    /// The subtasks of each worker.
    pub(crate) tasks_of: BTreeMap<WorkerId, BTreeSet<usize>>,
    /// Subtasks whose exit was reported.
    pub(crate) exited: BTreeSet<usize>,
    /// Whether a lost worker already failed it.
    pub(crate) failed: bool,
}

/// Workers and the current attempt.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) workers: BTreeMap<WorkerId, WorkerEntry>,
    pub(crate) attempt: Option<ActiveAttempt>,
    /// The newest attempt any worker registered with had run.
    pub(crate) newest_seen: u32,
}

impl Registry {
    /// Takes `hello`'s worker in; a worker registered under the same number before is taken as
    /// lost (its process restarted, or another process took its number).
    pub(crate) fn register(&mut self, hello: WorkerHello, client: WorkerServiceClient, now: Instant) {
        let id = hello.worker;
        if self.workers.contains_key(&id) {
            self.lose(id, "it registered again (its process restarted)");
        }
        self.newest_seen = self.newest_seen.max(hello.last_attempt);
        self.workers.insert(
            id,
            WorkerEntry {
                hello,
                client,
                last_seen: now,
                ready: false,
                progress: AttemptProgress::default(),
            },
        );
    }

    /// A heartbeat of `worker`; the flag says whether the worker just became ready.
    pub(crate) fn heartbeat(&mut self, worker: WorkerId, progress: AttemptProgress, now: Instant) -> (Pulse, bool) {
        match self.workers.get_mut(&worker) {
            Some(w) => {
                w.last_seen = now;
                w.progress = progress;
                let became_ready = !w.ready;
                w.ready = true;
                (Pulse::Known, became_ready)
            }
            None => (Pulse::Unknown, false),
        }
    }

    /// Records the current attempt's sources read and sinks received, over its workers.
    pub(crate) fn records(&self) -> (u64, u64) {
        let Some(a) = &self.attempt else { return (0, 0) };
        self.workers
            .values()
            .filter(|w| w.progress.attempt == a.wire)
            .fold((0, 0), |(s, k), w| {
                (s + w.progress.source_records, k + w.progress.sink_records)
            })
    }

    /// Every subtask's counters in the current attempt, as its worker last reported them.
    pub(crate) fn subtasks(&self) -> Vec<SubtaskCounters> {
        let Some(a) = &self.attempt else { return Vec::new() };
        self.workers
            .values()
            .filter(|w| w.progress.attempt == a.wire)
            .flat_map(|w| w.progress.subtasks.iter().copied())
            .collect()
    }

    /// The registered workers: alive while heard from within `timeout`.
    pub(crate) fn status(&self, timeout: Duration, now: Instant) -> Vec<WorkerStatus> {
        self.workers
            .iter()
            .map(|(&id, w)| {
                let silent = now.saturating_duration_since(w.last_seen);
                WorkerStatus {
                    id,
                    address: w.hello.control.to_string(),
                    pid: w.hello.pid,
                    slots: w.hello.slots,
                    alive: silent <= timeout,
                    last_heartbeat_ms: silent.as_millis() as u64,
                }
            })
            .collect()
    }

    /// The workers that can take a deployment.
    pub(crate) fn ready(&self) -> impl Iterator<Item = (&WorkerId, &WorkerEntry)> {
        self.workers.iter().filter(|(_, w)| w.ready)
    }

    /// Forwards `events` of `worker` for wire attempt `attempt` to the master, in order;
    /// events of any other attempt, and of subtasks already counted as exited, are dropped.
    pub(crate) fn report(&mut self, worker: WorkerId, attempt: u32, events: Vec<TaskEvent>, now: Instant) -> Pulse {
        let Some(w) = self.workers.get_mut(&worker) else {
            return Pulse::Unknown;
        };
        w.last_seen = now;
        let Some(a) = self.attempt.as_mut().filter(|a| a.wire == attempt) else {
            return Pulse::Known;
        };
        let mine = a.tasks_of.get(&worker);
        for e in events {
            match &e {
                TaskEvent::Exited { task, .. } => {
                    if !mine.is_some_and(|m| m.contains(task)) || !a.exited.insert(*task) {
                        continue;
                    }
                }
                TaskEvent::Running { task } | TaskEvent::SourceExhausted { task } => {
                    if !mine.is_some_and(|m| m.contains(task)) {
                        continue;
                    }
                }
                TaskEvent::Ack { ack } => {
                    if !mine.is_some_and(|m| m.contains(&ack.task)) {
                        continue;
                    }
                }
                TaskEvent::AttemptFailed { .. } => {}
                // The master makes these itself.
                TaskEvent::Uploaded { .. } | TaskEvent::CancelRequested => continue,
            }
            let _ = a.events.send(e);
        }
        Pulse::Known
    }

    /// Workers not heard from within `timeout`: each is lost.
    pub(crate) fn expire(&mut self, timeout: Duration, now: Instant) -> Vec<WorkerId> {
        let silent: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.duration_since(w.last_seen) > timeout)
            .map(|(&id, _)| id)
            .collect();
        for &id in &silent {
            self.lose(id, &format!("no heartbeat for {timeout:?}"));
        }
        silent
    }

    /// Forgets `worker`. If it runs subtasks of the current attempt, the attempt fails (once)
    /// and each of its subtasks not yet exited is reported exited, cancelled.
    pub(crate) fn lose(&mut self, worker: WorkerId, why: &str) {
        if self.workers.remove(&worker).is_some() {
            tracing::warn!(worker, "worker lost: {why}");
        }
        let Some(a) = self.attempt.as_mut() else { return };
        let Some(tasks) = a.tasks_of.remove(&worker) else {
            return;
        };
        if !a.failed {
            a.failed = true;
            let e = Error::external(true, format!("worker {worker} was lost: {why}"));
            let _ = a.events.send(TaskEvent::AttemptFailed {
                report: FailureReport::new(e),
            });
        }
        for t in tasks {
            if a.exited.insert(t) {
                let _ = a.events.send(TaskEvent::Exited {
                    task: t,
                    outcome: TaskOutcome::Failed(FailureReport::new(Error::new(
                        ErrorKind::Cancelled,
                        format!("worker {worker} was lost"),
                    ))),
                });
            }
        }
    }
}
