//! Event-time windows on a keyed stream: assigners (tumbling, sliding, session), the
//! [`TimeWindow`] they produce, and [`WindowedStream`], the result of
//! [`KeyedStream::window`].
//!
//! Semantics are Flink's: a window `[start, end)` fires once the watermark reaches its
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
use crate::operator::window::contents::{AggContents, ProcessContents, ReduceContents};
use crate::operator::window::{WindowContents, WindowOperator};
use crate::side_output::late_records;
use crate::window::millis;
pub use crate::window::{Session, SlidingEventTime, TimeWindow, TumblingEventTime, WindowAssigner, Windowed};
use crate::Error;
use std::sync::Arc;
use std::time::Duration;

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Groups each key's records into event-time windows chosen by `assigner`. Records need
    /// timestamps (see `assign_timestamps_and_watermarks`).
    pub fn window<W: WindowAssigner>(&self, assigner: W) -> WindowedStream<K, T, W> {
        if let Err(msg) = assigner.validate() {
            self.stream.graph.borrow_mut().errors.push(Error::config(msg));
        }
        WindowedStream {
            keyed: self.clone(),
            assigner,
            allowed_lateness: Duration::ZERO,
        }
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
}

impl<K, T, W: std::fmt::Debug> std::fmt::Debug for WindowedStream<K, T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("assigner", &self.assigner)
            .field("allowed_lateness", &self.allowed_lateness)
            .finish()
    }
}

impl<K: Key, T: Data, W: WindowAssigner> WindowedStream<K, T, W> {
    /// Keeps each window's state until the watermark passes `end - 1 + lateness`; records
    /// arriving after the window fired but within `lateness` fire it again with the updated
    /// result. Default: zero.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// One result per window: `agg` over the window's records.
    pub fn aggregate<A: AggregateFunction<T>>(&self, name: &str, agg: A) -> Stream<Windowed<K, A::Out>> {
        self.step(name, AggContents::new(agg))
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
        self.step(name, ReduceContents { f: Arc::new(f) })
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
        self.step(name, ProcessContents::new(f))
    }

    /// [`process`](Self::process), plus the stream of late records.
    pub fn process_with_late<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>) -> Vec<O> + Send + Sync + 'static,
    ) -> (Stream<O>, Stream<T>) {
        with_late(self.process(name, f))
    }

    /// The window step itself and the hidden step `"{name}.results"` keeping its results.
    fn step<C: WindowContents<K, T>>(&self, name: &str, contents: C) -> Stream<C::Out> {
        let op = WindowOperator::new(self.assigner.clone(), millis(self.allowed_lateness), contents);
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
