//! [`KeyedHarness`]: one keyed process function run by the pipeline's keyed operator, fed by
//! hand.

use super::builder::HarnessBuilder;
use super::keyed_driver::{keyed_accessors, KeySlot, KeyedDriver};
use super::output::output_accessors;
use super::snapshot::HarnessSnapshot;
use crate::data::{Data, Key, Record, Timestamp};
use crate::operator::keyed_process::{KeyedProcess, OneInput};
use crate::Result;

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
    driver: KeyedDriver<K, OneInput<K, I, P>>,
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
        HarnessBuilder::restoring(snapshot).keyed(process)
    }

    /// Processes `value` of `key` with event time `timestamp`, as the step's operator
    /// processes a record; what it emits is added to the output.
    ///
    /// # Errors
    /// The function's error, or `Config` if this subtask does not own `key`.
    pub fn process_element(&mut self, key: &K, value: I, timestamp: Timestamp) -> Result<()> {
        self.driver.feed_keyed(0, key, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` of `key` without an event time (a stream without timestamps).
    ///
    /// # Errors
    /// As [`process_element`](Self::process_element).
    pub fn process_element_without_timestamp(&mut self, key: &K, value: I) -> Result<()> {
        self.driver.feed_keyed(0, key, Record::new(value))
    }

    /// Advances event time to `watermark`: event-time timers due at it fire (earliest first),
    /// then the step forwards the watermark. A watermark equal to the current one changes
    /// nothing.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the one fed before (or restored): a step's event time
    /// never goes back. The function's error from `on_timer`.
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark(0, "the step's", watermark)
    }

    output_accessors!(P::Out, driver.collected);
    keyed_accessors!(K);

    /// The function, for checks of its own fields.
    pub fn function(&self) -> &P {
        &self.driver.operator.logic.process
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
        let key = KeySlot::new();
        let logic = OneInput {
            key_fn: key.key_fn(),
            process,
        };
        Ok(KeyedHarness {
            driver: KeyedDriver::open(self, key, logic, 1)?,
        })
    }
}
