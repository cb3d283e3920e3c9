//! Savepoints the user asked for, on their way from the [`JobHandle`](super::JobHandle) to the
//! master and back.
//!
//! The handle queues a request in the job's live view ([`SavepointQueue`]) and waits for the
//! answer; the master takes queued requests at every tick, triggers one savepoint at a time,
//! and answers each request exactly once: with the savepoint once it is written, or with why
//! it was not (its checkpoint was aborted, the attempt failed, the job ended first). Once the
//! job ended, the queue is closed and answers a new request at once.
//!
//! A stop without a savepoint ([`JobHandle::stop`](super::JobHandle::stop)) travels the same
//! way, as a stop with savepoint without a target: its final checkpoint stays in the job's own
//! checkpoint storage, and nothing is copied.

use crate::checkpoint::savepoint::Savepoint;
use crate::checkpoint::CheckpointStorage;
use crate::message::CheckpointId;
use crate::{Error, ErrorKind, Result};
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::sync::Arc;

/// One savepoint the user asked for.
#[derive(Debug)]
pub(crate) struct SavepointRequest {
    /// The savepoint's storage (its root is the savepoint's root); `None` for a stop at a
    /// final checkpoint that stays in the job's storage.
    pub(crate) target: Option<Arc<dyn CheckpointStorage>>,
    /// Stop the job once the savepoint is written and its output committed.
    pub(crate) stop: bool,
    /// Where the answer goes.
    pub(crate) reply: Sender<Result<Savepoint>>,
}

impl SavepointRequest {
    /// Answers the request (a requester that stopped waiting is not an error).
    pub(crate) fn answer(self, result: Result<Savepoint>) {
        let _ = self.reply.send(result);
    }
}

/// Requests the user made and the master has not taken yet; closed when the job ended.
#[derive(Debug, Default)]
pub(crate) struct SavepointQueue {
    waiting: Vec<SavepointRequest>,
    /// Why no request is taken any more.
    closed: Option<String>,
}

impl SavepointQueue {
    /// Queues `request`, or answers it at once when the queue is closed.
    pub(crate) fn push(&mut self, request: SavepointRequest) {
        match &self.closed {
            Some(why) => request.answer(Err(not_taken(format!("no savepoint was taken: {why}")))),
            None => self.waiting.push(request),
        }
    }

    /// The requests queued so far, in order.
    pub(crate) fn take(&mut self) -> Vec<SavepointRequest> {
        std::mem::take(&mut self.waiting)
    }

    /// Whether the job ended (the queue is closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Closes the queue (the job ended, `why`); returns the requests still queued.
    pub(crate) fn close(&mut self, why: &str) -> Vec<SavepointRequest> {
        self.closed = Some(why.to_string());
        self.take()
    }
}

/// The master's side: requests waiting for their turn, and the one whose checkpoint is in
/// flight.
#[derive(Debug, Default)]
pub(crate) struct SavepointRequests {
    waiting: VecDeque<SavepointRequest>,
    in_flight: Option<(CheckpointId, SavepointRequest)>,
}

impl SavepointRequests {
    /// Queues `requests`, in order.
    pub(crate) fn extend(&mut self, requests: impl IntoIterator<Item = SavepointRequest>) {
        self.waiting.extend(requests);
    }

    /// The next request to trigger, when none is in flight: whether it stops the job.
    pub(crate) fn next_to_trigger(&self) -> Option<bool> {
        match self.in_flight {
            Some(_) => None,
            None => self.waiting.front().map(|r| r.stop),
        }
    }

    /// The savepoint's checkpoint `id` was triggered: the first waiting request is in flight.
    pub(crate) fn triggered(&mut self, id: CheckpointId) {
        if let Some(r) = self.waiting.pop_front() {
            self.in_flight = Some((id, r));
        }
    }

    /// The request whose checkpoint is `id`, taken out (its checkpoint completed or failed).
    pub(crate) fn take(&mut self, id: CheckpointId) -> Option<SavepointRequest> {
        match &self.in_flight {
            Some((i, _)) if *i == id => self.in_flight.take().map(|(_, r)| r),
            _ => None,
        }
    }

    /// The attempt ended: the savepoint in flight fails (its request is answered), waiting
    /// requests wait for the next attempt.
    pub(crate) fn attempt_ended(&mut self, why: &str) {
        if let Some((id, r)) = self.in_flight.take() {
            r.answer(Err(not_taken(format!("savepoint {id} was not completed: {why}"))));
        }
    }

    /// The job ended: every request still open is answered with `why`.
    pub(crate) fn job_ended(&mut self, why: &str) {
        self.attempt_ended(why);
        for r in self.waiting.drain(..) {
            r.answer(Err(not_taken(format!("no savepoint was taken: {why}"))));
        }
    }
}

/// The error of a savepoint that was not taken.
pub(crate) fn not_taken(message: String) -> Error {
    Error::new(ErrorKind::Cancelled, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LocalDirStorage;

    fn request(stop: bool) -> (SavepointRequest, crossbeam_channel::Receiver<Result<Savepoint>>) {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let target: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new("/nonexistent"));
        let target = Some(target);
        (SavepointRequest { target, stop, reply }, rx)
    }

    #[test]
    fn every_request_is_answered_once() {
        let mut q = SavepointRequests::default();
        let (a, a_rx) = request(false);
        let (b, b_rx) = request(true);
        q.extend([a, b]);
        assert_eq!(q.next_to_trigger(), Some(false));
        q.triggered(CheckpointId::new(4));
        assert_eq!(q.next_to_trigger(), None, "one at a time");
        assert!(q.take(CheckpointId::new(3)).is_none());
        q.attempt_ended("the attempt failed");
        let e = a_rx.try_recv().unwrap().unwrap_err();
        assert!(e.to_string().contains("savepoint 4 was not completed"), "{e}");
        assert_eq!(q.next_to_trigger(), Some(true));
        q.triggered(CheckpointId::new(6));
        q.take(CheckpointId::new(6)).unwrap().answer(Err(not_taken("x".into())));
        assert!(b_rx.try_recv().unwrap().is_err());
        let (c, c_rx) = request(false);
        q.extend([c]);
        q.job_ended("the job was cancelled");
        assert!(c_rx.try_recv().unwrap().unwrap_err().to_string().contains("cancelled"));
    }

    #[test]
    fn a_closed_queue_answers_at_once() {
        let mut q = SavepointQueue::default();
        let (a, a_rx) = request(false);
        q.push(a);
        assert_eq!(q.close("the job has ended").len(), 1);
        let (b, b_rx) = request(true);
        q.push(b);
        assert!(a_rx.try_recv().is_err(), "the closer answers what it took");
        let e = b_rx.try_recv().unwrap().unwrap_err();
        assert!(e.to_string().contains("the job has ended"), "{e}");
    }
}
