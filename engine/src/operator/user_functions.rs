//! The operator running function objects with `open`/`close` hooks and operator state
//! ([`MapFunction`], [`FlatMapFunction`]).
//!
//! # After a crash
//! The operator writes, at every barrier, the function's operator lists (after its
//! `snapshot_state`) and the event time of its input; a restore hands the lists out as their
//! distribution says (see [`operator_state`](crate::functions::operator_state)) and starts the
//! input gate from the restored event time.

use super::{ChannelWatermark, Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::data::{downcast, erase, Data, ErasedBatch, Record, Timestamp, MIN_WATERMARK};
use crate::functions::operator_state::FunctionOperatorState;
use crate::functions::{FlatMapFunction, FunctionStateContext, MapFunction, RuntimeContext};
use crate::keyed::event_time::EventTime;
use crate::message::{Barrier, CheckpointId};
use crate::{Error, Result};
use std::marker::PhantomData;

/// The calls a function step makes on its function object, for maps and flat-maps alike.
pub(crate) trait StepFunction<I>: Send + 'static {
    /// The output record type.
    type Out: Data;
    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()>;
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;
    /// Appends the outputs of one record.
    fn apply(&mut self, value: I, out: &mut Vec<Self::Out>) -> Result<()>;
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<()>;
    fn finish(&mut self, out: &mut Vec<Self::Out>) -> Result<()>;
    fn close(&mut self);
}

/// A [`MapFunction`] as a step function.
pub(crate) struct AsMap<F>(pub(crate) F);

impl<I, F: MapFunction<I>> StepFunction<I> for AsMap<F> {
    type Out = F::Out;
    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        self.0.initialize_state(state)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn apply(&mut self, value: I, out: &mut Vec<F::Out>) -> Result<()> {
        out.push(self.0.map(value)?);
        Ok(())
    }
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<()> {
        self.0.snapshot_state(checkpoint)
    }
    fn finish(&mut self, _out: &mut Vec<F::Out>) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) {
        self.0.close();
    }
}

/// A [`FlatMapFunction`] as a step function.
pub(crate) struct AsFlatMap<F>(pub(crate) F);

impl<I, F: FlatMapFunction<I>> StepFunction<I> for AsFlatMap<F> {
    type Out = F::Out;
    fn initialize_state(&mut self, state: &mut FunctionStateContext<'_>) -> Result<()> {
        self.0.initialize_state(state)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn apply(&mut self, value: I, out: &mut Vec<F::Out>) -> Result<()> {
        self.0.flat_map(value, out)
    }
    fn snapshot_state(&mut self, checkpoint: CheckpointId) -> Result<()> {
        self.0.snapshot_state(checkpoint)
    }
    fn finish(&mut self, out: &mut Vec<F::Out>) -> Result<()> {
        self.0.finish(out)
    }
    fn close(&mut self) {
        self.0.close();
    }
}

/// Runs a function object: its records, its operator state and its input's event time.
pub(crate) struct FunctionOp<I, F> {
    f: F,
    state: Option<FunctionOperatorState>,
    /// The watermarks of the input: the combined one (as delivered) and each channel's.
    input: EventTime,
    fail_points: crate::fail::FailPoints,
    _i: PhantomData<fn(I)>,
}

impl<I, F> FunctionOp<I, F> {
    pub(crate) fn new(f: F) -> Self {
        FunctionOp {
            f,
            state: None,
            input: EventTime::default(),
            fail_points: crate::fail::FailPoints::new(),
            _i: PhantomData,
        }
    }
}

/// The operator of `map_function`.
pub(crate) fn map_function_op<I, F: MapFunction<I>>(f: F) -> FunctionOp<I, AsMap<F>> {
    FunctionOp::new(AsMap(f))
}

/// The operator of `flat_map_function`.
pub(crate) fn flat_map_function_op<I, F: FlatMapFunction<I>>(f: F) -> FunctionOp<I, AsFlatMap<F>> {
    FunctionOp::new(AsFlatMap(f))
}

impl<I: Data, F: StepFunction<I>> OperatorCore for FunctionOp<I, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let runtime = ctx.runtime();
        let mut state =
            FunctionOperatorState::restore(runtime.clone(), ctx.restored_state.as_deref(), &ctx.rescaled_state)?;
        if let Some(input) = state.restored_input() {
            self.input = input.clone();
        }
        self.f
            .initialize_state(&mut state.context())
            .map_err(|e| e.context("initializing the function's operator state"))?;
        state.keep_undeclared();
        if state.restored_elements() > 0 {
            ctx.metrics
                .count("operator_list_restored_elements", state.restored_elements());
        }
        self.state = Some(state);
        self.fail_points = ctx.fail_points.clone();
        self.f.open(&runtime)
    }

    fn process_batch(&mut self, _input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let batch = downcast::<I>(batch)?;
        let mut produced = Vec::with_capacity(batch.len());
        let mut scratch = Vec::new();
        for r in batch {
            self.fail_points.hit(crate::fail::PROCESS_RECORD)?;
            self.f.apply(r.value, &mut scratch)?;
            produced.extend(scratch.drain(..).map(|value| Record {
                value,
                timestamp: r.timestamp,
            }));
        }
        out.batch(erase(produced));
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        self.input.watermark = self.input.watermark.max(wm);
        out.watermark(wm);
        Ok(())
    }

    fn restored_input_watermarks(&self) -> Option<(Timestamp, Vec<ChannelWatermark>)> {
        let et = self.state.as_ref()?.restored_input()?;
        (et.watermark > MIN_WATERMARK || !et.channels.is_empty()).then(|| (et.watermark, et.channels.clone()))
    }

    fn set_input_watermarks(&mut self, channels: &[ChannelWatermark]) {
        self.input.channels.clear();
        self.input.channels.extend_from_slice(channels);
    }

    fn snapshot(&mut self, barrier: &Barrier, _target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        self.f.snapshot_state(barrier.id)?;
        let state = self
            .state
            .as_ref()
            .ok_or_else(|| Error::internal("function step snapshot before open"))?;
        Ok(OperatorSnapshot {
            keyed_files: Vec::new(),
            operator_state: Some(state.to_bytes(&self.input)?),
        })
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        let mut rest = Vec::new();
        self.f.finish(&mut rest)?;
        out.batch(erase(
            rest.into_iter()
                .map(|value| Record { value, timestamp: None })
                .collect::<Vec<_>>(),
        ));
        Ok(())
    }

    fn close(&mut self) {
        self.f.close();
    }
}
