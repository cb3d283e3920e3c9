//! Processing-time windows: tumbling and sliding windows over the subtask's wall clock.
//!
//! A record belongs to the windows containing the wall-clock time (ms since the epoch) at which
//! its subtask handles it; its own timestamp plays no part. The default trigger fires a window
//! on a processing-time timer at its `max_timestamp`, and its state is dropped then. Timers and
//! contents are keyed state: after a restore the windows of the checkpoint fire as soon as the
//! clock has passed their end, and replayed records go to the windows of the time they are
//! handled again, so every record is counted in exactly one tumbling window, whatever the firing
//! times. At the end of a bounded input, windows that have not fired yet fire then.

use super::{
    clamped, millis, tumbling_window, validate_tumbling, window_start, TimeWindow, WindowAssigner, WindowTime,
};
use crate::data::Timestamp;
use std::time::Duration;

/// Non-overlapping windows of `size` of processing time:
/// `[offset + k*size, offset + (k+1)*size)` (Flink's `TumblingProcessingTimeWindows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingProcessingTime {
    /// Length of every window (at least 1 ms).
    pub size: Duration,
    /// Shift of the window boundaries from the epoch (less than `size`).
    pub offset: Duration,
}

impl TumblingProcessingTime {
    /// Windows of `size`, aligned to the epoch.
    pub fn of(size: Duration) -> Self {
        TumblingProcessingTime {
            size,
            offset: Duration::ZERO,
        }
    }

    /// Shifts the window boundaries by `offset`.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }
}

impl WindowAssigner for TumblingProcessingTime {
    fn assign_windows(&self, now: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(tumbling_window(now, self.size, self.offset));
    }

    fn time(&self) -> WindowTime {
        WindowTime::ProcessingTime
    }

    fn validate(&self) -> std::result::Result<(), String> {
        validate_tumbling("processing-time ", self.size, self.offset)
    }
}

/// Windows of `size` of processing time starting every `slide` (Flink's
/// `SlidingProcessingTimeWindows`). `slide` may not exceed `size`: records arriving between
/// windows would belong to none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingProcessingTime {
    /// Length of every window (at least 1 ms).
    pub size: Duration,
    /// Distance between the starts of consecutive windows (1 ms to `size`).
    pub slide: Duration,
    /// Shift of the window starts from the epoch (less than `slide`).
    pub offset: Duration,
}

impl SlidingProcessingTime {
    /// Windows of `size` every `slide`, aligned to the epoch.
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingProcessingTime {
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

impl WindowAssigner for SlidingProcessingTime {
    fn assign_windows(&self, now: Timestamp, out: &mut Vec<TimeWindow>) {
        let (size, slide) = (millis(self.size), millis(self.slide));
        let mut start = window_start(now, millis(self.offset), slide);
        let first_excluded = now as i128 - size as i128;
        while start > first_excluded {
            out.push(clamped(start, size));
            start -= slide as i128;
        }
    }

    fn time(&self) -> WindowTime {
        WindowTime::ProcessingTime
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let (size, slide, offset) = (millis(self.size), millis(self.slide), millis(self.offset));
        if size <= 0 || slide <= 0 {
            return Err(format!(
                "processing-time sliding window size and slide must be at least 1 ms, got {:?} and {:?}",
                self.size, self.slide
            ));
        }
        if slide > size {
            return Err(format!(
                "processing-time sliding window slide {:?} is larger than its size {:?}: records arriving \
                 between windows would belong to none",
                self.slide, self.size
            ));
        }
        if offset >= slide {
            return Err(format!(
                "processing-time sliding window offset {:?} must be smaller than its slide {:?}",
                self.offset, self.slide
            ));
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

    fn assign<W: WindowAssigner>(w: &W, now: Timestamp) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        w.assign_windows(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn processing_time_windows_contain_the_wall_clock() {
        let t = TumblingProcessingTime::of(ms(100));
        assert_eq!(t.time(), WindowTime::ProcessingTime);
        assert_eq!(
            assign(&t, 1_700_000_000_123),
            vec![TimeWindow::new(1_700_000_000_100, 1_700_000_000_200)]
        );
        let s = SlidingProcessingTime::of(ms(100), ms(50));
        assert_eq!(
            assign(&s, 1_025),
            vec![TimeWindow::new(950, 1_050), TimeWindow::new(1_000, 1_100)]
        );
        for now in (0..1_000).step_by(7) {
            assert!(assign(&s, now).iter().all(|w| w.contains(now)));
            assert_eq!(assign(&s, now).len(), 2);
        }
    }

    #[test]
    fn invalid_processing_time_windows_are_rejected() {
        assert!(TumblingProcessingTime::of(Duration::ZERO).validate().is_err());
        assert!(TumblingProcessingTime::of(ms(10))
            .with_offset(ms(10))
            .validate()
            .is_err());
        let err = SlidingProcessingTime::of(ms(10), ms(20)).validate().unwrap_err();
        assert!(err.contains("larger than its size"), "{err}");
        assert!(SlidingProcessingTime::of(ms(10), ms(10)).validate().is_ok());
        assert!(SlidingProcessingTime::of(ms(10), Duration::ZERO).validate().is_err());
    }
}
