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
use super::stream::Stream;
use crate::data::{Data, Key};
use crate::graph::ParallelismRule;
use crate::operator::rolling::AggregateFunction;
use crate::operator::window::contents::{AggContents, ProcessContents, ReduceContents};
use crate::operator::window::{WindowContents, WindowOperator, WindowOutput};
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
/// The `*_with_late` variants also return the late records (see the [module docs](self)) as a
/// second stream, through steps named `"{name}.results"` and `"{name}.late"`; the plain
/// variants only count them (the results go through a step named `"{name}.results"`). These
/// steps always run at the window step's parallelism: `.parallelism(n)` on either returned
/// stream sets the parallelism of the window step `name` itself.
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
        results(&self.step(name, AggContents::new(agg), false), name)
    }

    /// [`aggregate`](Self::aggregate), plus the stream of late records.
    pub fn aggregate_with_late<A: AggregateFunction<T>>(
        &self,
        name: &str,
        agg: A,
    ) -> (Stream<Windowed<K, A::Out>>, Stream<T>) {
        split(&self.step(name, AggContents::new(agg), true), name)
    }

    /// One result per window: the window's records combined with `f`.
    pub fn reduce(&self, name: &str, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Stream<Windowed<K, T>> {
        results(&self.step(name, ReduceContents { f: Arc::new(f) }, false), name)
    }

    /// [`reduce`](Self::reduce), plus the stream of late records.
    pub fn reduce_with_late(
        &self,
        name: &str,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> (Stream<Windowed<K, T>>, Stream<T>) {
        split(&self.step(name, ReduceContents { f: Arc::new(f) }, true), name)
    }

    /// Calls `f` with the key, the window and all its records once the window fires, and
    /// emits what it returns. Records are kept individually (appending is O(1)); they are in
    /// arrival order, except that merged sessions concatenate their parts.
    pub fn process<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>) -> Vec<O> + Send + Sync + 'static,
    ) -> Stream<O> {
        results(&self.step(name, ProcessContents::new(f), false), name)
    }

    /// [`process`](Self::process), plus the stream of late records.
    pub fn process_with_late<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<T>) -> Vec<O> + Send + Sync + 'static,
    ) -> (Stream<O>, Stream<T>) {
        split(&self.step(name, ProcessContents::new(f), true), name)
    }

    /// The window step itself, emitting results and (if `emit_late`) late records.
    fn step<C: WindowContents<K, T>>(
        &self,
        name: &str,
        contents: C,
        emit_late: bool,
    ) -> Stream<WindowOutput<C::Out, T>> {
        let op = WindowOperator::new(
            self.assigner.clone(),
            millis(self.allowed_lateness),
            contents,
            emit_late,
        );
        self.keyed.process(name, op)
    }
}

/// Ties `part`, a hidden step fed by window step `window`, to the window step's parallelism:
/// it always runs at it (so their edge stays forward), and `.parallelism(n)` on `part` sets it.
fn follow<O>(part: Stream<O>, window: &Stream<impl Sized>) -> Stream<O> {
    if let ([p], [w]) = (part.nodes.as_slice(), window.nodes.as_slice()) {
        part.graph.borrow_mut().nodes[*p].rule = ParallelismRule::SameAs(*w);
    }
    part
}

fn results<R: Data, T: Data>(out: &Stream<WindowOutput<R, T>>, name: &str) -> Stream<R> {
    let results = out.flat_map(&format!("{name}.results"), |o| match o {
        WindowOutput::Result(r) => Some(r),
        WindowOutput::Late(_) => None,
    });
    follow(results, out)
}

fn split<R: Data, T: Data>(out: &Stream<WindowOutput<R, T>>, name: &str) -> (Stream<R>, Stream<T>) {
    let late = out.flat_map(&format!("{name}.late"), |o| match o {
        WindowOutput::Late(t) => Some(t),
        WindowOutput::Result(_) => None,
    });
    (results(out, name), follow(late, out))
}
