//! The engine of every keyed harness: the pipeline's keyed operator around any keyed logic
//! (one input, two keyed inputs, keyed and broadcast inputs), fed one record at a time with
//! the key the harness is told, with watermarks per input, processing time, state reads,
//! timers and snapshots. The public harnesses ([`KeyedHarness`](super::KeyedHarness),
//! [`KeyedCoProcessHarness`](super::KeyedCoProcessHarness),
//! [`KeyedBroadcastHarness`](super::KeyedBroadcastHarness)) wrap it with their inputs' types.
//!
//! # After a crash
//! A snapshot holds what a checkpoint holds of the subtask: its keyed store (state, timers,
//! watermark) and the logic's operator state (the broadcast state, written by subtask 0 only,
//! as in a pipeline).

use super::builder::HarnessBuilder;
use super::output::Collected;
use super::snapshot::HarnessSnapshot;
use super::state_names::StateNames;
use crate::data::{erase, Data, Key, Record, Timestamp, MIN_WATERMARK};
use crate::keyed::scope::{decode, StateOps};
use crate::keyed::{KeyedContext, StateDescriptor, TimeDomain};
use crate::metrics::OperatorMetrics;
use crate::operator::keyed_core::KeyedCore;
use crate::operator::keyed_process::{KeyFn, KeyedLogic, KeyedOperator};
use crate::operator::{Emitter, OperatorCore};
use crate::state::{key_group_for, KeyGroupRange};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A timer the function registered and that has not fired yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredTimer<K> {
    /// The key it was registered for.
    pub key: K,
    /// When it fires (event time, or processing time in ms).
    pub time: Timestamp,
    /// Its clock.
    pub domain: TimeDomain,
}

/// The key of the record being fed: the key functions of the driven logic read it.
#[derive(Clone)]
pub(crate) struct KeySlot<K>(Arc<Mutex<Option<K>>>);

impl<K: Key> KeySlot<K> {
    pub(crate) fn new() -> Self {
        KeySlot(Arc::new(Mutex::new(None)))
    }

    /// A key function returning the key the harness set for the record it feeds.
    pub(crate) fn key_fn<T>(&self) -> KeyFn<K, T> {
        let slot = self.0.clone();
        Arc::new(move |_: &T| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .expect("the harness sets the key of every keyed record it feeds")
        })
    }

    fn set(&self, key: Option<K>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

/// Runs keyed logic `L` in the pipeline's [`KeyedOperator`], fed by hand.
pub(crate) struct KeyedDriver<K: Key, L: KeyedLogic<K>> {
    pub(crate) operator: KeyedOperator<K, L>,
    key: KeySlot<K>,
    pub(crate) collected: Collected<L::Out>,
    names: StateNames,
    pub(crate) settings: HarnessBuilder,
    key_groups: KeyGroupRange,
    metrics: OperatorMetrics,
    backend: &'static str,
    /// The latest watermark fed (or restored) per input: event time never goes back on an
    /// input, and the step's event time is their minimum.
    watermarks_in: Vec<Timestamp>,
    processing_time: u64,
    checkpoints: u64,
    closed: bool,
    /// The RocksDB working directory (deleted after the store is closed: declared last).
    _workdir: Option<tempfile::TempDir>,
}

impl<K: Key, L: KeyedLogic<K>> KeyedDriver<K, L> {
    /// Opens `logic` (whose key functions read `key`) with `inputs` inputs, as `settings` say:
    /// the keyed store is opened (restored from the snapshots given), then the function's
    /// `open` and the logic's own restore (the broadcast state) run.
    pub(crate) fn open(settings: HarnessBuilder, key: KeySlot<K>, logic: L, inputs: usize) -> Result<Self> {
        let names = StateNames::default();
        let opened = settings.keyed_context(&names)?;
        let mut ctx = opened.ctx;
        let (key_groups, metrics) = (ctx.key_groups, ctx.metrics.clone());
        let mut operator = KeyedOperator::new(logic).tagged(true);
        operator.open(&mut ctx)?;
        let core = operator
            .core
            .as_mut()
            .ok_or_else(|| Error::internal("keyed operator opened without a core"))?;
        core.manual_processing_time = Some(settings.processing_time);
        let watermark = core.watermark;
        Ok(KeyedDriver {
            operator,
            key,
            collected: Collected::new(true),
            names,
            key_groups,
            metrics,
            backend: opened.backend,
            watermarks_in: vec![watermark; inputs],
            processing_time: settings.processing_time,
            checkpoints: 0,
            closed: false,
            settings,
            _workdir: opened.workdir,
        })
    }

    pub(crate) fn core(&mut self) -> Result<&mut KeyedCore<K>> {
        if self.closed {
            return Err(Error::config(format!(
                "harness for step \"{}\" is closed",
                self.settings.step
            )));
        }
        self.operator
            .core
            .as_mut()
            .ok_or_else(|| Error::internal("keyed operator used before open"))
    }

    /// Checks that this subtask owns `key`, as a pipeline would have routed it here.
    fn check_key(&self, key: &K) -> Result<()> {
        let kg = key_group_for(key, self.settings.max_parallelism)?;
        if !self.key_groups.contains(kg) {
            return Err(Error::config(format!(
                "harness for step \"{}\": key {key:?} is in key group {kg}, which subtask {} of {} does not own \
                 (it owns {}..={}); a pipeline never routes it here",
                self.settings.step,
                self.settings.subtask,
                self.settings.parallelism,
                self.key_groups.start,
                self.key_groups.end
            )));
        }
        Ok(())
    }

    /// Feeds `record` of `key` on keyed input `input`.
    pub(crate) fn feed_keyed<T: Data>(&mut self, input: usize, key: &K, record: Record<T>) -> Result<()> {
        self.check_key(key)?;
        self.key.set(Some(key.clone()));
        let r = self.feed(input, record);
        self.key.set(None);
        r
    }

    /// Feeds `record` on input `input` (a keyed one after [`feed_keyed`](Self::feed_keyed)
    /// set its key, or the broadcast input).
    pub(crate) fn feed<T: Data>(&mut self, input: usize, record: Record<T>) -> Result<()> {
        self.core()?;
        let mut out = Emitter::default();
        let r = self.operator.process_batch(input, erase(vec![record]), &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Advances the event time of input `input` (`whose` names it in errors: "the step's",
    /// "the broadcast input's") to `watermark`; the
    /// step's event time, the minimum over its inputs, fires the event-time timers due.
    pub(crate) fn watermark(&mut self, input: usize, whose: &str, watermark: Timestamp) -> Result<()> {
        let current = self.watermarks_in[input];
        if watermark < current {
            return Err(Error::config(format!(
                "harness for step \"{}\": watermark {watermark} is behind {whose} watermark {current}: event time \
                 never goes back",
                self.settings.step
            )));
        }
        self.core()?;
        self.watermarks_in[input] = watermark;
        let combined = self.watermarks_in.iter().copied().min().unwrap_or(MIN_WATERMARK);
        let mut out = Emitter::default();
        let r = self.operator.on_watermark(combined, &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Advances every input's event time to `watermark`.
    pub(crate) fn watermark_all(&mut self, watermark: Timestamp) -> Result<()> {
        for input in 0..self.watermarks_in.len() {
            if watermark < self.watermarks_in[input] {
                let whose = if self.watermarks_in.len() == 1 {
                    "the step's".to_string()
                } else {
                    format!("input {input}'s")
                };
                return self.watermark(input, &whose, watermark);
            }
        }
        self.watermarks_in.iter_mut().for_each(|w| *w = watermark);
        self.core()?;
        let mut out = Emitter::default();
        let r = self.operator.on_watermark(watermark, &mut out);
        self.collected.collect(out)?;
        r
    }

    pub(crate) fn set_processing_time(&mut self, ms: u64) -> Result<()> {
        if ms < self.processing_time {
            return Err(Error::config(format!(
                "harness for step \"{}\": processing time {ms} is before the current {}: the clock never goes back",
                self.settings.step, self.processing_time
            )));
        }
        self.core()?.manual_processing_time = Some(ms);
        self.processing_time = ms;
        let mut out = Emitter::default();
        let r = self.operator.on_processing_time(ms, &mut out);
        self.collected.collect(out)?;
        r
    }

    pub(crate) fn processing_time(&self) -> u64 {
        self.processing_time
    }

    pub(crate) fn current_watermark(&self) -> Timestamp {
        let fed = self.watermarks_in.iter().copied().min().unwrap_or(MIN_WATERMARK);
        self.operator.core.as_ref().map_or(fed, |c| c.watermark)
    }

    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        self.metrics.counters()
    }

    pub(crate) fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    pub(crate) fn state_names(&self) -> Vec<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Runs `read` in the state scope of `key`, as the function would see it now, after
    /// checking that the function wrote a state `name` and this subtask owns `key`.
    pub(crate) fn read_state<R>(
        &mut self,
        key: &K,
        name: &str,
        read: impl FnOnce(&mut KeyedContext<'_, K, L::Out>) -> Result<R>,
    ) -> Result<R> {
        if !self.names.lock().unwrap_or_else(|e| e.into_inner()).contains(name) {
            return Err(Error::config(format!(
                "harness for step \"{}\": the function has written no state named \"{name}\" (states written: {:?})",
                self.settings.step,
                self.state_names()
            )));
        }
        self.check_key(key)?;
        let core = self.core()?;
        let now = core.now_ms();
        let mut discarded = Vec::new();
        core.with_key(key, None, now, &mut discarded, read)
    }

    pub(crate) fn value_state<V: Data>(&mut self, key: &K, name: &str) -> Result<Option<V>> {
        let step = self.settings.step.clone();
        self.read_state(key, name, |ctx| {
            let value = ctx.value_state::<V>(name).get()?;
            if value.is_none() {
                let mut entries = false;
                ctx.scope.scan_raw(name, &mut |suffix, _| {
                    entries |= !suffix.is_empty();
                    Ok(!entries)
                })?;
                if entries {
                    return Err(Error::config(format!(
                        "harness for step \"{step}\": state \"{name}\" of key {key:?} holds map or list entries; read \
                         it with map_state or list_state"
                    )));
                }
            }
            Ok(value)
        })
    }

    /// Runs `read` on the handle of the state `descriptor` declares, for `key`.
    pub(crate) fn with_state<D: StateDescriptor, R>(
        &mut self,
        key: &K,
        descriptor: &D,
        read: impl FnOnce(D::Handle<'_>) -> Result<R>,
    ) -> Result<R> {
        let name = descriptor.declare().name();
        self.read_state(key, name, |ctx| read(ctx.state(descriptor)))
    }

    pub(crate) fn registered_timers(&mut self) -> Result<Vec<RegisteredTimer<K>>> {
        let core = self.core()?;
        let mut timers = Vec::new();
        for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
            for (time, key) in core.user_timers(domain) {
                timers.push(RegisteredTimer {
                    key: decode(key)?,
                    time,
                    domain,
                });
            }
        }
        Ok(timers)
    }

    /// What a checkpoint taken now would hold of this subtask.
    pub(crate) fn snapshot(&mut self) -> Result<HarnessSnapshot> {
        self.core()?;
        self.checkpoints += 1;
        let watermark = self.current_watermark();
        HarnessSnapshot::take(
            &mut self.operator,
            self.checkpoints,
            self.processing_time,
            &self.settings,
            self.backend,
            watermark,
        )
    }

    pub(crate) fn finish(&mut self) -> Result<()> {
        self.watermark_all(crate::data::MAX_WATERMARK)?;
        let mut out = Emitter::default();
        let r = self.operator.finish(&mut out);
        self.collected.collect(out)?;
        self.close();
        r
    }

    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.operator.close();
        }
    }
}

impl<K: Key, L: KeyedLogic<K>> Drop for KeyedDriver<K, L> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The accessors every keyed harness shares, delegating to a field `driver`: processing time,
/// watermark, counters, key groups, keyed state by name and by descriptor, timers, close.
macro_rules! keyed_accessors {
    ($k:ty) => {
        /// Sets processing time to `ms`: processing-time timers due at it fire (earliest
        /// first), and the function reads it as `ctx.current_processing_time()`
        /// (processing-time TTLs follow it too).
        ///
        /// # Errors
        /// `Config` if `ms` is before the current processing time. The function's error from
        /// `on_timer`.
        pub fn set_processing_time(&mut self, ms: u64) -> $crate::Result<()> {
            self.driver.set_processing_time(ms)
        }

        /// The current processing time (ms).
        pub fn processing_time(&self) -> u64 {
            self.driver.processing_time()
        }

        /// The step's current watermark (what `ctx.current_watermark()` reads): the minimum
        /// of its inputs' watermarks.
        pub fn current_watermark(&self) -> $crate::data::Timestamp {
            self.driver.current_watermark()
        }

        /// The counters the function added to (`ctx.count`), by name.
        pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
            self.driver.counters()
        }

        /// The key groups this subtask owns.
        pub fn key_groups(&self) -> $crate::state::KeyGroupRange {
            self.driver.key_groups()
        }

        /// The names of the keyed states the function wrote (or the restored snapshot held).
        pub fn state_names(&self) -> Vec<String> {
            self.driver.state_names()
        }

        /// The value state `name` of `key` as the function would read it now (an expired
        /// entry reads as `None`).
        ///
        /// # Errors
        /// `Config` if the function never wrote a state `name`, if `name` of `key` is a map or
        /// list state, if the value does not decode as `V`, or if this subtask does not own
        /// `key`.
        pub fn value_state<V: $crate::data::Data>(&mut self, key: &$k, name: &str) -> $crate::Result<Option<V>> {
            self.driver.value_state(key, name)
        }

        /// The entries of map state `name` of `key`, in the order of the map keys' encoding.
        ///
        /// # Errors
        /// `Config` if the function never wrote a state `name`, if the entries do not decode
        /// as `(UK, UV)`, or if this subtask does not own `key`.
        pub fn map_state<UK: $crate::data::Data, UV: $crate::data::Data>(
            &mut self,
            key: &$k,
            name: &str,
        ) -> $crate::Result<Vec<(UK, UV)>> {
            self.driver
                .read_state(key, name, |ctx| ctx.map_state::<UK, UV>(name).entries())
        }

        /// The entries of sorted map state `name` of `key`, in key order.
        ///
        /// # Errors
        /// As [`map_state`](Self::map_state).
        pub fn sorted_map_state<UK: $crate::keyed::SortKey, UV: $crate::data::Data>(
            &mut self,
            key: &$k,
            name: &str,
        ) -> $crate::Result<Vec<(UK, UV)>> {
            self.driver
                .read_state(key, name, |ctx| ctx.sorted_map_state::<UK, UV>(name).entries())
        }

        /// The elements of list state `name` of `key`, in order.
        ///
        /// # Errors
        /// As [`map_state`](Self::map_state).
        pub fn list_state<V: $crate::data::Data>(&mut self, key: &$k, name: &str) -> $crate::Result<Vec<V>> {
            self.driver
                .read_state(key, name, |ctx| ctx.list_state::<V>(name).get())
        }

        /// Runs `read` on the handle of the state `descriptor` declares, for `key`, as the
        /// function would read it now (with the descriptor's TTL, schema and migrations):
        /// `h.state(&7, &BALANCE, |mut s| s.get())`.
        ///
        /// # Errors
        /// `Config` if the function never wrote the state or this subtask does not own `key`;
        /// `read`'s error.
        pub fn state<D: $crate::keyed::StateDescriptor, R>(
            &mut self,
            key: &$k,
            descriptor: &D,
            read: impl FnOnce(D::Handle<'_>) -> $crate::Result<R>,
        ) -> $crate::Result<R> {
            self.driver.with_state(key, descriptor, read)
        }

        /// The timers registered by the function that have not fired, event-time ones first,
        /// each clock's earliest first.
        ///
        /// # Errors
        /// `Data` if a timer's key does not decode.
        pub fn registered_timers(&mut self) -> $crate::Result<Vec<$crate::testing::harness::RegisteredTimer<$k>>> {
            self.driver.registered_timers()
        }

        /// The number of timers registered by the function that have not fired, both clocks.
        ///
        /// # Errors
        /// As [`registered_timers`](Self::registered_timers).
        pub fn num_timers(&mut self) -> $crate::Result<usize> {
            Ok(self.driver.registered_timers()?.len())
        }

        /// What a checkpoint taken now would hold of this subtask: its keyed store (state,
        /// timers, watermark) and, at subtask 0, the broadcast state if the step has one.
        /// Output is not part of it: after a restore, feed again what came after the
        /// snapshot, as a pipeline's sources replay it.
        ///
        /// # Errors
        /// The store's snapshot could not be written.
        pub fn snapshot(&mut self) -> $crate::Result<$crate::testing::harness::HarnessSnapshot> {
            self.driver.snapshot()
        }

        /// Ends the inputs: a final watermark at the end of time on every input fires every
        /// event-time timer, as in a bounded pipeline, then the function is closed.
        ///
        /// # Errors
        /// The function's error from `on_timer`.
        pub fn finish(&mut self) -> $crate::Result<()> {
            self.driver.finish()
        }

        /// Closes the function (its `close`); the harness accepts nothing after. Dropping the
        /// harness closes it too.
        pub fn close(&mut self) {
            self.driver.close()
        }
    };
}
pub(crate) use keyed_accessors;
