//! Evictors: drop records of a window before the window function sees them (Flink's `Evictor`,
//! `evictBefore`). A window step with an evictor keeps every record of each window (with its
//! timestamp); when the window fires, the evictor removes records from that list, the rest is
//! written back (evicted records are gone from the window's state for good, as in Flink) and
//! the window function runs over what remains. The list is keyed state, so an eviction is part
//! of the checkpoint like any other state change.

use super::{millis, TimeWindow};
use crate::data::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A record in a window with its timestamp (Flink's `TimestampedValue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<T> {
    /// The record.
    pub value: T,
    /// Its event time, if it had one.
    pub timestamp: Option<Timestamp>,
}

/// The clocks when a window fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictorContext {
    /// The step's watermark.
    pub watermark: Timestamp,
    /// The subtask's wall clock in ms.
    pub processing_time: Timestamp,
}

/// Removes records from a firing window before the window function runs.
pub trait Evictor<T>: Send + Sync + std::fmt::Debug + 'static {
    /// Removes what should not reach the window function from `records` (in arrival order).
    fn evict_before(&self, records: &mut Vec<Stamped<T>>, window: TimeWindow, ctx: &EvictorContext);

    /// Checks the parameters; the message becomes a configuration error naming the step.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Keeps the last `n` records of the window (Flink's `CountEvictor`).
#[derive(Debug, Clone, Copy)]
pub struct CountEvictor {
    n: usize,
}

/// A [`CountEvictor`] keeping `n` records (`n` at least 1).
pub fn count_evictor(n: usize) -> CountEvictor {
    CountEvictor { n }
}

impl<T> Evictor<T> for CountEvictor {
    fn evict_before(&self, records: &mut Vec<Stamped<T>>, _: TimeWindow, _: &EvictorContext) {
        if records.len() > self.n {
            let excess = records.len() - self.n;
            records.drain(..excess);
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.n == 0 {
            return Err("count evictor: must keep at least 1 record, got 0".into());
        }
        Ok(())
    }
}

/// Keeps the records whose timestamp is within `keep` of the newest timestamp in the window:
/// those at or before `newest - keep` are evicted (Flink's `TimeEvictor`). Records without a
/// timestamp are kept.
#[derive(Debug, Clone, Copy)]
pub struct TimeEvictor {
    keep: Duration,
}

/// A [`TimeEvictor`] keeping `keep` of event time before the newest record.
pub fn time_evictor(keep: Duration) -> TimeEvictor {
    TimeEvictor { keep }
}

impl<T> Evictor<T> for TimeEvictor {
    fn evict_before(&self, records: &mut Vec<Stamped<T>>, _: TimeWindow, _: &EvictorContext) {
        let Some(newest) = records.iter().filter_map(|r| r.timestamp).max() else {
            return;
        };
        let cutoff = newest.saturating_sub(millis(self.keep));
        records.retain(|r| r.timestamp.is_none_or(|ts| ts > cutoff));
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if millis(self.keep) <= 0 {
            return Err(format!("time evictor: must keep at least 1 ms, got {:?}", self.keep));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(ts: &[Option<i64>]) -> Vec<Stamped<usize>> {
        ts.iter()
            .enumerate()
            .map(|(i, t)| Stamped {
                value: i,
                timestamp: *t,
            })
            .collect()
    }

    fn values(v: &[Stamped<usize>]) -> Vec<usize> {
        v.iter().map(|s| s.value).collect()
    }

    const CTX: EvictorContext = EvictorContext {
        watermark: 0,
        processing_time: 0,
    };

    #[test]
    fn count_evictor_keeps_the_last_n() {
        let mut r = stamped(&[None; 5]);
        count_evictor(3).evict_before(&mut r, TimeWindow::global(), &CTX);
        assert_eq!(values(&r), vec![2, 3, 4]);
        count_evictor(10).evict_before(&mut r, TimeWindow::global(), &CTX);
        assert_eq!(values(&r), vec![2, 3, 4]);
        assert!(Evictor::<u8>::validate(&count_evictor(0)).is_err());
    }

    #[test]
    fn time_evictor_keeps_what_is_within_the_span_of_the_newest() {
        let mut r = stamped(&[Some(100), Some(150), None, Some(151), Some(250), Some(200)]);
        time_evictor(Duration::from_millis(100)).evict_before(&mut r, TimeWindow::global(), &CTX);
        assert_eq!(values(&r), vec![2, 3, 4, 5], "150 is at the cutoff 250 - 100: evicted");
        let mut none = stamped(&[None, None]);
        time_evictor(Duration::from_millis(1)).evict_before(&mut none, TimeWindow::global(), &CTX);
        assert_eq!(none.len(), 2);
        assert!(Evictor::<u8>::validate(&time_evictor(Duration::ZERO)).is_err());
    }
}
