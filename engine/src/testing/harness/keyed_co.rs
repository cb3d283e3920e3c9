//! [`KeyedCoProcessHarness`]: one keyed co-process function (`a.connect(&b).process(..)` on
//! keyed streams, or `a.connect(&b).key_by(..).process(..)`) run by the pipeline's keyed
//! operator, both inputs fed by hand.

use super::builder::HarnessBuilder;
use super::keyed_driver::{keyed_accessors, KeySlot, KeyedDriver};
use super::output::output_accessors;
use super::snapshot::HarnessSnapshot;
use crate::data::{Data, Key, Record, Timestamp};
use crate::operator::keyed_process::{KeyedCoProcess, TwoInputs};
use crate::Result;

/// Runs one [`KeyedCoProcess`] as subtask of a step over two keyed streams, through the
/// operator a pipeline runs (shared keyed store, timers, side outputs, snapshots), fed by hand:
/// records of either input with their key, watermarks per input (the step's event time is
/// their minimum) and processing time. Flink's `KeyedTwoInputStreamOperatorTestHarness`.
///
/// ```
/// use weir_engine::prelude::*;
/// use weir_engine::testing::harness::KeyedCoProcessHarness;
///
/// /// Emits each order with the latest price of its item.
/// #[derive(Clone)]
/// struct Enrich;
/// impl KeyedCoProcess<u32, u32, u64> for Enrich {
///     type Out = (u32, u64);
///     fn process_first(&mut self, qty: u32, ctx: &mut KeyedContext<'_, u32, (u32, u64)>) -> Result<()> {
///         if let Some(price) = ctx.value_state::<u64>("price").get()? {
///             ctx.emit((qty, price * u64::from(qty)));
///         }
///         Ok(())
///     }
///     fn process_second(&mut self, price: u64, ctx: &mut KeyedContext<'_, u32, (u32, u64)>) -> Result<()> {
///         ctx.value_state::<u64>("price").set(&price)
///     }
/// }
///
/// let mut h = KeyedCoProcessHarness::new(Enrich)?;
/// h.process_second(&7, 250, 1)?;
/// h.process_first(&7, 3, 2)?;
/// assert_eq!(h.output_values(), vec![(3, 750)]);
/// # Ok::<(), weir_engine::Error>(())
/// ```
pub struct KeyedCoProcessHarness<K: Key, A: Data, B: Data, P: KeyedCoProcess<K, A, B>> {
    driver: KeyedDriver<K, TwoInputs<K, A, B, P>>,
}

impl<K: Key, A: Data, B: Data, P: KeyedCoProcess<K, A, B>> KeyedCoProcessHarness<K, A, B, P> {
    /// Opens `process` as subtask 0 of 1 with 128 key groups and state in memory (see
    /// [`HarnessBuilder`] for other settings).
    ///
    /// # Errors
    /// The function's `open` failed.
    pub fn new(process: P) -> Result<Self> {
        HarnessBuilder::new().keyed_co_process(process)
    }

    /// Opens `process` on the state of `snapshot`, at the snapshot's subtask, parallelism and
    /// backend, as a pipeline restores the step after a failure.
    ///
    /// # Errors
    /// The store could not be restored, or the function's `open` failed.
    pub fn restore(process: P, snapshot: &HarnessSnapshot) -> Result<Self> {
        HarnessBuilder::restoring(snapshot).keyed_co_process(process)
    }

    /// Processes `value` of `key` on the first input, with event time `timestamp`.
    ///
    /// # Errors
    /// The function's error, or `Config` if this subtask does not own `key`.
    pub fn process_first(&mut self, key: &K, value: A, timestamp: Timestamp) -> Result<()> {
        self.driver.feed_keyed(0, key, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` of `key` on the second input, with event time `timestamp`.
    ///
    /// # Errors
    /// As [`process_first`](Self::process_first).
    pub fn process_second(&mut self, key: &K, value: B, timestamp: Timestamp) -> Result<()> {
        self.driver.feed_keyed(1, key, Record::with_timestamp(value, timestamp))
    }

    /// Advances the first input's event time to `watermark`; the step's event time (the
    /// minimum of both inputs') fires the event-time timers due at it.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the first input's. The function's error from
    /// `on_timer`.
    pub fn process_first_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark(0, "the first input's", watermark)
    }

    /// Advances the second input's event time to `watermark`.
    ///
    /// # Errors
    /// As [`process_first_watermark`](Self::process_first_watermark).
    pub fn process_second_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark(1, "the second input's", watermark)
    }

    /// Advances both inputs' event time to `watermark`.
    ///
    /// # Errors
    /// As [`process_first_watermark`](Self::process_first_watermark).
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.driver.watermark_all(watermark)
    }

    output_accessors!(P::Out, driver.collected);
    keyed_accessors!(K);

    /// The function, for checks of its own fields.
    pub fn function(&self) -> &P {
        &self.driver.operator.logic.process
    }
}

impl HarnessBuilder {
    /// Opens a [`KeyedCoProcessHarness`] running `process` with these settings (see
    /// [`keyed`](Self::keyed)).
    ///
    /// # Errors
    /// As [`keyed`](Self::keyed).
    pub fn keyed_co_process<K: Key, A: Data, B: Data, P: KeyedCoProcess<K, A, B>>(
        self,
        process: P,
    ) -> Result<KeyedCoProcessHarness<K, A, B, P>> {
        let key = KeySlot::new();
        let logic = TwoInputs {
            key_a: key.key_fn(),
            key_b: key.key_fn(),
            process,
        };
        Ok(KeyedCoProcessHarness {
            driver: KeyedDriver::open(self, key, logic, 2)?,
        })
    }
}
