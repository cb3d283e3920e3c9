//! The output side of a subtask: routes batches to the subtasks of downstream operators.
//!
//! Watermarks, idleness, barriers and end of stream go to every channel; batches go where the
//! edge's partitioning says. Sends block while a channel is full (backpressure) until there is
//! room or the attempt is cancelled.

use crate::data::ErasedBatch;
pub use crate::graph::partitioning::{KeyPartitioner, Partitioning};
use crate::message::Message;
use crate::metrics::OperatorMetrics;
use crate::runtime::attempt::JobShared;
use crate::{Error, Result};
use crossbeam_channel::{Select, Sender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::SecondsCounter;

/// One outgoing edge of a subtask: a partitioning and a sender per reachable downstream subtask.
pub(crate) struct OutputEdge {
    pub(crate) partitioning: Partitioning,
    /// Indexed by downstream subtask; for `Forward` a single sender.
    pub(crate) senders: Vec<Sender<Message>>,
    pub(crate) next: usize,
    pub(crate) max_parallelism: usize,
}

/// All outgoing edges of a subtask.
pub(crate) struct Outputs {
    pub(crate) edges: Vec<OutputEdge>,
    pub(crate) job: Arc<JobShared>,
    /// The counters of the chain's last step: the time sends wait for room is added there.
    pub(crate) metrics: OperatorMetrics,
    /// Seconds spent blocked on full channels (the subtask's backpressure).
    pub(crate) backpressured: SecondsCounter,
}

impl Outputs {
    /// Routes a batch (cloned for every edge but the last).
    pub(crate) fn send_batch(&mut self, batch: Box<dyn ErasedBatch>) -> Result<()> {
        let n = self.edges.len();
        let mut batch = Some(batch);
        for e in 0..n {
            let b = if e + 1 == n {
                batch.take().expect("batch present for the last edge")
            } else {
                batch.as_ref().expect("batch present").clone_batch()
            };
            self.route(e, b)?;
        }
        Ok(())
    }

    fn route(&mut self, e: usize, batch: Box<dyn ErasedBatch>) -> Result<()> {
        let (job, self_bp) = (&*self.job, (&self.metrics, &self.backpressured));
        let edge = &mut self.edges[e];
        match &edge.partitioning {
            Partitioning::Forward => send(job, self_bp, &edge.senders[0], Message::Batch(batch)),
            Partitioning::Rebalance => {
                let i = edge.next % edge.senders.len();
                edge.next = edge.next.wrapping_add(1);
                send(job, self_bp, &edge.senders[i], Message::Batch(batch))
            }
            Partitioning::Broadcast => {
                let (last, rest) = edge.senders.split_last().expect("an edge has a sender");
                for s in rest {
                    send(job, self_bp, s, Message::Batch(batch.clone_batch()))?;
                }
                send(job, self_bp, last, Message::Batch(batch))
            }
            Partitioning::Hash(p) => {
                let parts = p.split(batch, edge.senders.len(), edge.max_parallelism)?;
                for (i, part) in parts.into_iter().enumerate() {
                    if !part.is_empty() {
                        send(job, self_bp, &edge.senders[i], Message::Batch(part))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends a control event (watermark, idleness, barrier, end) to every channel.
    pub(crate) fn broadcast(&mut self, make: impl Fn() -> Message) -> Result<()> {
        for edge in &self.edges {
            for s in &edge.senders {
                send(&self.job, (&self.metrics, &self.backpressured), s, make())?;
            }
        }
        Ok(())
    }
}

/// Sends with backpressure; gives up as soon as the attempt is cancelled.
fn send(
    job: &JobShared,
    (metrics, backpressured): (&OperatorMetrics, &SecondsCounter),
    tx: &Sender<Message>,
    msg: Message,
) -> Result<()> {
    let msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Disconnected(_)) => return Err(downstream_stopped()),
        Err(TrySendError::Full(m)) => m,
    };
    // The channel is full: wait for room or for the cancellation, whichever comes first.
    let blocked = Instant::now();
    let _count = BlockedTime {
        since: blocked,
        metrics,
        into: backpressured,
    };
    let mut sel = Select::new();
    let send_op = sel.send(tx);
    sel.recv(job.cancel_signal());
    let op = sel.select();
    if op.index() == send_op {
        op.send(tx, msg).map_err(|_| downstream_stopped())
    } else {
        let _ = op.recv(job.cancel_signal());
        Err(Error::new(crate::ErrorKind::Cancelled, "job cancelled"))
    }
}

/// Adds the time since `since` to `into` and to the step's blocked time when dropped (however
/// the blocked send ends).
struct BlockedTime<'a> {
    since: Instant,
    metrics: &'a OperatorMetrics,
    into: &'a SecondsCounter,
}

impl Drop for BlockedTime<'_> {
    fn drop(&mut self) {
        let waited = self.since.elapsed();
        self.metrics.add_blocked(waited);
        self.into.inc_by(waited.as_secs_f64());
    }
}

/// A consequence, not a cause: the downstream subtask reports its own failure.
fn downstream_stopped() -> Error {
    Error::new(
        crate::ErrorKind::Cancelled,
        "downstream subtask stopped (output channel closed)",
    )
}
