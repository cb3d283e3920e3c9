//! Joins, as in Flink's DataStream API:
//!
//! * the **interval join** of two keyed streams, [`KeyedStream::interval_join`]: each left
//!   record at `l` joins every right record of its key at `l + lower ..= l + upper`;
//! * the **window join**, [`Stream::join`]: every pair of records with equal keys in the same
//!   event-time window;
//! * the **co-group**, [`Stream::co_group`]: both sides' records of each key and window, as two
//!   lists.
//!
//! All three run on event time: records need timestamps and watermarks
//! (`assign_timestamps_and_watermarks`). Their state is keyed state, checkpointed, restored
//! and rescaled like any other, and cleaned up by event-time timers once the watermark shows
//! a record can no longer join (see [`interval`](crate::operator::join::interval) and
//! [`window`](crate::operator::join::window)).

use super::keyed::KeyedStream;
use super::stream::Stream;
use super::window::{TimeWindow, WindowAssigner};
use crate::data::{Data, Key};
use crate::operator::join::interval::{IntervalJoinContext, IntervalJoinProcess};
use crate::operator::join::window::{split, Tagged};
use crate::Error;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

impl<K: Key, A: Data> KeyedStream<K, A> {
    /// Starts an interval join with `other` (same key type): this stream is the left side.
    /// Continue with [`between`](IntervalJoin::between).
    pub fn interval_join<B: Data>(&self, other: &KeyedStream<K, B>) -> IntervalJoin<K, A, B> {
        IntervalJoin {
            left: self.clone(),
            right: other.clone(),
        }
    }
}

/// Two keyed streams to be joined by an interval of event time.
#[derive(Debug)]
pub struct IntervalJoin<K, A, B> {
    left: KeyedStream<K, A>,
    right: KeyedStream<K, B>,
}

impl<K: Key, A: Data, B: Data> IntervalJoin<K, A, B> {
    /// Joins left `l` with right `r` when `l + lower <= r <= l + upper`; the bounds are
    /// offsets in milliseconds and may be negative. Both bounds are inclusive unless
    /// [`lower_exclusive`](IntervalJoined::lower_exclusive) or
    /// [`upper_exclusive`](IntervalJoined::upper_exclusive) is called.
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<K, A, B> {
        IntervalJoined {
            join: self,
            lower: lower_ms,
            upper: upper_ms,
            lower_exclusive: false,
            upper_exclusive: false,
        }
    }
}

/// An interval join with its bounds; [`process`](Self::process) adds the join step.
#[derive(Debug)]
pub struct IntervalJoined<K, A, B> {
    join: IntervalJoin<K, A, B>,
    lower: i64,
    upper: i64,
    lower_exclusive: bool,
    upper_exclusive: bool,
}

impl<K: Key, A: Data, B: Data> IntervalJoined<K, A, B> {
    /// Excludes the lower bound: `l + lower < r`.
    pub fn lower_exclusive(mut self) -> Self {
        self.lower_exclusive = true;
        self
    }

    /// Excludes the upper bound: `r < l + upper`.
    pub fn upper_exclusive(mut self) -> Self {
        self.upper_exclusive = true;
        self
    }

    /// Adds the join step `name`: `f` is called once with every matching pair (left, right)
    /// and emits through its context (at the larger of the two timestamps). Records at or
    /// below the watermark when they arrive are late: dropped and counted under the step's
    /// report counter `late_records`.
    pub fn process<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&A, &B, &mut IntervalJoinContext<'_, '_, K, O>) + Send + Sync + 'static,
    ) -> Stream<O> {
        let lower = if self.lower_exclusive {
            self.lower.saturating_add(1)
        } else {
            self.lower
        };
        let upper = if self.upper_exclusive {
            self.upper.saturating_sub(1)
        } else {
            self.upper
        };
        if lower > upper {
            self.join
                .left
                .stream
                .graph
                .borrow_mut()
                .errors
                .push(Error::config(format!(
                "interval join \"{name}\": the lower bound {} ms{} is above the upper bound {} ms{}: no pair can join",
                self.lower,
                if self.lower_exclusive { " (exclusive)" } else { "" },
                self.upper,
                if self.upper_exclusive { " (exclusive)" } else { "" },
            )));
        }
        let process = IntervalJoinProcess::new(
            lower,
            upper,
            Arc::new(move |a: &A, b: &B, ctx: &mut IntervalJoinContext<'_, '_, K, O>| {
                f(a, b, ctx);
                Ok(())
            }),
        );
        self.join.left.connect(&self.join.right).process(name, process)
    }
}

/// Marks a [`WindowJoin`] builder that pairs records ([`Stream::join`]).
#[derive(Debug, Clone, Copy)]
pub struct Pairs;

/// Marks a [`WindowJoin`] builder that groups records ([`Stream::co_group`]).
#[derive(Debug, Clone, Copy)]
pub struct Groups;

impl<A: Data> Stream<A> {
    /// Starts a window join with `other`: every pair of records with equal keys (given by
    /// [`where_`](WindowJoin::where_) and [`equal_to`](WindowJoinWhere::equal_to)) in the same
    /// window. Records need timestamps.
    pub fn join<B: Data>(&self, other: &Stream<B>) -> WindowJoin<A, B, Pairs> {
        WindowJoin {
            first: self.clone(),
            second: other.clone(),
            _m: PhantomData,
        }
    }

    /// Starts a co-group with `other`: both sides' records of each key and window, as two
    /// lists (one of them possibly empty). Records need timestamps.
    pub fn co_group<B: Data>(&self, other: &Stream<B>) -> WindowJoin<A, B, Groups> {
        WindowJoin {
            first: self.clone(),
            second: other.clone(),
            _m: PhantomData,
        }
    }
}

/// Two streams to be joined or co-grouped by window; continue with [`where_`](Self::where_).
#[derive(Debug)]
pub struct WindowJoin<A, B, M> {
    first: Stream<A>,
    second: Stream<B>,
    _m: PhantomData<M>,
}

impl<A: Data, B: Data, M> WindowJoin<A, B, M> {
    /// The key of a record of the first stream.
    pub fn where_<K: Key>(self, key: impl Fn(&A) -> K + Send + Sync + 'static) -> WindowJoinWhere<K, A, B, M> {
        WindowJoinWhere {
            join: self,
            first_key: Arc::new(key),
        }
    }
}

/// A window join with the first stream's key; continue with [`equal_to`](Self::equal_to).
pub struct WindowJoinWhere<K, A, B, M> {
    join: WindowJoin<A, B, M>,
    first_key: Arc<dyn Fn(&A) -> K + Send + Sync>,
}

impl<K: Key, A: Data, B: Data, M> WindowJoinWhere<K, A, B, M> {
    /// The key of a record of the second stream; records of both streams with equal keys meet.
    pub fn equal_to(self, key: impl Fn(&B) -> K + Send + Sync + 'static) -> WindowJoinKeys<K, A, B, M> {
        WindowJoinKeys {
            join: self.join,
            first_key: self.first_key,
            second_key: Arc::new(key),
        }
    }
}

/// A window join with both keys; continue with [`window`](Self::window).
pub struct WindowJoinKeys<K, A, B, M> {
    join: WindowJoin<A, B, M>,
    first_key: Arc<dyn Fn(&A) -> K + Send + Sync>,
    second_key: Arc<dyn Fn(&B) -> K + Send + Sync>,
}

impl<K: Key, A: Data, B: Data, M> WindowJoinKeys<K, A, B, M> {
    /// The event-time windows the records meet in (tumbling or sliding; sessions merge per key
    /// over both streams' records).
    pub fn window<W: WindowAssigner>(self, assigner: W) -> WindowedJoin<K, A, B, W, M> {
        WindowedJoin {
            keys: self,
            assigner,
            allowed_lateness: Duration::ZERO,
        }
    }
}

/// A window join or co-group with its windows; `apply` adds the step.
pub struct WindowedJoin<K, A, B, W, M> {
    keys: WindowJoinKeys<K, A, B, M>,
    assigner: W,
    allowed_lateness: Duration,
}

impl<K: Key, A: Data, B: Data, W: WindowAssigner, M> WindowedJoin<K, A, B, W, M> {
    /// Keeps each window's records until the watermark passes `end - 1 + lateness`: a record
    /// arriving after the window fired but within `lateness` fires it again with all its
    /// records (the earlier results are emitted again, as in Flink). Default: zero.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// The window step `name` over both streams tagged into one: steps `"{name}.first"` and
    /// `"{name}.second"` tag the inputs, `"{name}.key"` keys them, `name` holds the windows and
    /// `"{name}.results"` carries what `f` returns for each fired window.
    fn grouped<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<A>, Vec<B>) -> Vec<O> + Send + Sync + 'static,
    ) -> Stream<O> {
        let keys = &self.keys;
        let first = keys.join.first.map(&format!("{name}.first"), Tagged::<A, B>::First);
        let second = keys.join.second.map(&format!("{name}.second"), Tagged::<A, B>::Second);
        let (ka, kb) = (keys.first_key.clone(), keys.second_key.clone());
        first
            .union(&second)
            .key_by(&format!("{name}.key"), move |t: &Tagged<A, B>| match t {
                Tagged::First(a) => ka(a),
                Tagged::Second(b) => kb(b),
            })
            .window(self.assigner.clone())
            .allowed_lateness(self.allowed_lateness)
            .process(name, move |k, w, records| {
                let (a, b) = split(records);
                f(k, w, a, b)
            })
    }
}

impl<K: Key, A: Data, B: Data, W: WindowAssigner> WindowedJoin<K, A, B, W, Pairs> {
    /// Adds the join step `name`: `f` is called with every pair (first, second) of records with
    /// equal keys in the same window, and its results are emitted at the window's
    /// [`max_timestamp`](TimeWindow::max_timestamp).
    pub fn apply<O: Data>(&self, name: &str, f: impl Fn(&A, &B) -> O + Send + Sync + 'static) -> Stream<O> {
        self.process(name, move |_, _, a, b| Some(f(a, b)))
    }

    /// As [`apply`](Self::apply), with the key and the window, and `None` to emit nothing for a
    /// pair.
    pub fn process<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, &A, &B) -> Option<O> + Send + Sync + 'static,
    ) -> Stream<O> {
        self.grouped(name, move |k, w, firsts, seconds| {
            let mut out = Vec::new();
            for a in &firsts {
                for b in &seconds {
                    out.extend(f(k, w, a, b));
                }
            }
            out
        })
    }
}

impl<K: Key, A: Data, B: Data, W: WindowAssigner> WindowedJoin<K, A, B, W, Groups> {
    /// Adds the co-group step `name`: `f` is called once per key and window that holds records
    /// of either stream, with both streams' records (each in arrival order), and what it
    /// returns is emitted at the window's [`max_timestamp`](TimeWindow::max_timestamp).
    pub fn apply<O: Data>(
        &self,
        name: &str,
        f: impl Fn(&K, TimeWindow, Vec<A>, Vec<B>) -> Vec<O> + Send + Sync + 'static,
    ) -> Stream<O> {
        self.grouped(name, f)
    }
}
