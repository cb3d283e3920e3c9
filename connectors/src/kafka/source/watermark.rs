//! Per-partition watermarks combined into a reader's watermark.
//!
//! Each Kafka partition is in timestamp order up to a bound (`out_of_orderness`), so each gets
//! its own watermark: the largest timestamp seen minus the bound, minus 1 ms. The reader's
//! watermark is the minimum over partitions that are neither idle nor finished, so one
//! partition's records never make another's look late. A partition without records for
//! `idleness` (if set) is idle and does not hold the watermark back until it has records
//! again; without `idleness` an empty partition holds it back forever. Watermarks are not
//! checkpointed: after a restore they start again from the replayed records.

use std::time::{Duration, Instant};
use weir_engine::data::Timestamp;
use weir_engine::source::SourceWatermark;

/// How watermarks are derived from record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkSettings {
    /// How far a record's timestamp may lag the largest one seen in its partition.
    pub out_of_orderness: Duration,
    /// After how long without records a partition counts as idle (`None`: never).
    pub idleness: Option<Duration>,
}

#[derive(Debug, Clone)]
struct PartitionTime {
    max_timestamp: Option<Timestamp>,
    last_activity: Instant,
    finished: bool,
}

/// The event-time state of every partition of one reader.
#[derive(Debug, Clone)]
pub(super) struct PartitionWatermarks {
    settings: WatermarkSettings,
    partitions: Vec<PartitionTime>,
}

impl PartitionWatermarks {
    pub(super) fn new(settings: WatermarkSettings) -> Self {
        PartitionWatermarks {
            settings,
            partitions: Vec::new(),
        }
    }

    /// Tracks one more partition (index = number of partitions added before), active from `now`.
    pub(super) fn add_partition(&mut self, now: Instant) {
        self.partitions.push(PartitionTime {
            max_timestamp: None,
            last_activity: now,
            finished: false,
        });
    }

    /// Partition `i` handed out a record (with a timestamp, if it has one) at `now`.
    pub(super) fn on_record(&mut self, i: usize, timestamp: Option<Timestamp>, now: Instant) {
        let p = &mut self.partitions[i];
        p.last_activity = now;
        if let Some(ts) = timestamp {
            p.max_timestamp = Some(p.max_timestamp.map_or(ts, |m| m.max(ts)));
        }
    }

    /// Partition `i` has no more records (bounded reading reached its end).
    pub(super) fn finish(&mut self, i: usize) {
        self.partitions[i].finished = true;
    }

    /// The combined watermark at `now`.
    pub(super) fn current(&self, now: Instant) -> SourceWatermark {
        let lag = i64::try_from(self.settings.out_of_orderness.as_millis()).unwrap_or(i64::MAX);
        let mut min: Option<Timestamp> = None;
        let mut any_active = false;
        for p in &self.partitions {
            if p.finished {
                continue;
            }
            let idle = self
                .settings
                .idleness
                .is_some_and(|d| now.saturating_duration_since(p.last_activity) >= d);
            if idle {
                continue;
            }
            any_active = true;
            match p.max_timestamp {
                // An active partition without a record yet: nothing is known about its time.
                None => return SourceWatermark::Untracked,
                Some(ts) => {
                    let w = ts.saturating_sub(lag).saturating_sub(1);
                    min = Some(min.map_or(w, |m| m.min(w)));
                }
            }
        }
        match min {
            Some(w) => SourceWatermark::At(w),
            None if !any_active => SourceWatermark::Idle,
            None => SourceWatermark::Untracked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(idle_ms: Option<u64>, n: usize, t0: Instant) -> PartitionWatermarks {
        let mut w = PartitionWatermarks::new(WatermarkSettings {
            out_of_orderness: Duration::from_millis(10),
            idleness: idle_ms.map(Duration::from_millis),
        });
        for _ in 0..n {
            w.add_partition(t0);
        }
        w
    }

    #[test]
    fn the_slowest_active_partition_decides_and_idle_ones_do_not_stall() {
        let t0 = Instant::now();
        let mut w = tracker(Some(100), 2, t0);
        assert_eq!(w.current(t0), SourceWatermark::Untracked, "no partition has a record yet");
        w.on_record(0, Some(1_000), t0);
        assert_eq!(w.current(t0), SourceWatermark::Untracked, "partition 1 holds it back");
        w.on_record(1, Some(500), t0);
        assert_eq!(w.current(t0), SourceWatermark::At(489));
        // Partition 1 goes quiet: after the idleness timeout only partition 0 counts.
        let later = t0 + Duration::from_millis(150);
        w.on_record(0, Some(2_000), later);
        assert_eq!(w.current(later), SourceWatermark::At(1_989));
        // Everything idle: the reader is idle.
        let much_later = later + Duration::from_millis(150);
        assert_eq!(w.current(much_later), SourceWatermark::Idle);
    }

    #[test]
    fn without_idleness_an_empty_partition_holds_the_watermark_back() {
        let t0 = Instant::now();
        let mut w = tracker(None, 2, t0);
        w.on_record(0, Some(1_000), t0);
        assert_eq!(w.current(t0 + Duration::from_secs(3600)), SourceWatermark::Untracked);
        // A finished partition no longer counts.
        w.finish(1);
        assert_eq!(w.current(t0), SourceWatermark::At(989));
        w.finish(0);
        assert_eq!(w.current(t0), SourceWatermark::Idle);
    }

    #[test]
    fn a_reader_without_partitions_is_idle() {
        let t0 = Instant::now();
        assert_eq!(tracker(None, 0, t0).current(t0), SourceWatermark::Idle);
    }
}
