//! Windows on a keyed stream: assigners (event time: tumbling, sliding, session; processing
//! time: tumbling, sliding; the global window), the [`TimeWindow`] they produce, and
//! [`WindowedStream`], the result of [`KeyedStream::window`] and of the count windows
//! ([`KeyedStream::count_window`]). [`WindowedStream::trigger`] replaces when windows fire,
//! [`WindowedStream::evictor`] drops records before the window function runs.
//!
//! Semantics are Flink's: with the default trigger an event-time window `[start, end)` fires
//! once the watermark reaches its
//! [`max_timestamp`](TimeWindow::max_timestamp) `end - 1`, and every result is emitted with
//! that timestamp. Its state is kept until the watermark reaches `end - 1 + allowed lateness`;
//! a record arriving in between updates the window and fires it again at once (the update is an
//! additional result). A record all of whose windows are past that point is *late*: it is
//! counted under the step's report counter `late_records` and, with the `*_with_late` variants,
//! emitted on a separate stream. Windows are built on keyed state and event-time timers, so
//! they are checkpointed with the rest of the keyed state.

use super::keyed::KeyedStream;
use super::side_output::{main_output, tag_flag};
use super::stream::Stream;
use crate::data::{Data, Key};
use crate::operator::rolling::AggregateFunction;
pub use crate::operator::window::contents::WindowCollector;
use crate::operator::window::contents::{AggContents, ProcessContents, ProcessFn, ReduceContents};
use crate::operator::window::evicting::EvictingContents;
use crate::operator::window::{WindowContents, WindowOperator};
use crate::side_output::late_records;
pub use crate::window::evictor::{
    count_evictor, time_evictor, CountEvictor, Evictor, EvictorContext, Stamped, TimeEvictor,
};
pub use crate::window::global::GlobalWindows;
use crate::window::millis;
pub use crate::window::processing::{SlidingProcessingTime, TumblingProcessingTime};
pub use crate::window::trigger::{Trigger, TriggerContext, TriggerResult};
use crate::window::triggers::default_trigger;
pub use crate::window::triggers::{
    continuous_event_time, continuous_processing_time, count, purging, ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger, CountTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger,
    PurgingTrigger,
};
pub use crate::window::{
    Session, SlidingEventTime, TimeWindow, TumblingEventTime, WindowAssigner, WindowTime, Windowed,
};
use crate::Error;
use std::sync::Arc;
use std::time::Duration;

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Groups each key's records into windows chosen by `assigner`. Event-time assigners need
    /// record timestamps (see `assign_timestamps_and_watermarks`); processing-time assigners
    /// place records by the subtask's wall clock, [`GlobalWindows`] all in one window.
    pub fn window<W: WindowAssigner>(&self, assigner: W) -> WindowedStream<K, T, W> {
        let mut problems = Vec::new();
        if let Err(msg) = assigner.validate() {
            problems.push(msg);
        }
        WindowedStream {
            keyed: self.clone(),
            assigner,
            allowed_lateness: Duration::ZERO,
            trigger: None,
            evictor: None,
            problems,
        }
    }

    /// Tumbling count windows (Flink's `countWindow(n)`): each key's records in groups of
    /// exactly `n`, in arrival order; a group fires (and is purged) when its `n`-th record
    /// arrives. The global window with `purging(count(n))`; a last group of fewer than `n`
    /// records never fires. Results carry the global window and its timestamp `i64::MAX - 1`.
    pub fn count_window(&self, n: u64) -> WindowedStream<K, T, GlobalWindows> {
        let mut w = self.window(GlobalWindows).trigger(purging(count(n)));
        if n == 0 {
            w.problems = vec!["a count window needs at least 1 record per window, got 0".into()];
        }
        w
    }

    /// Sliding count windows (Flink's `countWindow(size, slide)`): every `slide` records of a
    /// key, the window fires over the last `size` of them (fewer at the start). The global window
    /// with `count_evictor(size)` and the trigger `count(slide)`; `1 <= slide <= size`.
    pub fn count_window_sliding(&self, size: u64, slide: u64) -> WindowedStream<K, T, GlobalWindows> {
        let keep = usize::try_from(size).unwrap_or(usize::MAX);
        let mut w = self
            .window(GlobalWindows)
            .evictor(count_evictor(keep))
            .trigger(count(slide));
        if size == 0 || slide == 0 || slide > size {
            w.problems = vec![format!(
                "a sliding count window needs 1 <= slide <= size, got size {size} and slide {slide} \
                 (a larger slide would skip records)"
            )];
        }
        w
    }
}

/// A keyed stream grouped into windows; a step such as [`aggregate`](Self::aggregate) turns it
/// into a stream of window results.
///
/// The results go through a hidden step named `"{name}.results"`. The `*_with_late` variants
/// also return the late records (see the [module docs](self)) as a second stream: the window
/// step's side output `"late"`, through a step named `"{name}.late"`; the plain variants only
/// count them. These steps always run at the window step's parallelism: `.parallelism(n)` on
/// either returned stream sets the parallelism of the window step `name` itself.
pub struct WindowedStream<K, T, W> {
    keyed: KeyedStream<K, T>,
    assigner: W,
    allowed_lateness: Duration,
    /// `None`: the assigner's default.
    trigger: Option<Arc<dyn Trigger<T>>>,
    evictor: Option<Arc<dyn Evictor<T>>>,
    /// Configuration errors, reported with the step's name when the step is added.
    problems: Vec<String>,
}

impl<K, T, W: std::fmt::Debug> std::fmt::Debug for WindowedStream<K, T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("assigner", &self.assigner)
            .field("allowed_lateness", &self.allowed_lateness)
            .field("trigger", &self.trigger)
            .field("evictor", &self.evictor)
            .finish()
    }
}

impl<K: Key, T: Data, W: WindowAssigner> WindowedStream<K, T, W> {
    /// Keeps each event-time window's state until the watermark passes `end - 1 + lateness`;
    /// records arriving after the window fired but within `lateness` fire it again with the
    /// updated result (with the default trigger; a custom trigger decides with
    /// [`TriggerContext::current_watermark`]). Default: zero. Processing-time and global windows
    /// have no late records: a non-zero lateness on them is a configuration error.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Replaces the default trigger (event time for event-time windows, processing time for
    /// processing-time windows, never for the global window): `trigger` decides when windows
    /// fire and whether their contents are purged. Its state is keyed state, checkpointed with
    /// the windows.
    pub fn trigger(mut self, trigger: impl Trigger<T>) -> Self {
        if let Err(msg) = trigger.validate() {
            self.problems.push(msg);
        }
        self.trigger = Some(Arc::new(trigger));
        self
    }

    /// Drops records of a firing window before the window function sees them (Flink's
    /// `evictBefore`; evicted records leave the window's state). With an evictor the step keeps
    /// every record of each window, also for `aggregate` and `reduce`, which then run over the
    /// records left when the window fires.
    pub fn evictor(mut self, evictor: impl Evictor<T>) -> Self {
        if let Err(msg) = evictor.validate() {
            self.problems.push(msg);
        }
        self.evictor = Some(Arc::new(evictor));
        self
    }

    /// One result per window: `agg` over the window's records.
    pub fn aggregate<A: AggregateFunction<T>>(&self, name: &str, agg: A) -> Stream<Windowed<K, A::Out>> {
        match &self.evictor {
            None => self.step(name, AggContents::new(agg)),
            Some(e) => {
                let f: ProcessFn<K, T, Windowed<K, A::Out>> = Arc::new(
                    move |k: &K,
                          window: TimeWindow,
                          values: Vec<T>,
                          out: &mut WindowCollector<'_, Windowed<K, A::Out>>| {
                        let mut acc = agg.create();
                        for v in &values {
                            agg.add(&mut acc, v);
                        }
                        out.emit(Windowed {
                            key: k.clone(),
                            window,
                            value: agg.result(&acc),
                        });
                        Ok(())
                    },
                );
                self.step(name, EvictingContents::new(e.clone(), f))
            }
        }
    }

    /// [`aggregate`](Self::aggregate), plus the stream of late records.
    pub fn aggregate_with_late<A: AggregateFunction<T>>(
        &self,
        name: &str,
        agg: A,
    ) -> (Stream<Windowed<K, A::Out>>, Stream<T>) {
        with_late(self.aggregate(name, agg))
    }

    /// One result per window: the window's records combined with `f`.
    pub fn reduce(&self, name: &str, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Stream<Windowed<K, T>> {
        match &self.evictor {
            None => self.step(name, ReduceContents { f: Arc::new(f) }),
            Some(e) => {
                let g: ProcessFn<K, T, Windowed<K, T>> = Arc::new(
                    move |k: &K, window: TimeWindow, values: Vec<T>, out: &mut WindowCollector<'_, Windowed<K, T>>| {
                        if let Some(value) = values.into_iter().reduce(&f) {
                            out.emit(Windowed {
                                key: k.clone(),
                                window,
                                value,
                            });
                        }
                        Ok(())
                    },
                );
                self.step(name, EvictingContents::new(e.clone(), g))
            }
        }
    }

    /// [`reduce`](Self::reduce), plus the stream of late records.
    pub fn reduce_with_late(
        &self,
        name: &str,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> (Stream<Windowed<K, T>>, Stream<T>) {
        with_late(self.reduce(name, f))
    }

    /// Calls `f` with the key, the window and all its records once the window fires, and
    /// emits what it returns. Records are kept individually (appending is O(1)); they are in
    /// arrival order, except that merged sessions concatenate their parts.
    pub fn process<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>) -> Vec<O> + Send + Sync + 'static,
    ) -> Stream<O> {
        self.process_with_outputs(name, move |k, w, records, out| {
            for r in f(k, w, records) {
                out.emit(r);
            }
            Ok(())
        })
    }

    /// [`process`](Self::process) with a collector: `out.emit(result)` emits a result,
    /// `out.output(&TAG, value)` a record of side output `TAG` (read with
    /// [`Stream::side_output`] on the returned stream), both at the window's `max_timestamp`.
    pub fn process_with_outputs<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>, &mut WindowCollector<'_, O>) -> crate::Result<()> + Send + Sync + 'static,
    ) -> Stream<O> {
        match &self.evictor {
            None => self.step(name, ProcessContents::new(f)),
            Some(e) => self.step(name, EvictingContents::new(e.clone(), Arc::new(f))),
        }
    }

    /// [`process`](Self::process), plus the stream of late records.
    pub fn process_with_late<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>) -> Vec<O> + Send + Sync + 'static,
    ) -> (Stream<O>, Stream<T>) {
        with_late(self.process(name, f))
    }

    /// The configuration errors of this windowed stream, each naming step `name`.
    fn check(&self, name: &str) {
        let mut problems = self.problems.clone();
        let time = self.assigner.time();
        if time != WindowTime::EventTime && !self.allowed_lateness.is_zero() {
            problems.push(format!(
                "allowed lateness {:?} is set, but {} windows have no late records (lateness applies to \
                 event-time windows only)",
                self.allowed_lateness,
                if time == WindowTime::Global {
                    "global/count"
                } else {
                    "processing-time"
                }
            ));
        }
        if let Some(t) = &self.trigger {
            if self.assigner.is_merging() && !t.can_merge() {
                problems.push(format!(
                    "trigger {t:?} cannot merge windows, but {:?} merges them",
                    self.assigner
                ));
            }
        }
        let mut graph = self.keyed.stream.graph.borrow_mut();
        for p in problems {
            graph.errors.push(Error::config(format!("window step \"{name}\": {p}")));
        }
    }

    /// The window step itself and the hidden step `"{name}.results"` keeping its results.
    fn step<C: WindowContents<K, T>>(&self, name: &str, contents: C) -> Stream<C::Out> {
        self.check(name);
        let trigger = self
            .trigger
            .clone()
            .unwrap_or_else(|| default_trigger(self.assigner.time()));
        let op = WindowOperator::new(self.assigner.clone(), millis(self.allowed_lateness), contents, trigger);
        let tagged = tag_flag();
        let step = self.keyed.process_step(name, op, tagged.clone());
        main_output(step, &format!("{name}.results"), tagged)
    }
}

/// The results of a window step and its side output of late records.
fn with_late<R: Data, T: Data>(results: Stream<R>) -> (Stream<R>, Stream<T>) {
    let late = results.side_output(&late_records::<T>());
    (results, late)
}
