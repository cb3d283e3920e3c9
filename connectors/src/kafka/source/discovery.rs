//! Partitions added to a topic while the job runs.
//!
//! The partitions listed when the job (attempt) started are assigned by the engine. A partition
//! found later belongs to subtask `stable_hash(split id) % parallelism`, which reads it from its
//! earliest offset; its position is checkpointed like any other. After a restart the engine
//! lists it with the others and restores its position by split id.

use super::super::client::partition_count;
use super::split_id;
use rdkafka::consumer::BaseConsumer;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::connector::{SplitId, SubtaskInfo};

/// The subtask that reads a partition discovered while running (FNV-1a of the split id: the
/// same in every process and on every platform).
pub(super) fn owner(split: &str, parallelism: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in split.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % parallelism.max(1) as u64) as usize
}

/// Looks for new partitions of the source's topics every `interval`.
pub(super) struct Discovery {
    interval: Duration,
    next_at: Instant,
    topics: Vec<String>,
    initial: Arc<BTreeSet<SplitId>>,
    subtask: SubtaskInfo,
    found: HashSet<SplitId>,
}

impl Discovery {
    pub(super) fn new(
        interval: Duration,
        topics: Vec<String>,
        initial: Arc<BTreeSet<SplitId>>,
        subtask: SubtaskInfo,
    ) -> Self {
        Discovery {
            interval,
            next_at: Instant::now() + interval,
            topics,
            initial,
            subtask,
            found: HashSet::new(),
        }
    }

    /// New partitions this subtask owns, if a look-up is due. A failed look-up is logged and
    /// retried at the next interval: discovery never fails the job.
    pub(super) fn poll(&mut self, consumer: &BaseConsumer, now: Instant) -> Vec<(String, i32)> {
        if now < self.next_at {
            return Vec::new();
        }
        self.next_at = now + self.interval;
        let mut new = Vec::new();
        for topic in &self.topics {
            let n = match partition_count(consumer, topic) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(topic, error = %e, "Kafka partition discovery failed; retrying later");
                    continue;
                }
            };
            for p in 0..n {
                let id = split_id(topic, p);
                if self.initial.contains(&id) || self.found.contains(&id) {
                    continue;
                }
                if owner(&id, self.subtask.parallelism) == self.subtask.index {
                    tracing::info!(split = %id, subtask = self.subtask.index, "new Kafka partition discovered");
                    new.push((topic.clone(), p));
                }
                self.found.insert(id);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_stable_and_spreads_partitions() {
        assert_eq!(owner("orders:7", 3), owner("orders:7", 3));
        assert_eq!(owner("orders:7", 1), 0);
        let owners: BTreeSet<usize> = (0..64).map(|p| owner(&format!("orders:{p}"), 4)).collect();
        assert_eq!(owners.len(), 4, "64 partitions reach every one of 4 subtasks");
    }
}
