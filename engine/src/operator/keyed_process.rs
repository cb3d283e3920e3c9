//! Keyed process functions: user logic with keyed state and timers, one or two inputs.

use super::keyed_core::KeyedCore;
use super::{ChannelWatermark, Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::data::{downcast, erase, Data, ErasedBatch, Key, Record, Timestamp, MIN_WATERMARK};
use crate::functions::RuntimeContext;
use crate::keyed::descriptors::StateDeclaration;
use crate::keyed::timers::TimeDomain;
use crate::keyed::{KeyedContext, Timer};
use crate::message::Barrier;
use crate::side_output::SideOutputs;
use crate::{Error, Result};
use std::sync::Arc;

/// A function over a keyed stream with keyed state and timers.
///
/// One instance runs per subtask (cloned from the one given to the pipeline). Fields of the
/// instance are not checkpointed: keep anything that must survive a failure in keyed state.
pub trait KeyedProcess<K, I>: Send + 'static {
    /// The output record type.
    type Out: Data;

    /// Handles one record of the current key (`ctx.key()`).
    fn process(&mut self, value: I, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()>;

    /// Handles a timer of the current key that fired.
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()> {
        let _ = (timer, ctx);
        Ok(())
    }

    /// Called once per subtask and attempt, before the first record or timer, with where the
    /// subtask runs (its attempt number grows with every restart).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called once when all inputs have ended (after the final watermark): return `true` to
    /// have every pending processing-time timer fire now, in time order, as if the wall clock
    /// had reached the end of time (the window step does, so processing-time windows fire at
    /// the end of a bounded input). The default, `false`, drops them with the job. A function
    /// returning `true` must stop registering processing-time timers, or this never ends.
    fn drain_processing_time(&mut self) -> bool {
        false
    }

    /// The keyed states the function uses, from their descriptors
    /// (`vec![BALANCE.declare(), RECENT.declare()]`): when the step opens from a checkpoint
    /// or savepoint, their restored values are checked against these declarations, and a
    /// state the job cannot read (its type changed without a new schema version and a
    /// migration) fails the restore with an error naming the step and the state. States not
    /// declared here are checked at their first read.
    fn states(&self) -> Vec<StateDeclaration> {
        Vec::new()
    }

    /// Called once when the attempt ends, normally or not. Must not panic.
    fn close(&mut self) {}
}

/// A function over two keyed streams with the same key type and shared keyed state: the
/// building block of joins and enrichment.
pub trait KeyedCoProcess<K, A, B>: Send + 'static {
    /// The output record type.
    type Out: Data;

    /// Handles a record of the first input.
    fn process_first(&mut self, value: A, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()>;

    /// Handles a record of the second input.
    fn process_second(&mut self, value: B, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()>;

    /// Handles a timer of the current key that fired.
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()> {
        let _ = (timer, ctx);
        Ok(())
    }

    /// Called once per subtask and attempt, before the first record or timer, with where the
    /// subtask runs (its attempt number grows with every restart).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// The keyed states the function uses, from their descriptors
    /// (`vec![BALANCE.declare(), RECENT.declare()]`): when the step opens from a checkpoint
    /// or savepoint, their restored values are checked against these declarations, and a
    /// state the job cannot read (its type changed without a new schema version and a
    /// migration) fails the restore with an error naming the step and the state. States not
    /// declared here are checked at their first read.
    fn states(&self) -> Vec<StateDeclaration> {
        Vec::new()
    }

    /// Called once when the attempt ends, normally or not. Must not panic.
    fn close(&mut self) {}
}

/// Extracts the key of a record.
pub type KeyFn<K, T> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Either input of a keyed operator: one process function handles both through this.
pub(crate) trait KeyedLogic<K>: Send {
    type Out: Data;
    fn process_input(
        &mut self,
        input: usize,
        batch: Box<dyn ErasedBatch>,
        core: &mut KeyedCore<K>,
        out: &mut Vec<Record<Self::Out>>,
    ) -> Result<()>;
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, Self::Out>) -> Result<()>;
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;
    fn close(&mut self);
    /// The states the user function declares (checked when the step opens).
    fn states(&self) -> Vec<StateDeclaration> {
        Vec::new()
    }
    /// Restores the logic's own operator state (besides the keyed store), if it has any.
    fn open_logic(&mut self, ctx: &OperatorContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
    /// The logic's own operator state for a checkpoint (`None`: it has none).
    fn snapshot_logic(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// See [`KeyedProcess::drain_processing_time`].
    fn drain_processing_time(&mut self) -> bool {
        false
    }
}

/// Adapts a [`KeyedProcess`] and its key function.
pub(crate) struct OneInput<K, I, P> {
    pub(crate) key_fn: KeyFn<K, I>,
    pub(crate) process: P,
}

impl<K: Key, I: Data, P: KeyedProcess<K, I>> KeyedLogic<K> for OneInput<K, I, P> {
    type Out = P::Out;
    fn process_input(
        &mut self,
        _input: usize,
        batch: Box<dyn ErasedBatch>,
        core: &mut KeyedCore<K>,
        out: &mut Vec<Record<P::Out>>,
    ) -> Result<()> {
        let now = core.now_ms();
        for r in downcast::<I>(batch)? {
            let key = (self.key_fn)(&r.value);
            let p = &mut self.process;
            core.with_key(&key, r.timestamp, now, out, |ctx| p.process(r.value, ctx))?;
        }
        Ok(())
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, P::Out>) -> Result<()> {
        self.process.on_timer(timer, ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.process.open(ctx)
    }
    fn close(&mut self) {
        self.process.close()
    }
    fn drain_processing_time(&mut self) -> bool {
        self.process.drain_processing_time()
    }

    fn states(&self) -> Vec<StateDeclaration> {
        self.process.states()
    }
}

/// Adapts a [`KeyedCoProcess`] and its two key functions.
pub(crate) struct TwoInputs<K, A, B, P> {
    pub(crate) key_a: KeyFn<K, A>,
    pub(crate) key_b: KeyFn<K, B>,
    pub(crate) process: P,
}

impl<K: Key, A: Data, B: Data, P: KeyedCoProcess<K, A, B>> KeyedLogic<K> for TwoInputs<K, A, B, P> {
    type Out = P::Out;
    fn process_input(
        &mut self,
        input: usize,
        batch: Box<dyn ErasedBatch>,
        core: &mut KeyedCore<K>,
        out: &mut Vec<Record<P::Out>>,
    ) -> Result<()> {
        let now = core.now_ms();
        let p = &mut self.process;
        match input {
            0 => {
                for r in downcast::<A>(batch)? {
                    let key = (self.key_a)(&r.value);
                    core.with_key(&key, r.timestamp, now, out, |ctx| p.process_first(r.value, ctx))?;
                }
            }
            1 => {
                for r in downcast::<B>(batch)? {
                    let key = (self.key_b)(&r.value);
                    core.with_key(&key, r.timestamp, now, out, |ctx| p.process_second(r.value, ctx))?;
                }
            }
            i => return Err(Error::internal(format!("keyed co-process has no input {i}"))),
        }
        Ok(())
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, P::Out>) -> Result<()> {
        self.process.on_timer(timer, ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.process.open(ctx)
    }
    fn close(&mut self) {
        self.process.close()
    }
    fn states(&self) -> Vec<StateDeclaration> {
        self.process.states()
    }
}

/// The operator running a keyed function.
pub(crate) struct KeyedOperator<K, L> {
    pub(crate) logic: L,
    pub(crate) core: Option<KeyedCore<K>>,
    /// The job's fail points (set by `open`).
    fail_points: crate::fail::FailPoints,
    /// Whether a side output of the step is read: then it emits [`Tagged`](crate::side_output::Tagged) records, else its
    /// main records as they are (and drops side records).
    tagged: bool,
}

impl<K: Key, L: KeyedLogic<K>> KeyedOperator<K, L> {
    pub(crate) fn new(logic: L) -> Self {
        KeyedOperator {
            logic,
            core: None,
            fail_points: crate::fail::FailPoints::new(),
            tagged: false,
        }
    }

    /// Emits [`Tagged`](crate::side_output::Tagged) records, with the side records (see [`crate::side_output`]).
    pub(crate) fn tagged(mut self, tagged: bool) -> Self {
        self.tagged = tagged;
        self
    }

    fn core(&mut self) -> Result<&mut KeyedCore<K>> {
        self.core
            .as_mut()
            .ok_or_else(|| Error::internal("keyed operator used before open"))
    }

    fn fire(&mut self, domain: TimeDomain, up_to: Timestamp, out: &mut Emitter) -> Result<()> {
        let mut buf: Vec<Record<L::Out>> = Vec::new();
        let logic = &mut self.logic;
        let core = self
            .core
            .as_mut()
            .ok_or_else(|| Error::internal("keyed operator used before open"))?;
        let now = core.now_ms();
        core.fire_timers(domain, up_to, now, &mut buf, &mut |ctx, t| logic.on_timer(t, ctx))?;
        emit(self.tagged, &mut core.side, buf, out);
        Ok(())
    }
}

/// Emits a keyed operator's main records and, if `tagged`, its side records.
fn emit<O: Data>(tagged: bool, side: &mut SideOutputs, main: Vec<Record<O>>, out: &mut Emitter) {
    if tagged {
        out.batch(erase(side.tag_with(main)));
    } else {
        side.clear();
        out.batch(erase(main));
    }
}

impl<K: Key, L: KeyedLogic<K>> OperatorCore for KeyedOperator<K, L> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.fail_points = ctx.fail_points.clone();
        let mut core = KeyedCore::open(ctx)?;
        core.check_declared_states(&self.logic.states())?;
        self.core = Some(core);
        self.logic.open(&ctx.runtime())?;
        self.logic.open_logic(ctx)
    }

    fn close(&mut self) {
        self.logic.close();
    }

    fn process_batch(&mut self, input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        self.fail_points.hit(crate::fail::PROCESS_RECORD)?;
        let mut buf: Vec<Record<L::Out>> = Vec::with_capacity(batch.len());
        let core = self
            .core
            .as_mut()
            .ok_or_else(|| Error::internal("keyed operator used before open"))?;
        self.logic.process_input(input, batch, core, &mut buf)?;
        emit(self.tagged, &mut core.side, buf, out);
        Ok(())
    }

    /// Fires event-time timers up to `wm` and forwards it. A watermark at or below the
    /// operator's own changes nothing: after a restore the inputs may report watermarks from
    /// before the checkpoint again, and event time must not go back.
    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        let core = self.core()?;
        if wm <= core.watermark {
            return Ok(());
        }
        core.watermark = wm;
        self.fire(TimeDomain::EventTime, wm, out)?;
        out.watermark(wm);
        Ok(())
    }

    fn restored_input_watermarks(&self) -> Option<(Timestamp, Vec<ChannelWatermark>)> {
        let et = self.core.as_ref()?.restored_event_time();
        (et.watermark > MIN_WATERMARK || !et.channels.is_empty()).then(|| (et.watermark, et.channels.clone()))
    }

    fn set_input_watermarks(&mut self, channels: &[ChannelWatermark]) {
        if let Some(core) = self.core.as_mut() {
            core.input_channels.clear();
            core.input_channels.extend_from_slice(channels);
        }
    }

    fn on_processing_time(&mut self, now: u64, out: &mut Emitter) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now as Timestamp, out)
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        self.core.as_ref().and_then(|c| c.next_processing_time())
    }

    /// Fires every processing-time timer if the logic asks for it (see
    /// [`KeyedProcess::drain_processing_time`]).
    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        if self.logic.drain_processing_time() {
            self.fire(TimeDomain::ProcessingTime, Timestamp::MAX, out)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier, target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        let mut snap = self.core()?.snapshot(target)?;
        snap.operator_state = self.logic.snapshot_logic()?;
        Ok(snap)
    }
}
