//! Key groups: the unit in which keyed state is partitioned, moved and (later) rescaled.
//!
//! `key group = hash(encoded key) mod max_parallelism`; subtask `i` of `p` owns the contiguous
//! range Flink uses, so the same key always lands in the same key group whatever the
//! parallelism, and a rescale moves whole ranges.

use serde::{Deserialize, Serialize};

/// A key group number in `0..max_parallelism`.
pub type KeyGroup = u16;

/// The largest supported max parallelism (number of key groups).
pub const MAX_KEY_GROUPS: usize = 1 << 15;

/// The key group of an encoded key. Stable across processes, platforms and Weir versions:
/// it decides where state lives in a checkpoint.
pub fn key_group_of(encoded_key: &[u8], max_parallelism: usize) -> KeyGroup {
    let h = xxhash_rust::xxh3::xxh3_64(encoded_key);
    (h % max_parallelism as u64) as KeyGroup
}

/// The key group of a key as Weir computes it for routing and state (its bincode encoding
/// hashed): useful to diagnose skew or to place test data.
pub fn key_group_for<K: serde::Serialize>(key: &K, max_parallelism: usize) -> crate::Result<KeyGroup> {
    let bytes = bincode::serde::encode_to_vec(key, bincode::config::standard())?;
    Ok(key_group_of(&bytes, max_parallelism))
}

/// The subtask (of `parallelism`) that owns `key_group`.
pub fn subtask_for_key_group(key_group: KeyGroup, max_parallelism: usize, parallelism: usize) -> usize {
    key_group as usize * parallelism / max_parallelism
}

/// An inclusive range of key groups owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: KeyGroup,
    /// Last key group of the range (inclusive).
    pub end: KeyGroup,
}

impl KeyGroupRange {
    /// The range of subtask `index` of `parallelism` when there are `max_parallelism` key groups.
    pub fn for_subtask(index: usize, parallelism: usize, max_parallelism: usize) -> Self {
        let start = (index * max_parallelism).div_ceil(parallelism);
        let end = ((index + 1) * max_parallelism).div_ceil(parallelism) - 1;
        KeyGroupRange {
            start: start as KeyGroup,
            end: end as KeyGroup,
        }
    }

    /// Whether `kg` belongs to this range.
    pub fn contains(&self, kg: KeyGroup) -> bool {
        self.start <= kg && kg <= self.end
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize + 1
    }

    /// Always false: a range holds at least one key group.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key groups in both ranges, if any.
    pub fn intersect(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        let (start, end) = (self.start.max(other.start), self.end.min(other.end));
        (start <= end).then_some(KeyGroupRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_and_agree_with_subtask_for_key_group() {
        for max in [1usize, 7, 128, 1000] {
            for p in 1..=max.min(9) {
                let mut next = 0usize;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(i, p, max);
                    assert_eq!(r.start as usize, next);
                    for kg in r.start..=r.end {
                        assert_eq!(subtask_for_key_group(kg, max, p), i, "max {max} p {p} kg {kg}");
                    }
                    next = r.end as usize + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_group_is_stable() {
        // These values are part of the checkpoint format: changing them breaks restores.
        assert_eq!(key_group_of(b"customer-1", 128), key_group_of(b"customer-1", 128));
        assert!(key_group_of(b"", 128) < 128);
    }
}
