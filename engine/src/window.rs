//! Windows: what a window is ([`TimeWindow`]), what a window step emits ([`Windowed`]), and
//! the assigners that put a record into windows: event time (tumbling, sliding, session, here),
//! processing time ([`processing`]) and the one global window ([`global`]). When a window fires
//! is decided by its [`trigger`](mod@trigger) ([`triggers`] has the built-ins); an
//! [`evictor`](mod@evictor) may drop records before the window function sees them. The window
//! step itself is `operator::window`; the fluent API is `api::window`.
//!
//! Semantics are Flink's: with the default trigger an event-time window `[start, end)` fires
//! once the watermark reaches its [`max_timestamp`](TimeWindow::max_timestamp) `end - 1`, a
//! processing-time window once the subtask's wall clock does, and every result is emitted
//! with that timestamp.

pub mod evictor;
pub mod global;
pub mod processing;
pub mod trigger;
pub mod triggers;

use crate::data::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The event-time interval `[start, end)` of a window, in milliseconds.
///
/// Ordered by `start`, then `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First timestamp in the window (inclusive).
    pub start: Timestamp,
    /// End of the window (exclusive).
    pub end: Timestamp,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        TimeWindow { start, end }
    }

    /// The largest timestamp in the window, `end - 1`: the window fires when the watermark
    /// reaches it, and its results carry it as their timestamp.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end.saturating_sub(1)
    }

    /// The window of [`GlobalWindows`](global::GlobalWindows): all of time,
    /// `[i64::MIN, i64::MAX)`. Its `max_timestamp` is `i64::MAX - 1`, reached only by the final
    /// watermark at the end of a bounded input.
    pub const fn global() -> Self {
        TimeWindow {
            start: Timestamp::MIN,
            end: Timestamp::MAX,
        }
    }

    /// Whether `ts` lies in the window.
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Whether the windows overlap or touch (`[0, 10)` and `[10, 20)` do): such session
    /// windows merge, as in Flink.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A window's result: the key, the window and the value computed over its records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Windowed<K, R> {
    /// The key whose records the window holds.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The result over the window's records.
    pub value: R,
}

/// The clock an assigner places records by, which decides the default trigger, when a
/// window's state is dropped, and whether allowed lateness applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowTime {
    /// By the record's timestamp: the default trigger fires at the watermark, state is dropped
    /// at `max_timestamp + allowed lateness`, later records are late.
    EventTime,
    /// By the subtask's wall clock when the record arrives: the default trigger fires on a
    /// processing-time timer at `max_timestamp`, when the state is dropped too; no record is
    /// late.
    ProcessingTime,
    /// Every record in the one [global window](TimeWindow::global): it never fires unless a
    /// trigger says so, and its state is kept (purging triggers empty it).
    Global,
}

/// Decides which windows a record belongs to, from its timestamp.
pub trait WindowAssigner: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Appends the windows that contain `timestamp` to `out` (possibly none). For a
    /// [processing-time](WindowTime::ProcessingTime) assigner `timestamp` is the subtask's
    /// wall clock in ms when the record arrives; for a [global](WindowTime::Global) one it is
    /// the record's timestamp if it has one, else 0.
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<TimeWindow>);

    /// The clock records are placed by. Default: [event time](WindowTime::EventTime).
    fn time(&self) -> WindowTime {
        WindowTime::EventTime
    }

    /// Whether windows of a key that [intersect](TimeWindow::intersects) merge into one
    /// (session windows).
    fn is_merging(&self) -> bool {
        false
    }

    /// Checks the parameters; the message becomes a configuration error of the pipeline.
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// A duration in milliseconds, saturating at `i64::MAX`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Start of the window of `size` aligned to `offset` that contains `ts` (Flink's
/// `getWindowStartWithOffset`), exact for negative timestamps. Computed in `i128`.
fn window_start(ts: i64, offset: i64, size: i64) -> i128 {
    let ts = ts as i128;
    ts - (ts - offset as i128).rem_euclid(size as i128)
}

/// The window `[start, start + size)`, clamped to the `i64` range.
fn clamped(start: i128, size: i64) -> TimeWindow {
    let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    TimeWindow::new(clamp(start), clamp(start + size as i128))
}

/// Fixed-size, non-overlapping windows: `[offset + k*size, offset + (k+1)*size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingEventTime {
    /// Length of every window (at least 1 ms).
    pub size: Duration,
    /// Shift of the window boundaries from the epoch (less than `size`).
    pub offset: Duration,
}

impl TumblingEventTime {
    /// Windows of `size`, aligned to the epoch.
    pub fn of(size: Duration) -> Self {
        TumblingEventTime {
            size,
            offset: Duration::ZERO,
        }
    }

    /// Shifts the window boundaries by `offset` (for example to align daily windows to a
    /// time zone).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }
}

impl WindowAssigner for TumblingEventTime {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(tumbling_window(timestamp, self.size, self.offset));
    }

    fn validate(&self) -> std::result::Result<(), String> {
        validate_tumbling("", self.size, self.offset)
    }
}

/// The tumbling window of `size` shifted by `offset` that holds time `t` (event or processing
/// time: both tumbling assigners use it).
pub(crate) fn tumbling_window(t: Timestamp, size: Duration, offset: Duration) -> TimeWindow {
    let size = millis(size);
    clamped(window_start(t, millis(offset), size), size)
}

/// Checks a tumbling window's size and offset; `kind` prefixes the window's name in the
/// message (`""` or `"processing-time "`).
pub(crate) fn validate_tumbling(kind: &str, size: Duration, offset: Duration) -> std::result::Result<(), String> {
    if millis(size) <= 0 {
        return Err(format!(
            "{kind}tumbling window size must be at least 1 ms, got {size:?}"
        ));
    }
    if millis(offset) >= millis(size) {
        return Err(format!(
            "{kind}tumbling window offset {offset:?} must be smaller than its size {size:?}"
        ));
    }
    Ok(())
}

/// Windows of `size` starting every `slide`: a record belongs to about `size / slide`
/// overlapping windows. With `slide > size` records between windows belong to none; they are
/// skipped and counted under the counter `unwindowed_records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingEventTime {
    /// Length of every window (at least 1 ms).
    pub size: Duration,
    /// Distance between the starts of consecutive windows (at least 1 ms).
    pub slide: Duration,
    /// Shift of the window starts from the epoch (less than `slide`).
    pub offset: Duration,
}

impl SlidingEventTime {
    /// Windows of `size` every `slide`, aligned to the epoch.
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingEventTime {
            size,
            slide,
            offset: Duration::ZERO,
        }
    }

    /// Shifts the window starts by `offset`.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }
}

impl WindowAssigner for SlidingEventTime {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<TimeWindow>) {
        let (size, slide) = (millis(self.size), millis(self.slide));
        let mut start = window_start(timestamp, millis(self.offset), slide);
        let first_excluded = timestamp as i128 - size as i128;
        while start > first_excluded {
            out.push(clamped(start, size));
            start -= slide as i128;
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let (size, slide, offset) = (millis(self.size), millis(self.slide), millis(self.offset));
        if size <= 0 || slide <= 0 {
            return Err(format!(
                "sliding window size and slide must be at least 1 ms, got {:?} and {:?}",
                self.size, self.slide
            ));
        }
        if offset >= slide {
            return Err(format!(
                "sliding window offset {:?} must be smaller than its slide {:?}",
                self.offset, self.slide
            ));
        }
        Ok(())
    }
}

/// Session windows: a record at `ts` opens `[ts, ts + gap)`, and windows of a key that overlap
/// or touch merge, so a session ends after `gap` without records of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Inactivity that closes a session (at least 1 ms).
    pub gap: Duration,
}

impl Session {
    /// Sessions closed by `gap` of inactivity.
    pub fn with_gap(gap: Duration) -> Self {
        Session { gap }
    }
}

impl WindowAssigner for Session {
    fn assign_windows(&self, timestamp: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(timestamp, timestamp.saturating_add(millis(self.gap))));
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if millis(self.gap) <= 0 {
            return Err(format!("session gap must be at least 1 ms, got {:?}", self.gap));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn assign<W: WindowAssigner>(w: &W, ts: Timestamp) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        w.assign_windows(ts, &mut out);
        out.sort();
        out
    }

    #[test]
    fn tumbling_aligns_to_epoch_and_offset() {
        let t = TumblingEventTime::of(ms(10));
        assert_eq!(assign(&t, 0), vec![TimeWindow::new(0, 10)]);
        assert_eq!(assign(&t, 9), vec![TimeWindow::new(0, 10)]);
        assert_eq!(assign(&t, 10), vec![TimeWindow::new(10, 20)]);
        assert_eq!(assign(&t, -1), vec![TimeWindow::new(-10, 0)]);
        assert_eq!(assign(&t, -10), vec![TimeWindow::new(-10, 0)]);
        assert_eq!(assign(&t, -11), vec![TimeWindow::new(-20, -10)]);
        let o = t.with_offset(ms(3));
        assert_eq!(assign(&o, 3), vec![TimeWindow::new(3, 13)]);
        assert_eq!(assign(&o, 2), vec![TimeWindow::new(-7, 3)]);
        assert_eq!(assign(&o, 12), vec![TimeWindow::new(3, 13)]);
        assert_eq!(assign(&o, 13), vec![TimeWindow::new(13, 23)]);
        assert_eq!(assign(&o, -8), vec![TimeWindow::new(-17, -7)]);
        assert_eq!(TimeWindow::new(3, 13).max_timestamp(), 12);
    }

    #[test]
    fn tumbling_windows_contain_their_timestamp() {
        for (size, offset) in [(1u64, 0u64), (7, 0), (7, 6), (1000, 999), (60_000, 1234)] {
            let t = TumblingEventTime::of(ms(size)).with_offset(ms(offset));
            for ts in (-2500i64..2500).step_by(7).chain([i64::MIN / 2, i64::MAX / 2]) {
                let w = assign(&t, ts);
                assert_eq!(w.len(), 1);
                assert!(w[0].contains(ts), "{w:?} {ts}");
                assert_eq!(w[0].end - w[0].start, size as i64);
                assert_eq!((w[0].start - offset as i64).rem_euclid(size as i64), 0);
            }
        }
    }

    #[test]
    fn sliding_overlaps_including_negative_timestamps() {
        let s = SlidingEventTime::of(ms(10), ms(5));
        assert_eq!(assign(&s, 0), vec![TimeWindow::new(-5, 5), TimeWindow::new(0, 10)]);
        assert_eq!(assign(&s, 4), vec![TimeWindow::new(-5, 5), TimeWindow::new(0, 10)]);
        assert_eq!(assign(&s, 5), vec![TimeWindow::new(0, 10), TimeWindow::new(5, 15)]);
        assert_eq!(assign(&s, -1), vec![TimeWindow::new(-10, 0), TimeWindow::new(-5, 5)]);
        assert_eq!(assign(&s, -6), vec![TimeWindow::new(-15, -5), TimeWindow::new(-10, 0)]);
        let uneven = SlidingEventTime::of(ms(10), ms(3));
        assert_eq!(
            assign(&uneven, -1),
            vec![TimeWindow::new(-9, 1), TimeWindow::new(-6, 4), TimeWindow::new(-3, 7)]
        );
        assert_eq!(
            assign(&SlidingEventTime::of(ms(10), ms(5)).with_offset(ms(2)), 1),
            vec![TimeWindow::new(-8, 2), TimeWindow::new(-3, 7)]
        );
        // Brute force: exactly the windows [k*slide + offset, +size) that contain ts.
        for (size, slide, offset) in [(10u64, 5u64, 0u64), (10, 3, 2), (7, 7, 0), (3, 5, 1), (12, 1, 0)] {
            let w = SlidingEventTime::of(ms(size), ms(slide)).with_offset(ms(offset));
            for ts in -60i64..60 {
                let expect: Vec<TimeWindow> = (-100i64..100)
                    .map(|k| k * slide as i64 + offset as i64)
                    .map(|start| TimeWindow::new(start, start + size as i64))
                    .filter(|w| w.contains(ts))
                    .collect();
                assert_eq!(
                    assign(&w, ts),
                    expect,
                    "size {size} slide {slide} offset {offset} ts {ts}"
                );
            }
        }
    }

    #[test]
    fn sessions_open_a_gap_window_and_merge() {
        let s = Session::with_gap(ms(10));
        assert!(s.is_merging());
        assert_eq!(assign(&s, -3), vec![TimeWindow::new(-3, 7)]);
        assert!(TimeWindow::new(0, 10).intersects(&TimeWindow::new(10, 20)));
        assert!(!TimeWindow::new(0, 10).intersects(&TimeWindow::new(11, 20)));
        assert_eq!(
            TimeWindow::new(0, 10).cover(&TimeWindow::new(5, 30)),
            TimeWindow::new(0, 30)
        );
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(TumblingEventTime::of(Duration::ZERO).validate().is_err());
        assert!(TumblingEventTime::of(ms(10)).with_offset(ms(10)).validate().is_err());
        assert!(TumblingEventTime::of(ms(10)).with_offset(ms(9)).validate().is_ok());
        assert!(SlidingEventTime::of(ms(10), Duration::ZERO).validate().is_err());
        assert!(SlidingEventTime::of(ms(10), ms(5))
            .with_offset(ms(5))
            .validate()
            .is_err());
        assert!(Session::with_gap(Duration::from_micros(10)).validate().is_err());
    }
}
