//! Broadcast state: a stream of rules (or any slowly changing configuration) reaches every
//! subtask of a step, which keeps it in a typed map next to its main input.
//!
//! Every subtask sees the broadcast input's records in the same order, between the same
//! barriers, so every subtask's map holds the same entries at a checkpoint. The map is
//! therefore checkpointed once: subtask 0 writes it, and at a restore every subtask, at any
//! parallelism, reads that copy
//! ([`OperatorStateRule::Replicated`](crate::checkpoint::reassign::OperatorStateRule)).
//! After a crash the job restores the map of the last completed checkpoint and the broadcast
//! source replays from its checkpointed position, so every rule change after the checkpoint is
//! applied again, once, before or between the main records exactly as in the first run.
//!
//! The state is declared by a [`BroadcastStateDescriptor`] (name, value schema, migrations;
//! see [`descriptor`]), which the checkpointed copy is written and read with.
//!
//! Updates to the map must depend only on the broadcast record and the map (not on the
//! subtask), or the copies diverge and a restore keeps subtask 0's.

pub mod descriptor;

pub use descriptor::{BroadcastStateDescriptor, DEFAULT_BROADCAST_STATE};

use super::keyed_process::KeyedLogic;
use super::{Emitter, OperatorContext, OperatorCore, OperatorSnapshot, SnapshotTarget};
use crate::data::{downcast, erase, Data, ErasedBatch, Key, Record, Timestamp};
use crate::keyed::descriptors::StateDeclaration;
use crate::keyed::{KeyedContext, Timer};
use crate::message::Barrier;
use crate::operator::keyed_core::KeyedCore;
use crate::{Error, Result};
use std::collections::BTreeMap;

/// The broadcast state of one subtask: a map from `SK` to `SV`, the same in every subtask.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastState<SK, SV> {
    pub(crate) entries: BTreeMap<SK, SV>,
}

impl<SK: Data + Ord, SV: Data> Default for BroadcastState<SK, SV> {
    fn default() -> Self {
        BroadcastState {
            entries: BTreeMap::new(),
        }
    }
}

impl<SK: Data + Ord, SV: Data> BroadcastState<SK, SV> {
    /// The value of `key`.
    pub fn get(&self, key: &SK) -> Option<&SV> {
        self.entries.get(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &SK) -> bool {
        self.entries.contains_key(key)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&SK, &SV)> {
        self.entries.iter()
    }

    /// The entries whose keys fall in `range`, in key order (for example the rule in force
    /// at a time: `state.range(..=t).next_back()`).
    pub fn range<R: std::ops::RangeBounds<SK>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&SK, &SV)> {
        self.entries.range(range)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn insert(&mut self, key: SK, value: SV) -> Option<SV> {
        self.entries.insert(key, value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &SK) -> Option<SV> {
        self.entries.remove(key)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The copy of the broadcast state a subtask opens with: the one in the restored checkpoint
/// (written by subtask 0, read by every subtask at any parallelism) decoded through
/// `descriptor`, or an empty state.
fn restore_state<SK: Data + Ord, SV: Data>(
    ctx: &OperatorContext,
    descriptor: &BroadcastStateDescriptor<SK, SV>,
) -> Result<BroadcastState<SK, SV>> {
    let copy = ctx
        .restored_state
        .as_deref()
        .or_else(|| ctx.rescaled_state.first().map(|(_, raw)| raw.as_slice()));
    match copy {
        Some(raw) => descriptor.decode(&ctx.operator, raw),
        None => Ok(BroadcastState::default()),
    }
}

/// What a broadcast record's handler sees: its event time and where its output goes. Every
/// subtask runs the handler for every broadcast record, so what it emits, every subtask emits.
pub struct BroadcastContext<'a, O> {
    timestamp: Option<Timestamp>,
    subtask: usize,
    out: &'a mut Vec<Record<O>>,
}

impl<O: Data> BroadcastContext<'_, O> {
    /// Event time of the record being handled.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// This subtask's index (for example to emit an acknowledgement from subtask 0 only).
    pub fn subtask(&self) -> usize {
        self.subtask
    }

    /// Emits `value` with the current event time.
    pub fn emit(&mut self, value: O) {
        self.out.push(Record {
            value,
            timestamp: self.timestamp,
        });
    }
}

/// A function over a keyed stream connected to a broadcast stream: keyed state and timers
/// for the keyed records, read-only access to the broadcast state for them, and updates of
/// the broadcast state from the broadcast records (Flink's `KeyedBroadcastProcessFunction`).
///
/// One instance runs per subtask; its fields are not checkpointed.
pub trait KeyedBroadcastProcess<K, T, B>: Send + 'static {
    /// The output record type.
    type Out: Data;
    /// Key type of the broadcast state.
    type StateKey: Data + Ord;
    /// Value type of the broadcast state.
    type StateValue: Data;

    /// Handles a keyed record of the current key with the current broadcast state.
    fn process(
        &mut self,
        value: T,
        state: &BroadcastState<Self::StateKey, Self::StateValue>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<()>;

    /// Handles a broadcast record: updates the broadcast state (the same way in every subtask).
    fn process_broadcast(
        &mut self,
        value: B,
        state: &mut BroadcastState<Self::StateKey, Self::StateValue>,
        ctx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;

    /// Handles a timer of the current key that fired.
    fn on_timer(
        &mut self,
        timer: Timer,
        state: &BroadcastState<Self::StateKey, Self::StateValue>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<()> {
        let _ = (timer, state, ctx);
        Ok(())
    }

    /// The broadcast state's descriptor: its name and the schema of its values, which
    /// checkpoints write it with and a restore reads it through (migrations of older
    /// versions; a state the job cannot read fails the restore naming the step and the
    /// state). By default [`DEFAULT_BROADCAST_STATE`], self-describing values of version 0.
    fn broadcast_state(&self) -> BroadcastStateDescriptor<Self::StateKey, Self::StateValue> {
        BroadcastStateDescriptor::new(DEFAULT_BROADCAST_STATE)
    }

    /// The keyed states the function uses, from their descriptors: checked when the step
    /// opens from a checkpoint, as [`KeyedProcess::states`](super::keyed_process::KeyedProcess::states).
    fn states(&self) -> Vec<StateDeclaration> {
        Vec::new()
    }
}

/// A function over a (non-keyed) stream connected to a broadcast stream (Flink's
/// `BroadcastProcessFunction`).
pub trait BroadcastProcess<T, B>: Send + 'static {
    /// The output record type.
    type Out: Data;
    /// Key type of the broadcast state.
    type StateKey: Data + Ord;
    /// Value type of the broadcast state.
    type StateValue: Data;

    /// Handles a record of the main input with the current broadcast state.
    fn process(
        &mut self,
        value: T,
        state: &BroadcastState<Self::StateKey, Self::StateValue>,
        ctx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;

    /// Handles a broadcast record: updates the broadcast state (the same way in every subtask).
    fn process_broadcast(
        &mut self,
        value: B,
        state: &mut BroadcastState<Self::StateKey, Self::StateValue>,
        ctx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()>;

    /// The broadcast state's descriptor: its name and the schema of its values, which
    /// checkpoints write it with and a restore reads it through (migrations of older
    /// versions; a state the job cannot read fails the restore naming the step and the
    /// state). By default [`DEFAULT_BROADCAST_STATE`], self-describing values of version 0.
    fn broadcast_state(&self) -> BroadcastStateDescriptor<Self::StateKey, Self::StateValue> {
        BroadcastStateDescriptor::new(DEFAULT_BROADCAST_STATE)
    }
}

/// The keyed form: input 0 is the keyed stream, input 1 the broadcast stream.
pub(crate) struct KeyedBroadcastLogic<K, T, B, P: KeyedBroadcastProcess<K, T, B>> {
    pub(crate) key_fn: super::keyed_process::KeyFn<K, T>,
    pub(crate) process: P,
    pub(crate) state: BroadcastState<P::StateKey, P::StateValue>,
    pub(crate) subtask: usize,
    pub(crate) _b: std::marker::PhantomData<fn(B)>,
}

impl<K: Key, T: Data, B: Data, P: KeyedBroadcastProcess<K, T, B>> KeyedLogic<K> for KeyedBroadcastLogic<K, T, B, P> {
    type Out = P::Out;

    fn process_input(
        &mut self,
        input: usize,
        batch: Box<dyn ErasedBatch>,
        core: &mut KeyedCore<K>,
        out: &mut Vec<Record<P::Out>>,
    ) -> Result<()> {
        let (p, state) = (&mut self.process, &mut self.state);
        match input {
            0 => {
                let now = core.now_ms();
                for r in downcast::<T>(batch)? {
                    let key = (self.key_fn)(&r.value);
                    core.with_key(&key, r.timestamp, now, out, |ctx| p.process(r.value, state, ctx))?;
                }
            }
            1 => {
                for r in downcast::<B>(batch)? {
                    let mut ctx = BroadcastContext {
                        timestamp: r.timestamp,
                        subtask: self.subtask,
                        out: &mut *out,
                    };
                    p.process_broadcast(r.value, state, &mut ctx)?;
                }
            }
            i => return Err(Error::internal(format!("keyed broadcast process has no input {i}"))),
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, P::Out>) -> Result<()> {
        self.process.on_timer(timer, &self.state, ctx)
    }

    fn open(&mut self, _ctx: &crate::functions::RuntimeContext) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) {}

    fn states(&self) -> Vec<StateDeclaration> {
        self.process.states()
    }

    fn open_logic(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask;
        self.state = restore_state(ctx, &self.process.broadcast_state())?;
        Ok(())
    }

    fn snapshot_logic(&mut self) -> Result<Option<Vec<u8>>> {
        // One copy per checkpoint: every subtask holds the same map.
        if self.subtask == 0 {
            self.process.broadcast_state().encode(&self.state).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The non-keyed form: input 0 is the main stream, input 1 the broadcast stream.
pub(crate) struct BroadcastOperator<T, B, P: BroadcastProcess<T, B>> {
    pub(crate) process: P,
    pub(crate) state: BroadcastState<P::StateKey, P::StateValue>,
    pub(crate) subtask: usize,
    pub(crate) _tb: std::marker::PhantomData<fn(T, B)>,
}

impl<T: Data, B: Data, P: BroadcastProcess<T, B>> OperatorCore for BroadcastOperator<T, B, P> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask;
        self.state = restore_state(ctx, &self.process.broadcast_state())?;
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()> {
        let mut buf: Vec<Record<P::Out>> = Vec::with_capacity(batch.len());
        let (p, state) = (&mut self.process, &mut self.state);
        match input {
            0 => {
                for r in downcast::<T>(batch)? {
                    let mut ctx = BroadcastContext {
                        timestamp: r.timestamp,
                        subtask: self.subtask,
                        out: &mut buf,
                    };
                    p.process(r.value, state, &mut ctx)?;
                }
            }
            1 => {
                for r in downcast::<B>(batch)? {
                    let mut ctx = BroadcastContext {
                        timestamp: r.timestamp,
                        subtask: self.subtask,
                        out: &mut buf,
                    };
                    p.process_broadcast(r.value, state, &mut ctx)?;
                }
            }
            i => return Err(Error::internal(format!("broadcast process has no input {i}"))),
        }
        out.batch(erase(buf));
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier, _target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot {
            keyed_files: Vec::new(),
            operator_state: if self.subtask == 0 {
                Some(self.process.broadcast_state().encode(&self.state)?)
            } else {
                None
            },
        })
    }
}
