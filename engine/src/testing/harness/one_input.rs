//! [`OneInputHarness`]: one stateless step (map, filter, flat-map, their function objects and
//! fallible forms) run by the pipeline's operator, fed by hand.

use super::builder::HarnessBuilder;
use super::output::{output_accessors, Collected};
use super::snapshot::HarnessSnapshot;
use crate::data::{erase, Data, Record, Timestamp};
use crate::functions::{FlatMapFunction, MapFunction};
use crate::metrics::OperatorMetrics;
use crate::operator::fallible::FallibleOp;
use crate::operator::stateless::{FilterOp, FlatMapOp, MapOp};
use crate::operator::user_functions::{flat_map_function_op, map_function_op};
use crate::operator::{Emitter, OperatorContext, OperatorCore};
use crate::side_output::BadRecordPolicy;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;

/// Runs one stateless step from records of `I` to records of `O` through the operator a
/// pipeline runs, fed by hand: `open` runs when the harness is built, `close` when it is
/// closed or dropped. Fallible steps (`try_map`, ...) run under their bad-record policy; their
/// dead letters are the side output [`DeadLetter::<I>::TAG`](crate::side_output::DeadLetter::TAG).
///
/// ```
/// use weir_engine::prelude::*;
/// use weir_engine::testing::harness::OneInputHarness;
///
/// let mut h = OneInputHarness::try_map(BadRecordPolicy::DeadLetter, |s: String| s.parse::<i64>())?;
/// h.process_element("12".to_string(), 1)?;
/// h.process_element("x".to_string(), 2)?;
/// assert_eq!(h.output_values(), vec![12]);
/// let dead = h.side_output(&DeadLetter::<String>::TAG)?;
/// assert_eq!(dead[0].value.record, "x");
/// assert_eq!(h.counters().get("dead_letters"), Some(&1));
/// # Ok::<(), weir_engine::Error>(())
/// ```
pub struct OneInputHarness<I: Data, O: Data> {
    operator: Box<dyn OperatorCore>,
    collected: Collected<O>,
    metrics: OperatorMetrics,
    step: String,
    watermark_in: Timestamp,
    processing_time: u64,
    settings: HarnessBuilder,
    checkpoints: u64,
    closed: bool,
    _i: PhantomData<fn(I)>,
}

impl<I: Data, O: Data> OneInputHarness<I, O> {
    /// A `map` step with the default settings (see [`HarnessBuilder`]).
    ///
    /// # Errors
    /// None for closures; kept for the same shape as the other constructors.
    pub fn map(f: impl Fn(I) -> O + Send + Sync + 'static) -> Result<Self> {
        HarnessBuilder::new().map(f)
    }

    /// A `flat_map` step with the default settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn flat_map<It: IntoIterator<Item = O>>(f: impl Fn(I) -> It + Send + Sync + 'static) -> Result<Self> {
        HarnessBuilder::new().flat_map(f)
    }

    /// A `map_function` step running the function object `f` with the default settings.
    ///
    /// # Errors
    /// The function's `open` failed.
    pub fn map_function<F: MapFunction<I, Out = O>>(f: F) -> Result<Self> {
        HarnessBuilder::new().map_function(f)
    }

    /// A `flat_map_function` step running the function object `f` with the default settings.
    ///
    /// # Errors
    /// The function's `open` failed.
    pub fn flat_map_function<F: FlatMapFunction<I, Out = O>>(f: F) -> Result<Self> {
        HarnessBuilder::new().flat_map_function(f)
    }

    /// A `try_map` step under `policy` with the default settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn try_map<E: Display>(
        policy: BadRecordPolicy,
        f: impl Fn(I) -> std::result::Result<O, E> + Send + Sync + 'static,
    ) -> Result<Self> {
        HarnessBuilder::new().try_map(policy, f)
    }

    /// A `try_flat_map` step under `policy` with the default settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn try_flat_map<It: IntoIterator<Item = O>, E: Display>(
        policy: BadRecordPolicy,
        f: impl Fn(I) -> std::result::Result<It, E> + Send + Sync + 'static,
    ) -> Result<Self> {
        HarnessBuilder::new().try_flat_map(policy, f)
    }

    fn open(settings: &HarnessBuilder, operator: Box<dyn OperatorCore>, tagged: bool) -> Result<Self> {
        Self::open_with(settings, settings.stateless_context()?, operator, tagged)
    }

    fn open_with(
        settings: &HarnessBuilder,
        mut ctx: OperatorContext,
        mut operator: Box<dyn OperatorCore>,
        tagged: bool,
    ) -> Result<Self> {
        operator.open(&mut ctx)?;
        Ok(OneInputHarness {
            operator,
            collected: Collected::new(tagged),
            metrics: ctx.metrics.clone(),
            step: settings.step.clone(),
            watermark_in: crate::data::MIN_WATERMARK,
            processing_time: settings.processing_time,
            settings: settings.clone(),
            checkpoints: 0,
            closed: false,
            _i: PhantomData,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::config(format!("harness for step \"{}\" is closed", self.step)));
        }
        Ok(())
    }

    fn feed(&mut self, record: Record<I>) -> Result<()> {
        self.check_open()?;
        let mut out = Emitter::default();
        let r = self.operator.process_batch(0, erase(vec![record]), &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Processes `value` with event time `timestamp`; what the step emits is added to the
    /// output.
    ///
    /// # Errors
    /// The function's error (for a fallible step under [`BadRecordPolicy::Fail`], a `Data`
    /// error naming the step).
    pub fn process_element(&mut self, value: I, timestamp: Timestamp) -> Result<()> {
        self.feed(Record::with_timestamp(value, timestamp))
    }

    /// Processes `value` without an event time.
    ///
    /// # Errors
    /// As [`process_element`](Self::process_element).
    pub fn process_element_without_timestamp(&mut self, value: I) -> Result<()> {
        self.feed(Record::new(value))
    }

    /// Advances event time to `watermark`; the step forwards it.
    ///
    /// # Errors
    /// `Config` if `watermark` is behind the one fed before.
    pub fn process_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.check_open()?;
        if watermark < self.watermark_in {
            return Err(Error::config(format!(
                "harness for step \"{}\": watermark {watermark} is behind the watermark {} fed before: event time \
                 never goes back",
                self.step, self.watermark_in
            )));
        }
        self.watermark_in = watermark;
        let mut out = Emitter::default();
        let r = self.operator.on_watermark(watermark, &mut out);
        self.collected.collect(out)?;
        r
    }

    /// Sets processing time to `ms` (stateless steps have no timers; kept for the same
    /// shape as [`KeyedHarness`](super::KeyedHarness)).
    ///
    /// # Errors
    /// `Config` if `ms` is before the current processing time.
    pub fn set_processing_time(&mut self, ms: u64) -> Result<()> {
        self.check_open()?;
        if ms < self.processing_time {
            return Err(Error::config(format!(
                "harness for step \"{}\": processing time {ms} is before the current {}: the clock never goes back",
                self.step, self.processing_time
            )));
        }
        self.processing_time = ms;
        let mut out = Emitter::default();
        let r = self.operator.on_processing_time(ms, &mut out);
        self.collected.collect(out)?;
        r
    }

    output_accessors!(O);

    /// The step's counters (`skipped_records`, `dead_letters` of fallible steps), by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.metrics.counters()
    }

    /// Takes a snapshot as a checkpoint barrier would: a function step's `snapshot_state` runs
    /// and its operator lists (with its input's event time) are what the snapshot holds. Restore
    /// it with [`HarnessBuilder::restore_from`] (the snapshots of every subtask of one
    /// parallelism, for a harness at another: lists are split or unioned as a pipeline's).
    ///
    /// # Errors
    /// The function's `snapshot_state` error, or a list that does not encode.
    pub fn snapshot(&mut self) -> Result<HarnessSnapshot> {
        self.check_open()?;
        self.checkpoints += 1;
        HarnessSnapshot::take(
            self.operator.as_mut(),
            self.checkpoints,
            self.processing_time,
            &self.settings,
            "none",
            self.watermark_in,
        )
    }

    /// Ends the input: a final watermark at the end of time, then what the step emits at the
    /// end (a flat-map function's `finish`), then the function is closed.
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

    /// Closes the function (its `close`); the harness accepts nothing after. Dropping the
    /// harness closes it too.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.operator.close();
        }
    }
}

impl<I: Data, O: Data> Drop for OneInputHarness<I, O> {
    fn drop(&mut self) {
        self.close();
    }
}

impl HarnessBuilder {
    /// A [`OneInputHarness`] of a `map` step with these settings.
    ///
    /// # Errors
    /// `Config` for a subtask outside its parallelism or snapshots to restore (a stateless
    /// step has none).
    pub fn map<I: Data, O: Data>(self, f: impl Fn(I) -> O + Send + Sync + 'static) -> Result<OneInputHarness<I, O>> {
        OneInputHarness::open(&self, Box::new(MapOp::<I, O> { f: Arc::new(f) }), false)
    }

    /// A [`OneInputHarness`] of a `filter` step with these settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn filter<T: Data>(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Result<OneInputHarness<T, T>> {
        OneInputHarness::open(&self, Box::new(FilterOp::<T> { f: Arc::new(f) }), false)
    }

    /// A [`OneInputHarness`] of a `flat_map` step with these settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn flat_map<I: Data, O: Data, It: IntoIterator<Item = O>>(
        self,
        f: impl Fn(I) -> It + Send + Sync + 'static,
    ) -> Result<OneInputHarness<I, O>> {
        let f = Arc::new(move |t: I, out: &mut Vec<O>| out.extend(f(t)));
        OneInputHarness::open(&self, Box::new(FlatMapOp::<I, O> { f }), false)
    }

    /// A [`OneInputHarness`] of a `map_function` step with these settings: the function's
    /// `open` sees them in its `RuntimeContext`.
    ///
    /// # Errors
    /// As [`map`](Self::map); the function's `open` error.
    pub fn map_function<I: Data, F: MapFunction<I>>(self, f: F) -> Result<OneInputHarness<I, F::Out>> {
        let ctx = self.function_context()?;
        OneInputHarness::open_with(&self, ctx, Box::new(map_function_op::<I, F>(f)), false)
    }

    /// A [`OneInputHarness`] of a `flat_map_function` step with these settings.
    ///
    /// # Errors
    /// As [`map_function`](Self::map_function).
    pub fn flat_map_function<I: Data, F: FlatMapFunction<I>>(self, f: F) -> Result<OneInputHarness<I, F::Out>> {
        let ctx = self.function_context()?;
        OneInputHarness::open_with(&self, ctx, Box::new(flat_map_function_op::<I, F>(f)), false)
    }

    /// A [`OneInputHarness`] of a `try_map` step under `policy` with these settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn try_map<I: Data, O: Data, E: Display>(
        self,
        policy: BadRecordPolicy,
        f: impl Fn(I) -> std::result::Result<O, E> + Send + Sync + 'static,
    ) -> Result<OneInputHarness<I, O>> {
        let f = Arc::new(move |t: I, out: &mut Vec<O>| -> std::result::Result<(), String> {
            out.push(f(t).map_err(|e| e.to_string())?);
            Ok(())
        });
        OneInputHarness::open(&self, Box::new(FallibleOp::<_, _>::new(f, policy, true)), true)
    }

    /// A [`OneInputHarness`] of a `try_filter` step under `policy` with these settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn try_filter<T: Data, E: Display>(
        self,
        policy: BadRecordPolicy,
        f: impl Fn(&T) -> std::result::Result<bool, E> + Send + Sync + 'static,
    ) -> Result<OneInputHarness<T, T>> {
        let f = Arc::new(move |t: T, out: &mut Vec<T>| -> std::result::Result<(), String> {
            if f(&t).map_err(|e| e.to_string())? {
                out.push(t);
            }
            Ok(())
        });
        OneInputHarness::open(&self, Box::new(FallibleOp::<_, _>::new(f, policy, true)), true)
    }

    /// A [`OneInputHarness`] of a `try_flat_map` step under `policy` with these settings.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn try_flat_map<I: Data, O: Data, It: IntoIterator<Item = O>, E: Display>(
        self,
        policy: BadRecordPolicy,
        f: impl Fn(I) -> std::result::Result<It, E> + Send + Sync + 'static,
    ) -> Result<OneInputHarness<I, O>> {
        let f = Arc::new(move |t: I, out: &mut Vec<O>| -> std::result::Result<(), String> {
            out.extend(f(t).map_err(|e| e.to_string())?);
            Ok(())
        });
        OneInputHarness::open(&self, Box::new(FallibleOp::<_, _>::new(f, policy, true)), true)
    }
}
