//! [`KeyedBroadcastHarness`]: one keyed broadcast process function run by the pipeline's keyed
//! operator, its keyed input and its broadcast input fed by hand.

use super::builder::HarnessBuilder;
use super::keyed_driver::{keyed_accessors, KeySlot, KeyedDriver};
use super::output::output_accessors;
use super::snapshot::HarnessSnapshot;
use crate::data::{Data, Key, Record, Timestamp};
use crate::operator::broadcast::{BroadcastState, KeyedBroadcastLogic, KeyedBroadcastProcess};
use crate::Result;
use std::marker::PhantomData;

/// Input 0 of the step: the keyed stream.
const MAIN: usize = 0;
/// Input 1 of the step: the broadcast stream.
const BROADCAST: usize = 1;

/// Runs one [`KeyedBroadcastProcess`] as subtask of a `keyed.connect_broadcast(&rules)` step,
/// through the operator a pipeline runs (keyed store, timers, side outputs, the broadcast
/// state and its checkpointed copy), fed by hand: keyed records of given keys, broadcast
/// records, watermarks on either input and processing time. Flink's
/// `KeyedBroadcastOperatorTestHarness`.
///
/// The step's event time is the minimum of its two inputs' watermarks, as in a pipeline: a
/// watermark on the keyed input alone does not fire timers while the broadcast input is
/// behind. [`snapshot`](Self::snapshot) holds the keyed state of the subtask and, at subtask
/// 0, the broadcast state; a restore at any subtask and parallelism takes its share of the
/// keyed state and subtask 0's copy of the broadcast state
/// ([`HarnessBuilder::restore_from_all`]).
///
/// ```
/// use weir_engine::prelude::*;
/// use weir_engine::testing::harness::KeyedBroadcastHarness;
///
/// /// Flags amounts above the limit broadcast for the record's region.
/// #[derive(Clone)]
/// struct Limits;
/// impl KeyedBroadcastProcess<String, u64, (String, u64)> for Limits {
///     type Out = String;
///     type StateKey = String;
///     type StateValue = u64;
///     fn process(&mut self, amount: u64, limits: &BroadcastState<String, u64>,
///                ctx: &mut KeyedContext<'_, String, String>) -> Result<()> {
///         if limits.get(ctx.key()).is_some_and(|l| amount > *l) {
///             ctx.emit(format!("{} over limit: {amount}", ctx.key()));
///         }
///         Ok(())
///     }
///     fn process_broadcast(&mut self, (region, limit): (String, u64),
///                          limits: &mut BroadcastState<String, u64>,
///                          _ctx: &mut BroadcastContext<'_, String>) -> Result<()> {
///         limits.insert(region, limit);
///         Ok(())
///     }
/// }
///
/// let mut h = KeyedBroadcastHarness::new(Limits)?;
/// h.process_broadcast_element(("eu".to_string(), 100), 1)?;
/// h.process_element(&"eu".to_string(), 150, 2)?;
/// h.process_element(&"eu".to_string(), 50, 3)?;
/// assert_eq!(h.output_values(), vec!["eu over limit: 150".to_string()]);
/// assert_eq!(h.broadcast_state().get(&"eu".to_string()), Some(&100));
/// let restored = KeyedBroadcastHarness::restore(Limits, &h.snapshot()?)?;
/// assert_eq!(restored.broadcast_state().len(), 1);
/// # Ok::<(), weir_engine::Error>(())
/// ```
pub struct KeyedBroadcastHarness<K: Key, T: Data, B: Data, P: KeyedBroadcastProcess<K, T, B>> {
    driver: KeyedDriver<K, KeyedBroadcastLogic<K, T, B, P>>,
}

impl<K: Key, T: Data, B: Data, P: KeyedBroadcastProcess<K, T, B>> KeyedBroadcastHarness<K, T, B, P> {
    /// Opens `process` as subtask 0 of 1 with 128 key groups and keyed state in memory (see
    /// [`HarnessBuilder`] for other settings).
    ///
    /// # Errors
    /// The function's `open` failed.
    pub fn new(process: P) -> Result<Self> {
        HarnessBuilder::new().keyed_broadcast(process)
    }

    /// Opens `process` on the state of `snapshot`, at the snapshot's subtask, parallelism and
    /// backend, as a pipeline restores the step after a failure: keyed state, timers, the
    /// watermark and the broadcast state as they were. The snapshot must be subtask 0's (it
    /// alone holds the broadcast state); for another subtask, give both to
    /// [`HarnessBuilder::restore_from_all`].
    ///
    /// # Errors
    /// `Config` for a snapshot of another subtask than 0; the store's or the broadcast
    /// state's restore error (a broadcast state this job cannot read names the step and the
    /// state); the function's `open` error.
    pub fn restore(process: P, snapshot: &HarnessSnapshot) -> Result<Self> {
        HarnessBuilder::restoring(snapshot).keyed_broadcast(process)
    }

    /// Processes `value` of `key` on the keyed input, with event time `timestamp`.
    ///
    /// # Errors
    /// The function's error, or `Config` if this subtask does not own `key`.
    pub fn process_element(&mut self, key: &K, value: T, timestamp: Timestamp) -> Result<()> {
        self.driver
            .feed_keyed(MAIN, key, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` of `key` on the keyed input, without an event time.
    ///
    /// # Errors
    /// As [`process_element`](Self::process_element).
    pub fn process_element_without_timestamp(&mut self, key: &K, value: T) -> Result<()> {
        self.driver.feed_keyed(MAIN, key, Record::new(value))
    }

    /// Processes `value` on the broadcast input with event time `timestamp`, as every subtask
    /// of the step does.
    ///
    /// # Errors
    /// The function's error.
    pub fn process_broadcast_element(&mut self, value: B, timestamp: Timestamp) -> Result<()> {
        self.driver.feed(BROADCAST, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` on the broadcast input without an event time.
    ///
    /// # Errors
    /// The function's error.
    pub fn process_broadcast_element_without_timestamp(&mut self, value: B) -> Result<()> {
        self.driver.feed(BROADCAST, Record::new(value))
    }

    /// Advances the keyed input's event time to `watermark`; the step's event time (the
    /// minimum of both inputs') fires the event-time timers due at it.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the keyed input's. The function's error from
    /// `on_timer`.
    pub fn process_main_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark(MAIN, "the keyed input's", watermark)
    }

    /// Advances the broadcast input's event time to `watermark` (see
    /// [`process_main_watermark`](Self::process_main_watermark)).
    ///
    /// # Errors
    /// As [`process_main_watermark`](Self::process_main_watermark).
    pub fn process_broadcast_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark(BROADCAST, "the broadcast input's", watermark)
    }

    /// Advances both inputs' event time to `watermark`.
    ///
    /// # Errors
    /// As [`process_main_watermark`](Self::process_main_watermark).
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark_all(watermark)
    }

    /// The subtask's broadcast state, as the function sees it now.
    pub fn broadcast_state(&self) -> &BroadcastState<P::StateKey, P::StateValue> {
        &self.driver.operator.logic.state
    }

    output_accessors!(P::Out, driver.collected);
    keyed_accessors!(K);

    /// The function, for checks of its own fields.
    pub fn function(&self) -> &P {
        &self.driver.operator.logic.process
    }
}

impl HarnessBuilder {
    /// Opens a [`KeyedBroadcastHarness`] running `process` with these settings: the keyed
    /// store is opened (restored from the snapshots given, at this subtask's key groups), the
    /// broadcast state restored from subtask 0's snapshot, then the function's `open` runs.
    ///
    /// # Errors
    /// As [`keyed`](Self::keyed); `Config` if snapshots are given without subtask 0's.
    pub fn keyed_broadcast<K: Key, T: Data, B: Data, P: KeyedBroadcastProcess<K, T, B>>(
        self,
        process: P,
    ) -> Result<KeyedBroadcastHarness<K, T, B, P>> {
        self.replicated_state()?;
        let key = KeySlot::new();
        let logic = KeyedBroadcastLogic {
            key_fn: key.key_fn(),
            process,
            state: BroadcastState::default(),
            subtask: 0,
            _b: PhantomData,
        };
        Ok(KeyedBroadcastHarness {
            driver: KeyedDriver::open(self, key, logic, 2)?,
        })
    }
}
