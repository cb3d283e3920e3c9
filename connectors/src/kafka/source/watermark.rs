//! Per-partition watermarks combined into a reader's watermark.
//!
//! Each Kafka partition is in timestamp order up to a bound (`out_of_orderness`), so each gets
//! its own watermark: the largest timestamp seen minus the bound, minus 1 ms. The reader's
//! watermark is the minimum over partitions that are neither idle nor finished, so one
//! partition's records never make another's look late. A partition without records for
//! `idleness` (if set) is idle and does not hold the watermark back until it has records
//! again; without `idleness` an empty partition holds it back forever. When every partition
//! is idle, the minimum over the partitions that had records is reported once (so their
//! windows can fire), then idleness.
//!
//! # After a crash
//! Each partition's largest timestamp is checkpointed with its offset
//! (`SplitPosition::event_time`) and given back to [`PartitionWatermarks::add_partition`], so
//! a restored reader reports the watermarks of the failure-free run: a partition that has no
//! new record yet does not hold the watermark back to "unknown", and records the
//! failure-free run dropped as late stay late. Idleness starts counting again at the restore.

use std::time::{Duration, Instant};
use weir_engine::connector::SourceWatermark;
use weir_engine::connector::Timestamp;

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
    /// The highest watermark reported.
    reported: Option<Timestamp>,
}

impl PartitionWatermarks {
    pub(super) fn new(settings: WatermarkSettings) -> Self {
        PartitionWatermarks {
            settings,
            partitions: Vec::new(),
            reported: None,
        }
    }

    /// Tracks one more partition (index = number of partitions added before), active from
    /// `now`, whose records before its start position had timestamps up to `restored`.
    pub(super) fn add_partition(&mut self, now: Instant, restored: Option<Timestamp>) {
        self.partitions.push(PartitionTime {
            max_timestamp: restored,
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

    /// The largest timestamp of partition `i` so far (restored or read), for its checkpoint.
    pub(super) fn max_timestamp(&self, i: usize) -> Option<Timestamp> {
        self.partitions.get(i).and_then(|p| p.max_timestamp)
    }

    /// Partition `i` has no more records (bounded reading reached its end).
    pub(super) fn finish(&mut self, i: usize) {
        self.partitions[i].finished = true;
    }

    /// The combined watermark at `now`.
    pub(super) fn current(&mut self, now: Instant) -> SourceWatermark {
        let lag = i64::try_from(self.settings.out_of_orderness.as_millis()).unwrap_or(i64::MAX);
        let of = |ts: Timestamp| ts.saturating_sub(lag).saturating_sub(1);
        let mut active_min: Option<Timestamp> = None;
        let mut idle_min: Option<Timestamp> = None;
        let mut any_active = false;
        for p in self.partitions.iter().filter(|p| !p.finished) {
            let idle = self
                .settings
                .idleness
                .is_some_and(|d| now.saturating_duration_since(p.last_activity) >= d);
            match (idle, p.max_timestamp) {
                (true, Some(ts)) => idle_min = Some(idle_min.map_or(of(ts), |m| m.min(of(ts)))),
                (true, None) => {}
                // An active partition without a record yet: nothing is known about its time.
                (false, None) => return SourceWatermark::Untracked,
                (false, Some(ts)) => {
                    any_active = true;
                    active_min = Some(active_min.map_or(of(ts), |m| m.min(of(ts))));
                }
            }
        }
        if any_active {
            let Some(w) = active_min else {
                return SourceWatermark::Untracked;
            };
            self.reported = Some(self.reported.map_or(w, |r| r.max(w)));
            return SourceWatermark::At(w);
        }
        match idle_min {
            // Reported once, and only if it moves the watermark: reporting a watermark also
            // ends idleness.
            Some(w) if self.reported.is_none_or(|r| w > r) => {
                self.reported = Some(w);
                SourceWatermark::At(w)
            }
            _ => SourceWatermark::Idle,
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
            w.add_partition(t0, None);
        }
        w
    }

    #[test]
    fn the_slowest_active_partition_decides_and_idle_ones_do_not_stall() {
        let t0 = Instant::now();
        let mut w = tracker(Some(100), 2, t0);
        assert_eq!(
            w.current(t0),
            SourceWatermark::Untracked,
            "no partition has a record yet"
        );
        w.on_record(0, Some(1_000), t0);
        assert_eq!(w.current(t0), SourceWatermark::Untracked, "partition 1 holds it back");
        w.on_record(1, Some(500), t0);
        assert_eq!(w.current(t0), SourceWatermark::At(489));
        // Partition 1 goes quiet: after the idleness timeout only partition 0 counts.
        let later = t0 + Duration::from_millis(150);
        w.on_record(0, Some(2_000), later);
        assert_eq!(w.current(later), SourceWatermark::At(1_989));
        // Everything idle: their minimum (489) is below what was reported, so idleness.
        let much_later = later + Duration::from_millis(150);
        assert_eq!(w.current(much_later), SourceWatermark::Idle);
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
    fn when_all_are_idle_an_empty_partition_does_not_hold_back_the_others() {
        let t0 = Instant::now();
        let mut w = tracker(Some(100), 2, t0);
        w.on_record(0, Some(1_000), t0);
        assert_eq!(w.current(t0), SourceWatermark::Untracked, "partition 1 not idle yet");
        // Both idle at once: partition 0's watermark is reported once, then idleness.
        let later = t0 + Duration::from_millis(200);
        assert_eq!(w.current(later), SourceWatermark::At(989));
        assert_eq!(w.current(later), SourceWatermark::Idle);
        assert_eq!(w.current(later), SourceWatermark::Idle);
    }

    #[test]
    fn a_reader_without_partitions_is_idle() {
        let t0 = Instant::now();
        assert_eq!(tracker(None, 0, t0).current(t0), SourceWatermark::Idle);
    }

    #[test]
    fn restored_timestamps_give_the_watermark_of_the_failure_free_run() {
        let t0 = Instant::now();
        // Before the checkpoint: partition 0 reached 1_000, partition 1 reached 100.
        let mut before = tracker(None, 2, t0);
        before.on_record(0, Some(1_000), t0);
        before.on_record(1, Some(100), t0);
        let checkpointed = [before.max_timestamp(0), before.max_timestamp(1)];
        assert_eq!(checkpointed, [Some(1_000), Some(100)]);
        // After it, only partition 1 has records: in the failure-free run partition 0's
        // 1_000 keeps counting.
        before.on_record(1, Some(2_000), t0);
        let failure_free = before.current(t0);
        assert_eq!(failure_free, SourceWatermark::At(989));

        let mut restored = PartitionWatermarks::new(before.settings);
        restored.add_partition(t0, checkpointed[0]);
        restored.add_partition(t0, checkpointed[1]);
        restored.on_record(1, Some(2_000), t0);
        assert_eq!(restored.current(t0), failure_free);
    }
}
