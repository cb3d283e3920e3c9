//! The checkpoint protocol of one attempt as a pure state machine: it decides, the master does
//! the I/O. Every event (a tick, an acknowledgement, the end of an upload or publication, an
//! exhausted source, the end of the attempt) returns the [`Action`]s the master carries out,
//! in order. Time is an argument; nothing here reads a clock, touches a file or a channel.
//!
//! At most one checkpoint is in flight ([`InFlight`]). A checkpoint is triggered when the
//! interval elapsed since the last trigger, the minimum pause since the last completion or
//! failure, and every subtask runs; the first one of a fresh start at once. Once every source
//! is exhausted, the final checkpoint is triggered instead (it is never aborted on timeout
//! while aligning: its barrier is followed by end of stream and always arrives).
//!
//! # After a crash
//! Sinks are told to commit checkpoint `n` ([`Action::NotifyComplete`]) only after its
//! metadata is durable ([`CheckpointTracker::on_published`]), or, without checkpoint storage,
//! once every subtask acknowledged it. A checkpoint aborted before all acks arrived has its
//! staged files discarded ([`Action::DiscardStaged`]) only once every subtask acknowledged it
//! (none writes below its staging directory any more); otherwise the next attempt clears the
//! staging.

mod actions;

pub(crate) use actions::{AbortReason, AckOutcome, Action, TrackerConfig};

use super::ack::CheckpointAck;
use super::metadata::CheckpointMetadata;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// What is in flight: at most one checkpoint.
#[derive(Debug)]
pub(crate) enum InFlight {
    /// Nothing.
    Idle,
    /// Barrier sent; acknowledgements arrive, per subtask.
    Aligning {
        barrier: Barrier,
        triggered: Instant,
        acks: BTreeMap<usize, CheckpointAck>,
    },
    /// Snapshots being uploaded; `abandoned` once timed out (its result is then ignored).
    Uploading {
        barrier: Barrier,
        triggered: Instant,
        abandoned: bool,
    },
    /// Metadata being published.
    Publishing { barrier: Barrier },
}

/// The checkpoint protocol of one attempt.
#[derive(Debug)]
pub(crate) struct CheckpointTracker {
    cfg: TrackerConfig,
    /// Subtasks of the attempt: `0..subtasks`.
    subtasks: usize,
    sources: BTreeSet<usize>,
    exhausted: BTreeSet<usize>,
    running: BTreeSet<usize>,
    in_flight: InFlight,
    next_trigger: Instant,
    final_id: Option<CheckpointId>,
    /// Checkpoints that failed since the last completed one (or the attempt's start).
    failed_in_a_row: u32,
    /// Aborted while aligning: the subtasks that acknowledged them so far.
    aborted: BTreeMap<CheckpointId, BTreeSet<usize>>,
    /// The attempt ended: nothing more is triggered.
    stopped: bool,
    /// A savepoint was requested ([`Savepoint`](BarrierKind::Savepoint) or
    /// [`StopWithSavepoint`](BarrierKind::StopWithSavepoint)) and is triggered next.
    savepoint_requested: Option<BarrierKind>,
}

impl CheckpointTracker {
    /// The protocol of an attempt with `subtasks` subtasks, of which `sources` read sources,
    /// starting at `now`.
    pub(crate) fn new(cfg: TrackerConfig, subtasks: usize, sources: BTreeSet<usize>, now: Instant) -> Self {
        let next_trigger = if cfg.restored { now + cfg.interval } else { now };
        CheckpointTracker {
            cfg,
            subtasks,
            sources,
            exhausted: BTreeSet::new(),
            running: BTreeSet::new(),
            in_flight: InFlight::Idle,
            next_trigger,
            final_id: None,
            failed_in_a_row: 0,
            aborted: BTreeMap::new(),
            stopped: false,
            savepoint_requested: None,
        }
    }

    /// What is in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Whether an upload is running (the attempt must wait for it before it ends).
    pub(crate) fn uploading(&self) -> bool {
        matches!(self.in_flight, InFlight::Uploading { .. })
    }

    /// Subtask `task` runs (its state is restored).
    pub(crate) fn on_running(&mut self, task: usize) {
        if task < self.subtasks {
            self.running.insert(task);
        }
    }

    /// Whether every subtask runs.
    pub(crate) fn all_running(&self) -> bool {
        self.running.len() == self.subtasks
    }

    /// Periodic: timeouts, then a trigger when one is due.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.stopped {
            return actions;
        }
        let timeout = self.cfg.timeout;
        let timed_out = |triggered: Instant| timeout.is_some_and(|t| now.saturating_duration_since(triggered) > t);
        match &mut self.in_flight {
            // The final barrier is followed by end of stream on every channel: it cannot be
            // triggered again, and it always arrives, so it is never aborted.
            InFlight::Aligning {
                barrier,
                triggered,
                acks,
            } if barrier.kind != BarrierKind::Final && timed_out(*triggered) => {
                let id = barrier.id;
                if barrier.kind == BarrierKind::StopWithSavepoint {
                    // Sources ended their output after the barrier: this attempt cannot go on.
                    // The next one restores the latest checkpoint and the job keeps running.
                    self.in_flight = InFlight::Idle;
                    self.stopped = true;
                    let abort = self.abort_action(id, AbortReason::TimedOut);
                    actions.push(abort);
                    actions.push(Action::FailAttempt {
                        error: Error::checkpoint(format!(
                            "stop with savepoint {id} timed out while aligning; the job restarts from its latest \
                             completed checkpoint and keeps running"
                        )),
                    });
                    return actions;
                }
                // Subtasks that have not acknowledged it may still be writing its snapshots.
                let acked = acks.keys().copied().collect();
                self.aborted.insert(id, acked);
                self.in_flight = InFlight::Idle;
                self.next_trigger = now + self.cfg.min_pause;
                self.checkpoint_failed(id, AbortReason::TimedOut, &mut actions);
            }
            InFlight::Uploading {
                barrier,
                triggered,
                abandoned,
            } if !*abandoned && timed_out(*triggered) => {
                // Its result is ignored when it arrives; files it stored are garbage-collected.
                *abandoned = true;
                let id = barrier.id;
                let what = if barrier.kind == BarrierKind::StopWithSavepoint {
                    format!("stop with savepoint {id} timed out while uploading")
                } else {
                    "the final checkpoint timed out".to_string()
                };
                if self.final_id == Some(id) {
                    actions.push(self.abort_action(id, AbortReason::UploadTimedOut));
                    actions.push(Action::FailAttempt {
                        error: Error::checkpoint(what),
                    });
                    self.stopped = true;
                    return actions;
                }
                self.checkpoint_failed(id, AbortReason::UploadTimedOut, &mut actions);
            }
            _ => {}
        }
        self.maybe_trigger(now, &mut actions);
        actions
    }

    /// The user asked for a savepoint (`stop`: and then to stop the job): it is triggered as
    /// soon as nothing is in flight and every subtask runs, whatever the interval says.
    pub(crate) fn request_savepoint(&mut self, stop: bool, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.savepoint_requested = Some(if stop {
            BarrierKind::StopWithSavepoint
        } else {
            BarrierKind::Savepoint
        });
        self.maybe_trigger(now, &mut actions);
        actions
    }

    /// Whether a requested savepoint waits to be triggered.
    pub(crate) fn savepoint_pending(&self) -> bool {
        self.savepoint_requested.is_some()
    }

    /// A source subtask read all of its input.
    pub(crate) fn on_source_exhausted(&mut self, task: usize, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.sources.contains(&task) {
            self.exhausted.insert(task);
        }
        self.maybe_trigger(now, &mut actions);
        actions
    }

    /// The master took an id for the checkpoint it was told to trigger and sent `barrier`.
    pub(crate) fn on_triggered(&mut self, barrier: Barrier, now: Instant) {
        if barrier.kind.ends_stream() {
            self.final_id = Some(barrier.id);
        }
        self.in_flight = InFlight::Aligning {
            barrier,
            triggered: now,
            acks: BTreeMap::new(),
        };
        self.next_trigger = now + self.cfg.interval;
    }

    /// A subtask acknowledged a barrier.
    pub(crate) fn on_ack(&mut self, ack: CheckpointAck) -> (AckOutcome, Vec<Action>) {
        let (task, id) = (ack.task, ack.barrier.id);
        if task >= self.subtasks {
            return (AckOutcome::UnknownSubtask, Vec::new());
        }
        if let Some(acked) = self.aborted.get_mut(&id) {
            if !acked.insert(task) {
                return (AckOutcome::Duplicate, Vec::new());
            }
            let mut actions = Vec::new();
            if acked.len() == self.subtasks {
                self.aborted.remove(&id);
                actions.push(Action::DiscardStaged { id });
            }
            return (AckOutcome::LateForAborted, actions);
        }
        let InFlight::Aligning { barrier, acks, .. } = &mut self.in_flight else {
            return (AckOutcome::NotInFlight, Vec::new());
        };
        if barrier.id != id {
            return (AckOutcome::NotInFlight, Vec::new());
        }
        if acks.contains_key(&task) {
            return (AckOutcome::Duplicate, Vec::new());
        }
        acks.insert(task, ack);
        let remaining = self.subtasks - acks.len();
        if remaining > 0 {
            return (AckOutcome::Recorded { remaining }, Vec::new());
        }
        let InFlight::Aligning {
            barrier,
            triggered,
            acks,
        } = std::mem::replace(&mut self.in_flight, InFlight::Idle)
        else {
            unreachable!("aligning checked above")
        };
        let mut actions = Vec::new();
        if self.cfg.persisted {
            self.in_flight = InFlight::Uploading {
                barrier,
                triggered,
                abandoned: false,
            };
            actions.push(Action::StartUpload {
                barrier,
                acks: acks.into_values().collect(),
            });
        } else {
            // Nothing to persist: the barrier only marks what sinks may commit.
            actions.push(Action::NotifyComplete { id });
        }
        (AckOutcome::Recorded { remaining: 0 }, actions)
    }

    /// The upload of checkpoint `id` ended.
    pub(crate) fn on_upload_finished(
        &mut self,
        id: CheckpointId,
        result: std::result::Result<CheckpointMetadata, Error>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let (barrier, triggered, abandoned) = match &self.in_flight {
            InFlight::Uploading {
                barrier,
                triggered,
                abandoned,
            } if barrier.id == id => (*barrier, *triggered, *abandoned),
            _ => return actions,
        };
        self.in_flight = InFlight::Idle;
        if self.stopped {
            return actions;
        }
        if abandoned {
            // Already counted as failed when it timed out; files it stored are collected later.
            self.next_trigger = now + self.cfg.min_pause;
            self.maybe_trigger(now, &mut actions);
            return actions;
        }
        match result {
            Ok(metadata) => {
                self.in_flight = InFlight::Publishing { barrier };
                actions.push(Action::Publish {
                    metadata: Box::new(metadata),
                    triggered,
                });
            }
            Err(e) => {
                let reason = AbortReason::UploadFailed(e.to_string());
                if self.final_id == Some(id) {
                    actions.push(self.abort_action(id, reason));
                    actions.push(Action::FailAttempt {
                        error: e.context("the final checkpoint could not be stored"),
                    });
                    self.stopped = true;
                    return actions;
                }
                self.next_trigger = now + self.cfg.min_pause;
                self.checkpoint_failed(id, reason, &mut actions);
                self.maybe_trigger(now, &mut actions);
            }
        }
        actions
    }

    /// Publishing checkpoint `id`'s metadata ended: on success it is complete.
    pub(crate) fn on_published(&mut self, id: CheckpointId, result: crate::Result<()>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match &self.in_flight {
            InFlight::Publishing { barrier } if barrier.id == id => {}
            _ => return actions,
        }
        self.in_flight = InFlight::Idle;
        if let Err(error) = result {
            // The storage may be owned by another process now, or published and then failed:
            // the attempt restarts from what is durable.
            self.stopped = true;
            actions.push(Action::FailAttempt { error });
            return actions;
        }
        self.failed_in_a_row = 0;
        // Commit first (completed output is pending until then), then clean up.
        actions.push(Action::NotifyComplete { id });
        actions.push(Action::ApplyRetention { id });
        if self.final_id != Some(id) {
            self.next_trigger = self.next_trigger.max(now + self.cfg.min_pause);
        }
        self.maybe_trigger(now, &mut actions);
        actions
    }

    /// The attempt ends (failed or cancelled): nothing more is triggered; a checkpoint still
    /// aligning is dropped (the next attempt clears the staging); an upload's end is awaited.
    pub(crate) fn on_attempt_ending(&mut self) {
        self.stopped = true;
        if matches!(self.in_flight, InFlight::Aligning { .. }) {
            self.in_flight = InFlight::Idle;
        }
    }

    fn abort_action(&self, id: CheckpointId, reason: AbortReason) -> Action {
        Action::Abort {
            id,
            reason,
            failed_in_a_row: self.failed_in_a_row,
            tolerable: self.cfg.tolerable_failed_checkpoints,
        }
    }

    /// Counts a failed checkpoint; fails the attempt when more failed in a row than tolerated.
    fn checkpoint_failed(&mut self, id: CheckpointId, reason: AbortReason, actions: &mut Vec<Action>) {
        self.failed_in_a_row += 1;
        let tolerable = self.cfg.tolerable_failed_checkpoints;
        let why = reason.describe();
        actions.push(self.abort_action(id, reason));
        if self.failed_in_a_row > tolerable {
            self.stopped = true;
            actions.push(Action::FailAttempt {
                error: Error::checkpoint(format!(
                    "{} checkpoints failed in a row (the last, {id}, {why}), more than tolerable_failed_checkpoints = \
                     {tolerable}: failing the job to restart from its latest completed checkpoint",
                    self.failed_in_a_row
                )),
            });
        }
    }

    /// Triggers the final checkpoint once every source is exhausted, or a periodic one when due.
    fn maybe_trigger(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.stopped || !matches!(self.in_flight, InFlight::Idle) || self.final_id.is_some() {
            return;
        }
        let all_exhausted = !self.sources.is_empty() && self.exhausted == self.sources;
        if all_exhausted {
            actions.push(Action::Trigger {
                kind: BarrierKind::Final,
            });
        } else if let Some(kind) = self.savepoint_requested.filter(|_| self.all_running()) {
            self.savepoint_requested = None;
            actions.push(Action::Trigger { kind });
        } else if now >= self.next_trigger && self.all_running() {
            actions.push(Action::Trigger {
                kind: BarrierKind::Checkpoint,
            });
        }
    }
}

#[cfg(test)]
mod tests;
