//! The interval join: each record of one side joins every record of the other side with the
//! same key whose timestamp lies within bounds of its own, as Flink's `IntervalJoin`.
//!
//! # State of a key
//! * `interval-join.left` and `interval-join.right`: sorted map state from a timestamp to the
//!   records of that side with that timestamp, in arrival order.
//!
//! A pair is emitted once, when its later record arrives: that record is buffered and matched
//! against the other side's buffer with a range scan.
//!
//! # Clean-up and lateness
//! A left record at `l` can only match right records at `l + lower ..= l + upper`; once the
//! watermark reaches `l + max(upper, 0)` no such record can arrive (a record at or below the
//! watermark is late), so an event-time timer at that time removes it (the right side likewise
//! at `r + max(-lower, 0)`). A timer at `t` removes every buffered record whose clean-up time is
//! at or before `t` with one range removal per side. Late records (timestamp at or below the
//! watermark when they arrive) are dropped and counted under the step's counter
//! `late_records`. Buffer and timers are keyed state, so after a crash both are exactly as at
//! the restored checkpoint and replay rebuilds the rest: every pair is emitted once to an
//! exactly-once sink.

use crate::data::{Data, Key, Timestamp};
use crate::keyed::{KeyedContext, Timer};
use crate::operator::keyed_process::KeyedCoProcess;
use crate::{Error, Result};
use std::marker::PhantomData;
use std::sync::Arc;

const LEFT: &str = "interval-join.left";
const RIGHT: &str = "interval-join.right";

/// Counter of records buffered (one per record of either side that was not late).
pub const BUFFERED_COUNTER: &str = "interval_join_buffered";
/// Counter of buffered records removed by clean-up timers.
pub const EXPIRED_COUNTER: &str = "interval_join_expired";
/// Counter of late records dropped.
pub const LATE_COUNTER: &str = "late_records";

/// What the join function of an interval join sees besides the two records.
pub struct IntervalJoinContext<'c, 'a, K, O> {
    ctx: &'c mut KeyedContext<'a, K, O>,
    left: Timestamp,
    right: Timestamp,
}

impl<K, O: Data> IntervalJoinContext<'_, '_, K, O> {
    /// The key both records share.
    pub fn key(&self) -> &K {
        self.ctx.key()
    }

    /// The timestamp of the left (first) record.
    pub fn left_timestamp(&self) -> Timestamp {
        self.left
    }

    /// The timestamp of the right (second) record.
    pub fn right_timestamp(&self) -> Timestamp {
        self.right
    }

    /// The timestamp of the pair: the larger of the two (what [`emit`](Self::emit) uses).
    pub fn timestamp(&self) -> Timestamp {
        self.left.max(self.right)
    }

    /// Emits `value` at the pair's [`timestamp`](Self::timestamp).
    pub fn emit(&mut self, value: O) {
        let ts = self.timestamp();
        self.ctx.emit_at(value, ts);
    }
}

/// The join function: called once per matching pair (left, right).
pub type JoinFn<K, A, B, O> =
    Arc<dyn for<'c, 'a> Fn(&A, &B, &mut IntervalJoinContext<'c, 'a, K, O>) -> Result<()> + Send + Sync>;

/// The keyed co-process behind `interval_join(..).between(..).process(..)`. Bounds are
/// inclusive offsets in ms: left `l` joins right `r` when `l + lower <= r <= l + upper`.
pub struct IntervalJoinProcess<K, A, B, O> {
    lower: i64,
    upper: i64,
    f: JoinFn<K, A, B, O>,
    _t: PhantomData<fn(K, A, B)>,
}

impl<K, A, B, O> Clone for IntervalJoinProcess<K, A, B, O> {
    fn clone(&self) -> Self {
        IntervalJoinProcess {
            lower: self.lower,
            upper: self.upper,
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, A, B, O> IntervalJoinProcess<K, A, B, O> {
    /// The join of left `l` with right `r` when `lower <= r - l <= upper` (inclusive, in ms).
    pub(crate) fn new(lower: i64, upper: i64, f: JoinFn<K, A, B, O>) -> Self {
        IntervalJoinProcess {
            lower,
            upper,
            f,
            _t: PhantomData,
        }
    }

    /// When a left record at `l` can no longer match: `l + max(upper, 0)`.
    fn left_cleanup(&self, l: Timestamp) -> Timestamp {
        l.saturating_add(self.upper.max(0))
    }

    /// When a right record at `r` can no longer match: `r + max(-lower, 0)`.
    fn right_cleanup(&self, r: Timestamp) -> Timestamp {
        r.saturating_add(self.lower.saturating_neg().max(0))
    }
}

/// The timestamp of a record, required by an interval join.
fn timestamp_of<K, O: Data>(ctx: &KeyedContext<'_, K, O>) -> Result<Timestamp> {
    ctx.timestamp().ok_or_else(|| {
        Error::data(
            "an interval join received a record without a timestamp; assign timestamps upstream \
             (assign_timestamps_and_watermarks)",
        )
    })
}

/// Adds `value` at `ts` to the buffer `name` of the current key.
fn buffer<K, T: Data, O: Data>(ctx: &mut KeyedContext<'_, K, O>, name: &str, ts: Timestamp, value: &T) -> Result<()> {
    let mut state = ctx.sorted_map_state::<i64, Vec<T>>(name);
    let mut at = state.get(&ts)?.unwrap_or_default();
    at.push(value.clone());
    state.put(&ts, &at)?;
    ctx.count(BUFFERED_COUNTER, 1);
    Ok(())
}

/// Removes from buffer `name` every timestamp at or below `up_to`; counts the records removed.
fn expire<K, T: Data, O: Data>(ctx: &mut KeyedContext<'_, K, O>, name: &str, up_to: Timestamp) -> Result<()> {
    let mut state = ctx.sorted_map_state::<i64, Vec<T>>(name);
    let doomed: usize = state.range(..=up_to)?.iter().map(|(_, v)| v.len()).sum();
    state.remove_range(..=up_to)?;
    if doomed > 0 {
        ctx.count(EXPIRED_COUNTER, doomed as u64);
    }
    Ok(())
}

impl<K: Key, A: Data, B: Data, O: Data> KeyedCoProcess<K, A, B> for IntervalJoinProcess<K, A, B, O> {
    type Out = O;

    fn process_first(&mut self, value: A, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        let l = timestamp_of(ctx)?;
        if l <= ctx.current_watermark() {
            ctx.count(LATE_COUNTER, 1);
            return Ok(());
        }
        buffer(ctx, LEFT, l, &value)?;
        ctx.register_event_time_timer(self.left_cleanup(l))?;
        let (lo, hi) = (l.saturating_add(self.lower), l.saturating_add(self.upper));
        let matches = ctx.sorted_map_state::<i64, Vec<B>>(RIGHT).range(lo..=hi)?;
        for (r, rights) in matches {
            for right in &rights {
                let mut jc = IntervalJoinContext { ctx, left: l, right: r };
                (self.f)(&value, right, &mut jc)?;
            }
        }
        Ok(())
    }

    fn process_second(&mut self, value: B, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        let r = timestamp_of(ctx)?;
        if r <= ctx.current_watermark() {
            ctx.count(LATE_COUNTER, 1);
            return Ok(());
        }
        buffer(ctx, RIGHT, r, &value)?;
        ctx.register_event_time_timer(self.right_cleanup(r))?;
        let (lo, hi) = (r.saturating_sub(self.upper), r.saturating_sub(self.lower));
        let matches = ctx.sorted_map_state::<i64, Vec<A>>(LEFT).range(lo..=hi)?;
        for (l, lefts) in matches {
            for left in &lefts {
                let mut jc = IntervalJoinContext { ctx, left: l, right: r };
                (self.f)(left, &value, &mut jc)?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        // Left and right timers may share a time: each firing expires both sides up to it.
        expire::<K, A, O>(ctx, LEFT, timer.time.saturating_sub(self.upper.max(0)))?;
        expire::<K, B, O>(
            ctx,
            RIGHT,
            timer.time.saturating_sub(self.lower.saturating_neg().max(0)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(lower: i64, upper: i64) -> IntervalJoinProcess<u32, u32, u32, u32> {
        IntervalJoinProcess::new(lower, upper, Arc::new(|_, _, _| Ok(())))
    }

    #[test]
    fn clean_up_waits_until_no_future_record_can_match() {
        let j = join(-5, 10);
        assert_eq!(j.left_cleanup(100), 110);
        assert_eq!(j.right_cleanup(100), 105);
        // Both bounds before the left record: rights are kept up to l + lower..=l + upper,
        // lefts until their own timestamp.
        let j = join(-20, -10);
        assert_eq!(j.left_cleanup(100), 100);
        assert_eq!(j.right_cleanup(100), 120);
        assert_eq!(join(0, 0).left_cleanup(i64::MAX), i64::MAX);
    }
}
