//! The operator that drives a sink writer through the two-phase commit protocol.

use super::{Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::data::{downcast, Data, ErasedBatch};
use crate::fail::{self, FailPoints};
use crate::keyed::scope::{decode, encode};
use crate::message::{Barrier, CheckpointId};
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::{Error, Result, ResultExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a sink subtask keeps in a checkpoint: the committables not yet known to be committed.
#[derive(Serialize, Deserialize)]
struct SinkState<C> {
    checkpoint: CheckpointId,
    pending: Vec<(CheckpointId, C)>,
}

/// Runs a [`Sink`]'s writer.
///
/// # Checkpointing
/// The checkpoint of barrier `n` holds every committable up to `n` that was not committed
/// before the barrier. After a restore the writer commits them all again (commit is
/// idempotent), so a crash between "checkpoint complete" and "commit" loses nothing.
pub(crate) struct SinkOp<T, S: Sink<T>> {
    pub(crate) sink: Arc<S>,
    pub(crate) writer: Option<Box<dyn SinkWriter<T, S::Committable>>>,
    pub(crate) pending: Vec<(CheckpointId, S::Committable)>,
    /// The job's fail points (set by `open`).
    fail_points: FailPoints,
    /// Commit latency, exported (set by `open`).
    commit_latency: prometheus_client::metrics::histogram::Histogram,
}

impl<T: Data, S: Sink<T>> SinkOp<T, S> {
    pub(crate) fn new(sink: Arc<S>) -> Self {
        SinkOp {
            sink,
            writer: None,
            pending: Vec::new(),
            fail_points: FailPoints::new(),
            commit_latency: prometheus_client::metrics::histogram::Histogram::new([1.0]),
        }
    }

    fn writer(&mut self) -> Result<&mut Box<dyn SinkWriter<T, S::Committable>>> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::internal("sink used before open"))
    }
}

impl<T: Data, S: Sink<T>> OperatorCore for SinkOp<T, S> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let restored: Option<SinkState<S::Committable>> = match &ctx.restored_state {
            Some(bytes) => Some(decode(bytes).context("decoding the sink's checkpointed committables")?),
            None => None,
        };
        // After a restore at another parallelism: the states of the old subtasks this one takes.
        let mut taken_over: Vec<(usize, SinkState<S::Committable>)> = Vec::new();
        for (old, bytes) in &ctx.rescaled_state {
            let state = decode(bytes)
                .with_context(|| format!("decoding the checkpointed committables of sink subtask {old}"))?;
            taken_over.push((*old, state));
        }
        let sink_ctx = SinkContext {
            job: ctx.job.clone(),
            name: ctx.operator.clone(),
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            max_parallelism: ctx.max_parallelism,
            attempt: ctx.attempt,
            restored_checkpoint: restored.as_ref().map(|s| s.checkpoint).or(ctx.restored_checkpoint),
            checkpoint_timing: ctx.checkpoint_timing,
            committed_output: ctx.committed_output.clone(),
            cancellation: ctx.cancellation.clone(),
            fail_points: ctx.fail_points.clone(),
        };
        self.fail_points = ctx.fail_points.clone();
        self.commit_latency = ctx.metrics.sink_commit_latency();
        let mut writer = self.sink.create_writer(&sink_ctx)?;
        if let Some(state) = restored {
            tracing::debug!(
                sink = %sink_ctx.name,
                subtask = sink_ctx.subtask,
                checkpoint = state.checkpoint.get(),
                pending = ?state.pending.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(),
                "sink restored"
            );
            if !state.pending.is_empty() {
                // The restored checkpoint is complete: its committables may or may not have
                // been committed before the failure. Commit (again); commit is idempotent.
                writer
                    .commit(state.pending)
                    .context("re-committing restored committables")?;
            }
        }
        // Committed before anything is written, as a subtask's own: the restored checkpoint is
        // complete, and no other subtask commits these.
        for (old, state) in taken_over {
            tracing::debug!(
                sink = %sink_ctx.name,
                subtask = sink_ctx.subtask,
                taken_over = old,
                checkpoint = state.checkpoint.get(),
                pending = ?state.pending.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(),
                "sink restored at another parallelism"
            );
            if state.pending.is_empty() {
                continue;
            }
            if old == sink_ctx.subtask {
                // The subtask of the same index: the same output, its own committables.
                writer
                    .commit(state.pending)
                    .context("re-committing restored committables")?;
            } else {
                writer
                    .commit_taken_over(old, state.pending)
                    .with_context(|| format!("committing the restored committables of sink subtask {old}"))?;
            }
        }
        self.writer = Some(writer);
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, _out: &mut Emitter) -> Result<()> {
        let batch = downcast::<T>(batch)?;
        self.writer()?.write(batch)
    }

    fn snapshot(&mut self, barrier: &Barrier, _target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        if let Some(c) = self.writer()?.pre_commit(barrier.id)? {
            self.pending.push((barrier.id, c));
        }
        tracing::debug!(
            checkpoint = barrier.id.get(),
            pending = ?self.pending.iter().map(|(id, _)| id.get()).collect::<Vec<_>>(),
            "sink pre-committed"
        );
        self.fail_points.hit(fail::AFTER_PRE_COMMIT)?;
        let state = SinkState {
            checkpoint: barrier.id,
            pending: self.pending.clone(),
        };
        Ok(OperatorSnapshot {
            keyed_files: Vec::new(),
            operator_state: Some(encode(&state)?),
        })
    }

    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let split = self.pending.partition_point(|(c, _)| *c <= id);
        if split == 0 {
            return Ok(());
        }
        self.fail_points.hit(fail::DURING_COMMIT)?;
        let ready: Vec<_> = self.pending.drain(..split).collect();
        let started = std::time::Instant::now();
        self.writer()?.commit(ready)?;
        self.commit_latency.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn close(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.abort() {
                tracing::warn!(error = %e, "sink abort failed");
            }
            w.close();
        }
    }
}
