//! [`BroadcastHarness`]: one broadcast process function over a non-keyed stream
//! (`stream.connect_broadcast(&rules).process(..)`) run by the pipeline's operator, both
//! inputs fed by hand.

use super::builder::HarnessBuilder;
use super::output::{output_accessors, Collected};
use super::snapshot::HarnessSnapshot;
use crate::data::{erase, Data, Record, Timestamp, MIN_WATERMARK};
use crate::operator::broadcast::{BroadcastOperator, BroadcastProcess, BroadcastState};
use crate::operator::{Emitter, OperatorCore};
use crate::{Error, Result};
use std::marker::PhantomData;

/// Input 0 of the step: the main stream.
const MAIN: usize = 0;
/// Input 1 of the step: the broadcast stream.
const BROADCAST: usize = 1;

/// Runs one [`BroadcastProcess`] as subtask of a `stream.connect_broadcast(&rules)` step,
/// through the operator a pipeline runs, fed by hand: main records, broadcast records and
/// watermarks on either input (the step forwards their minimum). Flink's
/// `BroadcastOperatorTestHarness`.
///
/// Its only state is the broadcast state: [`snapshot`](Self::snapshot) at subtask 0 holds it,
/// and a restore at any subtask and parallelism reads that copy.
///
/// ```
/// use weir_engine::prelude::*;
/// use weir_engine::testing::harness::BroadcastHarness;
///
/// /// Drops words on the broadcast block list.
/// #[derive(Clone)]
/// struct Block;
/// impl BroadcastProcess<String, String> for Block {
///     type Out = String;
///     type StateKey = String;
///     type StateValue = ();
///     fn process(&mut self, w: String, blocked: &BroadcastState<String, ()>,
///                ctx: &mut BroadcastContext<'_, String>) -> Result<()> {
///         if !blocked.contains_key(&w) {
///             ctx.emit(w);
///         }
///         Ok(())
///     }
///     fn process_broadcast(&mut self, w: String, blocked: &mut BroadcastState<String, ()>,
///                          _ctx: &mut BroadcastContext<'_, String>) -> Result<()> {
///         blocked.insert(w, ());
///         Ok(())
///     }
/// }
///
/// let mut h = BroadcastHarness::new(Block)?;
/// h.process_broadcast_element("spam".to_string(), 1)?;
/// h.process_element("spam".to_string(), 2)?;
/// h.process_element("ham".to_string(), 3)?;
/// assert_eq!(h.output_values(), vec!["ham".to_string()]);
/// # Ok::<(), weir_engine::Error>(())
/// ```
pub struct BroadcastHarness<T: Data, B: Data, P: BroadcastProcess<T, B>> {
    operator: BroadcastOperator<T, B, P>,
    collected: Collected<P::Out>,
    settings: HarnessBuilder,
    /// The latest watermark fed per input; the step forwards their minimum.
    watermarks_in: [Timestamp; 2],
    /// The watermark the step forwarded last.
    watermark: Timestamp,
    checkpoints: u64,
    closed: bool,
}

impl<T: Data, B: Data, P: BroadcastProcess<T, B>> BroadcastHarness<T, B, P> {
    /// Opens `process` as subtask 0 of 1 (see [`HarnessBuilder`] for other settings).
    ///
    /// # Errors
    /// None for a fresh step; kept for the same shape as the other constructors.
    pub fn new(process: P) -> Result<Self> {
        HarnessBuilder::new().broadcast(process)
    }

    /// Opens `process` on the broadcast state of `snapshot` (subtask 0's), at its subtask and
    /// parallelism.
    ///
    /// # Errors
    /// `Config` if `snapshot` is not subtask 0's or its broadcast state cannot be read by this
    /// job (naming the step and the state).
    pub fn restore(process: P, snapshot: &HarnessSnapshot) -> Result<Self> {
        HarnessBuilder::new()
            .subtask(snapshot.subtask, snapshot.parallelism)
            .max_parallelism(snapshot.max_parallelism)
            .restore_from(snapshot)
            .broadcast(process)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::config(format!(
                "harness for step \"{}\" is closed",
                self.settings.step
            )));
        }
        Ok(())
    }

    fn feed<V: Data>(&mut self, input: usize, record: Record<V>) -> Result<()> {
        self.check_open()?;
        let mut out = Emitter::default();
        let r = self.operator.process_batch(input, erase(vec![record]), &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Processes `value` on the main input with event time `timestamp`.
    ///
    /// # Errors
    /// The function's error.
    pub fn process_element(&mut self, value: T, timestamp: Timestamp) -> Result<()> {
        self.feed(MAIN, Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` on the main input without an event time.
    ///
    /// # Errors
    /// The function's error.
    pub fn process_element_without_timestamp(&mut self, value: T) -> Result<()> {
        self.feed(MAIN, Record::new(value))
    }

    /// Processes `value` on the broadcast input with event time `timestamp`.
    ///
    /// # Errors
    /// The function's error.
    pub fn process_broadcast_element(&mut self, value: B, timestamp: Timestamp) -> Result<()> {
        self.feed(BROADCAST, Record::with_timestamp(value, timestamp))
    }

    fn watermark_on(&mut self, inputs: &[usize], whose: &str, watermark: Timestamp) -> Result<()> {
        self.check_open()?;
        for &i in inputs {
            if watermark < self.watermarks_in[i] {
                return Err(Error::config(format!(
                    "harness for step \"{}\": watermark {watermark} is behind {whose} watermark {}: event time never \
                     goes back",
                    self.settings.step, self.watermarks_in[i]
                )));
            }
        }
        for &i in inputs {
            self.watermarks_in[i] = watermark;
        }
        let combined = self.watermarks_in[MAIN].min(self.watermarks_in[BROADCAST]);
        if combined <= self.watermark {
            return Ok(());
        }
        self.watermark = combined;
        let mut out = Emitter::default();
        let r = self.operator.on_watermark(combined, &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Advances the main input's event time to `watermark`; the step forwards the minimum of
    /// both inputs' watermarks when it advances.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the main input's.
    pub fn process_main_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.watermark_on(&[MAIN], "the main input's", watermark)
    }

    /// Advances the broadcast input's event time to `watermark`.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the broadcast input's.
    pub fn process_broadcast_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.watermark_on(&[BROADCAST], "the broadcast input's", watermark)
    }

    /// Advances both inputs' event time to `watermark`.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind either input's.
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.watermark_on(&[MAIN, BROADCAST], "an input's", watermark)
    }

    /// The step's event time: the minimum of its inputs' watermarks.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The subtask's broadcast state, as the function sees it now.
    pub fn broadcast_state(&self) -> &BroadcastState<P::StateKey, P::StateValue> {
        &self.operator.state
    }

    output_accessors!(P::Out);

    /// What a checkpoint taken now would hold of this subtask: at subtask 0, the broadcast
    /// state; elsewhere nothing (every subtask restores subtask 0's copy).
    ///
    /// # Errors
    /// The broadcast state could not be encoded.
    pub fn snapshot(&mut self) -> Result<HarnessSnapshot> {
        self.check_open()?;
        self.checkpoints += 1;
        HarnessSnapshot::take(
            &mut self.operator,
            self.checkpoints,
            0,
            &self.settings,
            "none",
            self.watermark,
        )
    }

    /// Ends the inputs (a final watermark at the end of time) and closes the function.
    ///
    /// # Errors
    /// The function's error.
    pub fn finish(&mut self) -> Result<()> {
        self.process_watermark(crate::data::MAX_WATERMARK)?;
        let mut out = Emitter::default();
        let r = self.operator.finish(&mut out);
        self.collected.collect(out)?;
        self.close();
        r
    }

    /// Closes the step; the harness accepts nothing after. Dropping the harness closes it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.operator.close();
        }
    }

    /// The function, for checks of its own fields.
    pub fn function(&self) -> &P {
        &self.operator.process
    }
}

impl<T: Data, B: Data, P: BroadcastProcess<T, B>> Drop for BroadcastHarness<T, B, P> {
    fn drop(&mut self) {
        self.close();
    }
}

impl HarnessBuilder {
    /// Opens a [`BroadcastHarness`] running `process` with these settings; with snapshots
    /// given, the broadcast state is restored from subtask 0's.
    ///
    /// # Errors
    /// `Config` for a subtask outside its parallelism, snapshots without subtask 0's, or a
    /// broadcast state this job cannot read (naming the step and the state).
    pub fn broadcast<T: Data, B: Data, P: BroadcastProcess<T, B>>(
        self,
        process: P,
    ) -> Result<BroadcastHarness<T, B, P>> {
        let mut ctx = self.replicated_context()?;
        let mut operator = BroadcastOperator {
            process,
            state: BroadcastState::default(),
            subtask: 0,
            _tb: PhantomData,
        };
        operator.open(&mut ctx)?;
        Ok(BroadcastHarness {
            operator,
            collected: Collected::new(false),
            settings: self,
            watermarks_in: [MIN_WATERMARK; 2],
            watermark: MIN_WATERMARK,
            checkpoints: 0,
            closed: false,
        })
    }
}
