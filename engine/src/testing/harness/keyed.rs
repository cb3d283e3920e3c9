//! [`KeyedHarness`]: one keyed process function run by the pipeline's keyed operator, fed by
//! hand.

use super::builder::HarnessBuilder;
use super::output::{output_accessors, Collected};
use super::snapshot::HarnessSnapshot;
use super::state_names::StateNames;
use crate::data::{erase, Data, Key, Record, Timestamp};
use crate::keyed::scope::{decode, StateOps};
use crate::keyed::TimeDomain;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::metrics::OperatorMetrics;
use crate::operator::keyed_core::KeyedCore;
use crate::operator::keyed_process::{KeyedOperator, KeyedProcess, OneInput};
use crate::operator::{Emitter, OperatorCore, SnapshotTarget};
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

/// Runs one [`KeyedProcess`] as subtask of a keyed step, through the same operator a pipeline
/// runs (keyed store, timers, TTLs, side outputs, snapshots), fed by hand: records of given
/// keys, watermarks and processing time. Flink's `KeyedOneInputStreamOperatorTestHarness`.
///
/// Output, side outputs, emitted watermarks, keyed state and registered timers can be read at
/// any point; [`snapshot`](Self::snapshot) takes what a checkpoint would hold, and
/// [`restore`](Self::restore) (or [`HarnessBuilder::restore_from`], also at another subtask and
/// parallelism) starts a harness from it as a pipeline restarts after a failure.
///
/// ```
/// use weir_engine::prelude::*;
/// use weir_engine::testing::harness::KeyedHarness;
///
/// #[derive(Clone)]
/// struct Sum;
/// impl KeyedProcess<u64, i64> for Sum {
///     type Out = i64;
///     fn process(&mut self, v: i64, ctx: &mut KeyedContext<'_, u64, i64>) -> Result<()> {
///         let mut sum = ctx.value_state::<i64>("sum");
///         let s = sum.get()?.unwrap_or(0) + v;
///         sum.set(&s)?;
///         ctx.emit(s);
///         Ok(())
///     }
/// }
///
/// let mut h = KeyedHarness::new(Sum)?;
/// h.process_element(&7, 5, 100)?;
/// h.process_element(&7, 3, 101)?;
/// assert_eq!(h.output_values(), vec![5, 8]);
/// assert_eq!(h.value_state::<i64>(&7, "sum")?, Some(8));
/// let snapshot = h.snapshot()?;
/// let mut restored = KeyedHarness::restore(Sum, &snapshot)?;
/// restored.process_element(&7, 1, 102)?;
/// assert_eq!(restored.output_values(), vec![9]);
/// # Ok::<(), weir_engine::Error>(())
/// ```
pub struct KeyedHarness<K: Key, I: Data, P: KeyedProcess<K, I>> {
    operator: KeyedOperator<K, OneInput<K, I, P>>,
    /// The key of the record being fed (what the operator's key function returns).
    current_key: Arc<Mutex<Option<K>>>,
    collected: Collected<P::Out>,
    names: StateNames,
    settings: HarnessBuilder,
    key_groups: KeyGroupRange,
    metrics: OperatorMetrics,
    backend: &'static str,
    /// The latest watermark fed (or restored): event time never goes back.
    watermark_in: Timestamp,
    processing_time: u64,
    checkpoints: u64,
    closed: bool,
    /// The RocksDB working directory (deleted after the store is closed: declared last).
    _workdir: Option<tempfile::TempDir>,
}

impl<K: Key, I: Data, P: KeyedProcess<K, I>> KeyedHarness<K, I, P> {
    /// Opens `process` as subtask 0 of 1 with 128 key groups and state in memory (see
    /// [`HarnessBuilder`] for other settings): `open` has run when it returns.
    ///
    /// # Errors
    /// The function's `open` failed.
    pub fn new(process: P) -> Result<Self> {
        HarnessBuilder::new().keyed(process)
    }

    /// Opens `process` on the state of `snapshot`, at the snapshot's subtask, parallelism and
    /// backend (memory or RocksDB), as a pipeline restores a step after a failure: keyed
    /// state, timers and the watermark are as they were when the snapshot was taken.
    ///
    /// # Errors
    /// The store could not be restored, or the function's `open` failed.
    pub fn restore(process: P, snapshot: &HarnessSnapshot) -> Result<Self> {
        let mut b = HarnessBuilder::new()
            .subtask(snapshot.subtask, snapshot.parallelism)
            .max_parallelism(snapshot.max_parallelism)
            .restore_from(snapshot);
        if snapshot.backend == "rocksdb" {
            b = b.rocksdb();
        }
        b.keyed(process)
    }

    /// Opens the harness as `settings` say (see [`HarnessBuilder::keyed`]).
    pub(crate) fn open(settings: HarnessBuilder, process: P) -> Result<Self> {
        let current_key: Arc<Mutex<Option<K>>> = Arc::new(Mutex::new(None));
        let slot = current_key.clone();
        let logic = OneInput {
            // The harness feeds one record at a time and sets its key just before.
            key_fn: Arc::new(move |_: &I| {
                slot.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .expect("the harness sets the key of every record it feeds")
            }),
            process,
        };
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
        let watermark_in = core.watermark;
        Ok(KeyedHarness {
            operator,
            current_key,
            collected: Collected::new(true),
            names,
            key_groups,
            metrics,
            backend: opened.backend,
            watermark_in,
            processing_time: settings.processing_time,
            checkpoints: 0,
            closed: false,
            settings,
            _workdir: opened.workdir,
        })
    }

    fn core(&mut self) -> Result<&mut KeyedCore<K>> {
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

    fn feed(&mut self, key: &K, record: Record<I>) -> Result<()> {
        self.check_key(key)?;
        self.core()?;
        *self.current_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        let mut out = Emitter::default();
        let r = self.operator.process_batch(0, erase(vec![record]), &mut out);
        *self.current_key.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.collected.collect(out)?;
        r
    }

    /// Processes `value` of `key` with event time `timestamp`, as the step's operator
    /// processes a record; what it emits is added to the output.
    ///
    /// # Errors
    /// The function's error, or `Config` if this subtask does not own `key`.
    pub fn process_element(&mut self, key: &K, value: I, timestamp: Timestamp) -> Result<()> {
        self.feed(key, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` of `key` without an event time (a stream without timestamps).
    ///
    /// # Errors
    /// As [`process_element`](Self::process_element).
    pub fn process_element_without_timestamp(&mut self, key: &K, value: I) -> Result<()> {
        self.feed(key, Record::new(value))
    }

    /// Advances event time to `watermark`: event-time timers due at it fire (earliest first),
    /// then the step forwards the watermark. A watermark equal to the current one changes
    /// nothing.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the one fed before (or restored): a step's event time
    /// never goes back. The function's error from `on_timer`.
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark < self.watermark_in {
            return Err(Error::config(format!(
                "harness for step \"{}\": watermark {watermark} is behind the step's watermark {}: event time never \
                 goes back",
                self.settings.step, self.watermark_in
            )));
        }
        self.core()?;
        self.watermark_in = watermark;
        let mut out = Emitter::default();
        let r = self.operator.on_watermark(watermark, &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Sets processing time to `ms`: processing-time timers due at it fire (earliest first),
    /// and the function reads it as `ctx.current_processing_time()` (processing-time TTLs
    /// follow it too).
    ///
    /// # Errors
    /// `Config` if `ms` is before the current processing time. The function's error from
    /// `on_timer`.
    pub fn set_processing_time(&mut self, ms: u64) -> Result<()> {
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

    /// The current processing time (ms).
    pub fn processing_time(&self) -> u64 {
        self.processing_time
    }

    /// The step's current watermark (what `ctx.current_watermark()` reads).
    pub fn current_watermark(&self) -> Timestamp {
        self.operator.core.as_ref().map_or(self.watermark_in, |c| c.watermark)
    }

    output_accessors!(P::Out);

    /// The counters the function added to (`ctx.count`), by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.metrics.counters()
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The names of the states the function wrote (or the restored snapshot held).
    pub fn state_names(&self) -> Vec<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Runs `read` in the state scope of `key`, as the function would see it now, after
    /// checking that the function wrote a state `name` and this subtask owns `key`.
    fn read_state<R>(
        &mut self,
        key: &K,
        name: &str,
        read: impl FnOnce(&mut crate::keyed::KeyedContext<'_, K, P::Out>) -> Result<R>,
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

    /// The value state `name` of `key` as the function would read it now (an expired entry
    /// reads as `None`).
    ///
    /// # Errors
    /// `Config` if the function never wrote a state `name`, if `name` of `key` is a map or
    /// list state, if the value does not decode as `V`, or if this subtask does not own `key`.
    pub fn value_state<V: Data>(&mut self, key: &K, name: &str) -> Result<Option<V>> {
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

    /// The entries of map state `name` of `key`, in the order of the map keys' encoding.
    ///
    /// # Errors
    /// `Config` if the function never wrote a state `name`, if the entries do not decode as
    /// `(UK, UV)`, or if this subtask does not own `key`.
    pub fn map_state<UK: Data, UV: Data>(&mut self, key: &K, name: &str) -> Result<Vec<(UK, UV)>> {
        self.read_state(key, name, |ctx| ctx.map_state::<UK, UV>(name).entries())
    }

    /// The entries of sorted map state `name` of `key`, in key order.
    ///
    /// # Errors
    /// As [`map_state`](Self::map_state).
    pub fn sorted_map_state<UK: crate::keyed::SortKey, UV: Data>(
        &mut self,
        key: &K,
        name: &str,
    ) -> Result<Vec<(UK, UV)>> {
        self.read_state(key, name, |ctx| ctx.sorted_map_state::<UK, UV>(name).entries())
    }

    /// The elements of list state `name` of `key`, in order.
    ///
    /// # Errors
    /// As [`map_state`](Self::map_state).
    pub fn list_state<V: Data>(&mut self, key: &K, name: &str) -> Result<Vec<V>> {
        self.read_state(key, name, |ctx| ctx.list_state::<V>(name).get())
    }

    /// The timers registered by the function that have not fired, event-time ones first,
    /// each clock's earliest first.
    ///
    /// # Errors
    /// `Data` if a timer's key does not decode as `K`.
    pub fn registered_timers(&mut self) -> Result<Vec<RegisteredTimer<K>>> {
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

    /// The number of timers registered by the function that have not fired, both clocks.
    ///
    /// # Errors
    /// As [`registered_timers`](Self::registered_timers).
    pub fn num_timers(&mut self) -> Result<usize> {
        Ok(self.registered_timers()?.len())
    }

    /// What a checkpoint taken now would hold of this subtask: its keyed store (state, timers,
    /// watermark). Output is not part of it: after [`restore`](Self::restore), feed again
    /// what came after the snapshot, as a pipeline's sources replay it.
    ///
    /// # Errors
    /// The store's snapshot could not be written.
    pub fn snapshot(&mut self) -> Result<HarnessSnapshot> {
        self.core()?;
        let dir = tempfile::Builder::new()
            .prefix("weir-harness-snapshot-")
            .tempdir()
            .map_err(|e| Error::io("creating a harness snapshot directory", e))?;
        self.checkpoints += 1;
        let barrier = Barrier {
            id: CheckpointId::new(self.checkpoints),
            kind: BarrierKind::Checkpoint,
            triggered_at_ms: self.processing_time,
        };
        let snap = self.operator.snapshot(
            &barrier,
            &SnapshotTarget {
                dir: Some(dir.path().join("store")),
            },
        )?;
        self.operator.notify_checkpoint_complete(barrier.id)?;
        Ok(HarnessSnapshot {
            dir: Arc::new(dir),
            files: snap.keyed_files,
            backend: self.backend,
            subtask: self.settings.subtask,
            parallelism: self.settings.parallelism,
            max_parallelism: self.settings.max_parallelism,
            watermark: self.current_watermark(),
        })
    }

    /// Ends the input: a final watermark at the end of time fires every event-time timer,
    /// as in a bounded pipeline, then the function is closed.
    ///
    /// # Errors
    /// The function's error from `on_timer`.
    pub fn finish(&mut self) -> Result<()> {
        self.process_watermark(crate::data::MAX_WATERMARK)?;
        let mut out = Emitter::default();
        let r = self.operator.finish(&mut out);
        self.collected.collect(out)?;
        self.close();
        r
    }

    /// Closes the function (its `close`); the harness accepts nothing after. Dropping the
    /// harness closes it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.operator.close();
        }
    }

    /// The function, for checks of its own fields.
    pub fn function(&self) -> &P {
        &self.operator.logic.process
    }
}

impl<K: Key, I: Data, P: KeyedProcess<K, I>> Drop for KeyedHarness<K, I, P> {
    fn drop(&mut self) {
        self.close();
    }
}

impl HarnessBuilder {
    /// Opens a [`KeyedHarness`] running `process` with these settings: the keyed store is
    /// opened (restored from the snapshots given, at this subtask's key groups), then the
    /// function's `open` runs.
    ///
    /// # Errors
    /// `Config` for a subtask outside its parallelism or snapshots that do not fit (another
    /// max parallelism or backend, a missing subtask); the store's restore error; the
    /// function's `open` error.
    pub fn keyed<K: Key, I: Data, P: KeyedProcess<K, I>>(self, process: P) -> Result<KeyedHarness<K, I, P>> {
        KeyedHarness::open(self, process)
    }
}
