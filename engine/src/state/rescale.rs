//! Rescaling: which state of a checkpoint taken at one parallelism each subtask of another
//! parallelism takes. Decisions only, no I/O: the restore and the state backends act on them.
//!
//! Keyed state moves by key group. Subtask `i` of `p` owns the contiguous range
//! [`KeyGroupRange::for_subtask`]`(i, p, max_parallelism)`; after a restore at `p'`, new subtask
//! `j` keeps exactly its own range and takes it from every old subtask whose range intersects
//! it. The old subtask with the largest overlap is the *base*: a backend opens its snapshot
//! whole and drops the key groups outside the new range (range deletes, never key by key), and
//! takes the overlap of each other old subtask by ranges. Since the ranges of a parallelism
//! partition all key groups, every key group of the checkpoint lands in exactly one new
//! subtask, the one that owns it.
//!
//! Operator state (sink committables, watermarks) is opaque per subtask. A sink's state moves
//! whole: old subtask `i` goes to new subtask `i mod p'` ([`operator_state_owner`]), which
//! commits its committables before anything else. Other operators see the states of every old
//! subtask and combine them (watermarks take the minimum).

use super::key_group::{subtask_for_key_group, KeyGroupRange};

/// The part of an old subtask's keyed state that a new subtask takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenRange {
    /// The old subtask (of the checkpoint's parallelism).
    pub old_subtask: usize,
    /// The key groups the old subtask owned.
    pub old_key_groups: KeyGroupRange,
    /// The key groups taken from it: the intersection with the new subtask's range.
    pub taken: KeyGroupRange,
}

/// What one new subtask restores of a keyed step's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedAssignment {
    /// The key groups the new subtask owns (and keeps).
    pub key_groups: KeyGroupRange,
    /// Every old subtask whose range intersects `key_groups`, the largest overlap first (ties:
    /// the lower subtask), then by subtask. The first is the base.
    pub sources: Vec<TakenRange>,
}

/// The keyed state new subtask `new_subtask` of `new_parallelism` takes from a checkpoint
/// taken at `old_parallelism`, with `max_parallelism` key groups. Without a change of
/// parallelism it is the subtask's own state, whole.
///
/// # Panics
/// If a parallelism is 0 or above `max_parallelism`, or `new_subtask >= new_parallelism`
/// (the job's validation refuses such parallelism before a restore).
pub fn assign_keyed_state(
    new_subtask: usize,
    new_parallelism: usize,
    old_parallelism: usize,
    max_parallelism: usize,
) -> KeyedAssignment {
    assert!(
        (1..=max_parallelism).contains(&new_parallelism) && (1..=max_parallelism).contains(&old_parallelism),
        "parallelism {old_parallelism} -> {new_parallelism} with max parallelism {max_parallelism}"
    );
    assert!(
        new_subtask < new_parallelism,
        "subtask {new_subtask} of {new_parallelism}"
    );
    let key_groups = KeyGroupRange::for_subtask(new_subtask, new_parallelism, max_parallelism);
    let first = subtask_for_key_group(key_groups.start, max_parallelism, old_parallelism);
    let last = subtask_for_key_group(key_groups.end, max_parallelism, old_parallelism);
    let mut sources: Vec<TakenRange> = (first..=last)
        .filter_map(|old_subtask| {
            let old_key_groups = KeyGroupRange::for_subtask(old_subtask, old_parallelism, max_parallelism);
            old_key_groups.intersect(&key_groups).map(|taken| TakenRange {
                old_subtask,
                old_key_groups,
                taken,
            })
        })
        .collect();
    sources.sort_by_key(|t| (std::cmp::Reverse(t.taken.len()), t.old_subtask));
    KeyedAssignment { key_groups, sources }
}

/// The new subtask (of `new_parallelism`) that takes the operator state of old subtask
/// `old_subtask` when a sink's state moves whole: `old_subtask mod new_parallelism`. Without a
/// change of parallelism every subtask keeps its own.
pub fn operator_state_owner(old_subtask: usize, new_parallelism: usize) -> usize {
    old_subtask % new_parallelism
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_parallelism_takes_its_own_state_whole() {
        for p in 1..=5 {
            for i in 0..p {
                let a = assign_keyed_state(i, p, p, 128);
                let own = KeyGroupRange::for_subtask(i, p, 128);
                assert_eq!(a.key_groups, own);
                assert_eq!(
                    a.sources,
                    vec![TakenRange {
                        old_subtask: i,
                        old_key_groups: own,
                        taken: own
                    }]
                );
            }
        }
    }

    #[test]
    fn two_to_three_takes_the_largest_overlap_as_the_base() {
        // 2 subtasks own 0..=63 and 64..=127; 3 own 0..=42, 43..=85, 86..=127.
        let middle = assign_keyed_state(1, 3, 2, 128);
        assert_eq!(middle.key_groups, KeyGroupRange { start: 43, end: 85 });
        let taken: Vec<(usize, KeyGroupRange)> = middle.sources.iter().map(|t| (t.old_subtask, t.taken)).collect();
        assert_eq!(
            taken,
            vec![
                (1, KeyGroupRange { start: 64, end: 85 }),
                (0, KeyGroupRange { start: 43, end: 63 })
            ],
            "22 key groups from subtask 1 before 21 from subtask 0"
        );
        let first = assign_keyed_state(0, 3, 2, 128);
        assert_eq!(first.sources.len(), 1, "{first:?}");
        assert_eq!(first.sources[0].old_subtask, 0);
    }

    #[test]
    fn three_to_one_takes_every_old_subtask() {
        let a = assign_keyed_state(0, 1, 3, 7);
        assert_eq!(a.key_groups, KeyGroupRange { start: 0, end: 6 });
        let mut old: Vec<usize> = a.sources.iter().map(|t| t.old_subtask).collect();
        assert_eq!(old[0], 0, "subtask 0 owns 3 of 7 key groups (0..=2): {a:?}");
        old.sort_unstable();
        assert_eq!(old, vec![0, 1, 2]);
    }

    #[test]
    fn every_key_group_is_taken_exactly_once_by_its_owner() {
        for max in [1usize, 2, 7, 128, 300] {
            for old in 1..=max.min(6) {
                for new in 1..=max.min(6) {
                    let mut taken_by = vec![None; max];
                    for j in 0..new {
                        let a = assign_keyed_state(j, new, old, max);
                        for t in &a.sources {
                            assert!(t.old_key_groups.intersect(&a.key_groups) == Some(t.taken));
                            for kg in t.taken.start..=t.taken.end {
                                assert_eq!(subtask_for_key_group(kg, max, old), t.old_subtask);
                                assert_eq!(subtask_for_key_group(kg, max, new), j);
                                assert!(taken_by[kg as usize].replace(j).is_none(), "key group {kg} taken twice");
                            }
                        }
                    }
                    assert!(taken_by.iter().all(Option::is_some), "max {max}: {old} -> {new}");
                }
            }
        }
    }

    #[test]
    fn a_sink_subtask_state_goes_to_subtask_modulo_the_new_parallelism() {
        assert_eq!(
            (0..4).map(|i| operator_state_owner(i, 2)).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
        assert_eq!(operator_state_owner(1, 3), 1);
    }
}
