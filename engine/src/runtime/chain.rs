//! A chain: the operators of one subtask, fused because they are connected forward with equal
//! parallelism, and the outputs of the last one.
//!
//! Pushing an event into operator `i` delivers everything it emits to operator `i + 1` (or the
//! outputs) before returning, so the chain holds nothing in flight between calls.

use crate::checkpoint::ack::OperatorSubtaskSnapshot;
use crate::data::{ErasedBatch, Timestamp};
use crate::keyed::event_time::EventTime;
use crate::message::{Barrier, CheckpointId, Message};
use crate::operator::{ChannelWatermark, Emitted, Emitter, OperatorContext, OperatorCore, SnapshotTarget};
use crate::runtime::exchange::Outputs;
use crate::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One operator of a chain with its runtime context.
pub(crate) struct Link {
    pub(crate) op: Box<dyn OperatorCore>,
    pub(crate) ctx: OperatorContext,
    emitter: Emitter,
}

/// The operators of a subtask and its outputs.
pub(crate) struct Chain {
    pub(crate) links: Vec<Link>,
    pub(crate) outputs: Outputs,
    /// The input gate's watermarks, kept for a first operator that only forwards event time
    /// (restored when opening, reported before each snapshot, checkpointed in its state).
    head_input: Option<EventTime>,
    /// The counters of the source heading the chain, if one does (its watermark is kept there).
    source_metrics: Option<crate::metrics::OperatorMetrics>,
}

enum Input {
    Batch(usize, Box<dyn ErasedBatch>),
    Watermark(Timestamp),
    Idle(bool),
    Time(u64),
    Finish,
}

/// Runs `f`, turning a panic into an error; both get the operator's name as context.
fn guarded<T>(ctx: &OperatorContext, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| e.context(format!("operator {}", ctx.describe()))),
        Err(p) => Err(Error::user(format!(
            "operator {} panicked: {}",
            ctx.describe(),
            panic_message(&p)
        ))),
    }
}

pub(crate) use crate::error::panic_message;

impl Chain {
    pub(crate) fn new(ops: Vec<(Box<dyn OperatorCore>, OperatorContext)>, outputs: Outputs) -> Self {
        Chain {
            links: ops
                .into_iter()
                .map(|(op, ctx)| Link {
                    op,
                    ctx,
                    emitter: Emitter::default(),
                })
                .collect(),
            outputs,
            head_input: None,
            source_metrics: None,
        }
    }

    /// Opens every operator, first to last.
    pub(crate) fn open(&mut self) -> Result<()> {
        if let Some(l) = self.links.first().filter(|l| l.op.forwards_event_time()) {
            // After a rescale: the earliest event time of all old subtasks (their channels are
            // kept only where they agree on their number).
            let raws = l
                .ctx
                .restored_state
                .iter()
                .chain(l.ctx.rescaled_state.iter().map(|(_, raw)| raw));
            for raw in raws {
                let restored = EventTime::from_bytes(raw)
                    .map_err(|e| e.context(format!("restoring the input watermarks of {}", l.ctx.describe())))?;
                self.head_input = Some(match self.head_input.take() {
                    None => restored,
                    Some(earlier) => earlier.min(restored),
                });
            }
        }
        for l in &mut self.links {
            let describe = l.ctx.describe();
            if let Some(opener) = l.ctx.store_opener.take() {
                l.ctx.store = Some(
                    opener
                        .open()
                        .map_err(|e| e.context(format!("opening the state of {describe}")))?,
                );
            }
            let (op, ctx) = (&mut l.op, &mut l.ctx);
            match catch_unwind(AssertUnwindSafe(|| op.open(ctx))) {
                Ok(r) => r.map_err(|e| e.context(format!("opening operator {describe}")))?,
                Err(p) => {
                    return Err(Error::user(format!(
                        "operator {describe} panicked while opening: {}",
                        panic_message(&p)
                    )))
                }
            }
        }
        Ok(())
    }

    /// Pushes records into the chain head's logical input `input`.
    pub(crate) fn push_batch(&mut self, input: usize, batch: Box<dyn ErasedBatch>) -> Result<()> {
        self.push_one(0, Input::Batch(input, batch))
    }

    /// Keeps the watermark of the source heading the chain in `metrics`.
    pub(crate) fn with_source_metrics(mut self, metrics: Option<crate::metrics::OperatorMetrics>) -> Self {
        self.source_metrics = metrics;
        self
    }

    /// Advances the chain head's input watermark.
    pub(crate) fn push_watermark(&mut self, wm: Timestamp) -> Result<()> {
        if let Some(m) = &self.source_metrics {
            m.set_watermark(wm);
        }
        self.push_one(0, Input::Watermark(wm))
    }

    /// Marks the chain head's input idle or active.
    pub(crate) fn push_idle(&mut self, idle: bool) -> Result<()> {
        self.push_one(0, Input::Idle(idle))
    }

    /// Lets every operator see processing time `now_ms`.
    pub(crate) fn on_processing_time(&mut self, now_ms: u64) -> Result<()> {
        for i in 0..self.links.len() {
            self.push_one(i, Input::Time(now_ms))?;
        }
        Ok(())
    }

    /// The earliest processing-time deadline any operator asked for.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.links.iter().filter_map(|l| l.op.next_deadline_ms()).min()
    }

    /// The input watermarks the chain's first operator restored from a checkpoint:
    /// `(combined, each input channel's)`.
    pub(crate) fn restored_input_watermarks(&self) -> Option<(Timestamp, Vec<ChannelWatermark>)> {
        match &self.head_input {
            Some(et) => Some((et.watermark, et.channels.clone())),
            None => self.links.first().and_then(|l| l.op.restored_input_watermarks()),
        }
    }

    /// Reports the input gate's combined watermark and the watermark of each input channel to
    /// the chain's first operator (before a snapshot).
    pub(crate) fn set_input_watermarks(&mut self, combined: Timestamp, channels: &[ChannelWatermark]) {
        if let Some(l) = self.links.first_mut() {
            l.op.set_input_watermarks(channels);
            if l.op.forwards_event_time() {
                self.head_input = Some(EventTime {
                    watermark: combined,
                    channels: channels.to_vec(),
                });
            }
        }
    }

    /// Finishes every operator in order: each one's last output reaches the next before it
    /// finishes.
    pub(crate) fn finish_operators(&mut self) -> Result<()> {
        for i in 0..self.links.len() {
            self.push_one(i, Input::Finish)?;
        }
        Ok(())
    }

    /// Sends end of stream downstream.
    pub(crate) fn end_outputs(&mut self) -> Result<()> {
        self.outputs.broadcast(|| Message::End)
    }

    /// Snapshots every operator for `barrier` and forwards it downstream.
    pub(crate) fn snapshot(
        &mut self,
        barrier: &Barrier,
        target_for: &dyn Fn(&OperatorContext) -> SnapshotTarget,
    ) -> Result<Vec<OperatorSubtaskSnapshot>> {
        let mut out = Vec::with_capacity(self.links.len());
        for (i, l) in self.links.iter_mut().enumerate() {
            let target = target_for(&l.ctx);
            let (op, ctx) = (&mut l.op, &l.ctx);
            let mut snap = guarded(ctx, || op.snapshot(barrier, &target))?;
            if let Some(et) = self.head_input.as_ref().filter(|_| i == 0 && op.forwards_event_time()) {
                snap.operator_state = Some(et.to_bytes()?);
            }
            out.push(OperatorSubtaskSnapshot {
                operator: l.ctx.operator.clone(),
                subtask: l.ctx.subtask,
                snapshot: snap,
                stored: None,
            });
        }
        let b = *barrier;
        self.outputs.broadcast(|| Message::Barrier(b))?;
        Ok(out)
    }

    /// Tells every operator that checkpoint `id` is complete.
    pub(crate) fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        for l in &mut self.links {
            let (op, ctx) = (&mut l.op, &l.ctx);
            guarded(ctx, || op.notify_checkpoint_complete(id))?;
        }
        Ok(())
    }

    /// Closes every operator; never fails.
    pub(crate) fn close(&mut self) {
        for l in &mut self.links {
            let op = &mut l.op;
            if catch_unwind(AssertUnwindSafe(|| op.close())).is_err() {
                tracing::warn!(operator = %l.ctx.describe(), "operator panicked while closing");
            }
        }
    }

    /// Delivers `input` to link `i` and everything it emits onward.
    fn push_one(&mut self, i: usize, input: Input) -> Result<()> {
        if i == self.links.len() {
            return match input {
                Input::Batch(_, b) => self.outputs.send_batch(b),
                Input::Watermark(w) => self.outputs.broadcast(|| Message::Watermark(w)),
                Input::Idle(idle) => self.outputs.broadcast(|| Message::Idle(idle)),
                Input::Time(_) | Input::Finish => Ok(()),
            };
        }
        let mut emitter = std::mem::take(&mut self.links[i].emitter);
        {
            let l = &mut self.links[i];
            let (op, ctx) = (&mut l.op, &l.ctx);
            let em = &mut emitter;
            let r = match input {
                Input::Batch(input, b) => {
                    ctx.metrics.add_in(b.len() as u64);
                    guarded(ctx, || op.process_batch(input, b, em))
                }
                Input::Watermark(w) => {
                    ctx.metrics.set_watermark(w);
                    guarded(ctx, || op.on_watermark(w, em))
                }
                Input::Idle(idle) => guarded(ctx, || op.on_idle(idle, em)),
                Input::Time(now) => guarded(ctx, || op.on_processing_time(now, em)),
                Input::Finish => guarded(ctx, || op.finish(em)),
            };
            r?;
            ctx.metrics.add_out(emitter.records);
        }
        emitter.records = 0;
        let mut items = std::mem::take(&mut emitter.items);
        for item in items.drain(..) {
            let next = match item {
                Emitted::Batch(b) => Input::Batch(0, b),
                Emitted::Watermark(w) => {
                    // A step that makes watermarks (an assigner) shows the ones it emits.
                    self.links[i].ctx.metrics.set_watermark(w);
                    Input::Watermark(w)
                }
                Emitted::Idle(idle) => Input::Idle(idle),
            };
            self.push_one(i + 1, next)?;
        }
        emitter.items = items;
        self.links[i].emitter = emitter;
        Ok(())
    }
}
