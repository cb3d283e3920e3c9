//! Which restored state each subtask of the job opens with, when a step's parallelism may differ
//! from the checkpoint's: the decisions of [`state::rescale`](crate::state::rescale) applied to
//! what a restore materialized.

use super::metadata::CheckpointMetadata;
use super::restore::{RestoreInput, SubtaskKey};
use crate::state::rescale::{assign_keyed_state, operator_state_owner};
use crate::state::{KeyedRestore, SnapshotPart};
use std::collections::{BTreeSet, HashMap};

/// The operator state one subtask opens with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RestoredOperatorState {
    /// Its own state, when the step kept its parallelism.
    pub(crate) own: Option<Vec<u8>>,
    /// The states of old subtasks it takes, after a change of parallelism.
    pub(crate) rescaled: Vec<(usize, Vec<u8>)>,
}

impl RestoreInput {
    /// The step's parallelism in the restored checkpoint, when it differs from `parallelism`.
    fn old_parallelism(&self, step: &str, parallelism: usize) -> Option<usize> {
        self.parallelism.get(step).copied().filter(|&old| old != parallelism)
    }

    /// How subtask `subtask` of keyed step `step`, now at `parallelism`, restores its store;
    /// `None` when the checkpoint holds no keyed state for it (it starts empty).
    pub(crate) fn keyed_restore(
        &self,
        step: &str,
        subtask: usize,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Option<KeyedRestore> {
        let Some(old) = self.old_parallelism(step, parallelism) else {
            return self
                .keyed
                .get(&SubtaskKey::new(step, subtask))
                .map(|dir| KeyedRestore::Whole(dir.clone()));
        };
        let parts: Vec<SnapshotPart> = assign_keyed_state(subtask, parallelism, old, max_parallelism)
            .sources
            .into_iter()
            .filter_map(|t| {
                self.keyed
                    .get(&SubtaskKey::new(step, t.old_subtask))
                    .map(|dir| SnapshotPart {
                        dir: dir.clone(),
                        taken: t.taken,
                    })
            })
            .collect();
        (!parts.is_empty()).then_some(KeyedRestore::Rescaled(parts))
    }

    /// The operator state subtask `subtask` of step `step`, now at `parallelism`, opens with,
    /// by the step's [`OperatorStateRule`].
    pub(crate) fn operator_state_for(
        &self,
        step: &str,
        subtask: usize,
        parallelism: usize,
        rule: OperatorStateRule,
    ) -> RestoredOperatorState {
        if rule == OperatorStateRule::Replicated {
            // One copy, written by subtask 0, whatever the parallelism then and now.
            return RestoredOperatorState {
                own: self.operator_state.get(&SubtaskKey::new(step, 0)).cloned(),
                rescaled: Vec::new(),
            };
        }
        let old = self.old_parallelism(step, parallelism);
        if rule == OperatorStateRule::Redistributed {
            // Every old subtask's, at any parallelism (and its own too, when it kept it).
            let old = old.or_else(|| self.parallelism.get(step).copied()).unwrap_or(0);
            return RestoredOperatorState {
                own: self
                    .operator_state
                    .get(&SubtaskKey::new(step, subtask))
                    .filter(|_| old == parallelism)
                    .cloned(),
                rescaled: (0..old)
                    .filter_map(|i| {
                        self.operator_state
                            .get(&SubtaskKey::new(step, i))
                            .map(|state| (i, state.clone()))
                    })
                    .collect(),
            };
        }
        let Some(old) = old else {
            return RestoredOperatorState {
                own: self.operator_state.get(&SubtaskKey::new(step, subtask)).cloned(),
                rescaled: Vec::new(),
            };
        };
        let sink = rule == OperatorStateRule::Sink;
        let rescaled = (0..old)
            .filter(|&i| !sink || operator_state_owner(i, parallelism) == subtask)
            .filter_map(|i| {
                self.operator_state
                    .get(&SubtaskKey::new(step, i))
                    .map(|state| (i, state.clone()))
            })
            .collect();
        RestoredOperatorState { own: None, rescaled }
    }
}

/// How a step's operator state is handed out at a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperatorStateRule {
    /// Each subtask its own; after a change of parallelism every new subtask gets every old
    /// subtask's state to combine (source positions, watermarks).
    Combined,
    /// A sink's committables: each old subtask's go to exactly one new subtask
    /// ([`operator_state_owner`]), so every committable is committed once.
    Sink,
    /// One copy for the whole step (broadcast state): subtask 0 writes it at every checkpoint
    /// and every subtask, at any parallelism, restores from that copy.
    Replicated,
    /// Every subtask gets every old subtask's state at any parallelism, its own as well when
    /// the step kept its parallelism, and takes its share (operator lists of function steps).
    Redistributed,
}

/// The subtasks of checkpoint `meta` whose state a cluster worker fetches to run `mine` (its
/// subtasks now, by step and index) at `parallelism` (each step's now). Pure.
///
/// A step that kept its parallelism needs the state of the same subtasks. For a rescaled step,
/// an old subtask with keyed files is fetched only when its key groups overlap those of one of
/// the worker's new subtasks of the step (keyed state is the bulk of a checkpoint); an old
/// subtask with operator state only (sink committables, a watermark) is fetched whenever the
/// worker runs a subtask of the step, as whichever subtask takes it over may be here.
///
/// A step with replicated operator state also needs old subtask 0's copy, and a step that
/// redistributes its operator state needs every old subtask's (by the step's `rule`).
pub(crate) fn state_to_fetch(
    meta: &CheckpointMetadata,
    mine: &BTreeSet<SubtaskKey>,
    parallelism: &HashMap<String, usize>,
    rule: &dyn Fn(&str) -> OperatorStateRule,
) -> BTreeSet<SubtaskKey> {
    let mut wanted: BTreeSet<SubtaskKey> = BTreeSet::new();
    for op in &meta.operators {
        let here: Vec<usize> = mine.iter().filter(|k| k.step == op.name).map(|k| k.subtask).collect();
        let now = parallelism.get(&op.name).copied().unwrap_or(op.parallelism);
        if here.is_empty() {
            continue;
        }
        match rule(&op.name) {
            OperatorStateRule::Replicated => {
                wanted.insert(SubtaskKey::new(&op.name, 0));
            }
            OperatorStateRule::Redistributed => {
                wanted.extend(op.subtasks.iter().map(|st| SubtaskKey::new(&op.name, st.subtask)));
            }
            OperatorStateRule::Combined | OperatorStateRule::Sink => {}
        }
        if now == op.parallelism {
            wanted.extend(here.iter().map(|&s| SubtaskKey::new(&op.name, s)));
            continue;
        }
        let keyed: BTreeSet<usize> = here
            .iter()
            .flat_map(|&s| assign_keyed_state(s, now, op.parallelism, meta.max_parallelism).sources)
            .map(|t| t.old_subtask)
            .collect();
        for st in &op.subtasks {
            if st.keyed_files.is_empty() || keyed.contains(&st.subtask) {
                wanted.insert(SubtaskKey::new(&op.name, st.subtask));
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroupRange;
    use std::path::PathBuf;

    fn range(subtask: usize, parallelism: usize) -> KeyGroupRange {
        KeyGroupRange::for_subtask(subtask, parallelism, 128)
    }

    fn input(old: usize) -> RestoreInput {
        let mut input = RestoreInput::default();
        input.parallelism.insert("count".into(), old);
        input.parallelism.insert("out".into(), old);
        for i in 0..old {
            input
                .keyed
                .insert(SubtaskKey::new("count", i), PathBuf::from(format!("count-{i}")));
            input.operator_state.insert(SubtaskKey::new("out", i), vec![i as u8]);
        }
        input
    }

    #[test]
    fn the_same_parallelism_restores_each_subtask_whole() {
        let input = input(2);
        assert_eq!(
            input.keyed_restore("count", 1, 2, 128),
            Some(KeyedRestore::Whole(PathBuf::from("count-1")))
        );
        assert_eq!(
            input.operator_state_for("out", 1, 2, OperatorStateRule::Sink),
            RestoredOperatorState {
                own: Some(vec![1]),
                rescaled: Vec::new()
            }
        );
        assert_eq!(input.keyed_restore("other", 0, 2, 128), None);
    }

    #[test]
    fn two_to_three_splits_the_old_ranges_over_the_new_subtasks() {
        let input = input(2);
        let Some(KeyedRestore::Rescaled(parts)) = input.keyed_restore("count", 1, 3, 128) else {
            panic!("rescaled");
        };
        let middle = range(1, 3);
        assert_eq!(
            parts,
            vec![
                SnapshotPart {
                    dir: PathBuf::from("count-1"),
                    taken: KeyGroupRange {
                        start: range(1, 2).start,
                        end: middle.end
                    }
                },
                SnapshotPart {
                    dir: PathBuf::from("count-0"),
                    taken: KeyGroupRange {
                        start: middle.start,
                        end: range(0, 2).end
                    }
                },
            ]
        );
        // A new sink subtask without an old one of its index starts without operator state.
        assert_eq!(
            input.operator_state_for("out", 2, 3, OperatorStateRule::Sink),
            RestoredOperatorState::default()
        );
    }

    #[test]
    fn a_worker_fetches_the_old_subtasks_its_new_ones_take() {
        use crate::checkpoint::metadata::{
            CheckpointMetadata, CheckpointStats, OperatorState, StoredFile, SubtaskState, FORMAT_VERSION,
        };
        let file = |name: &str| StoredFile {
            name: name.into(),
            key: name.into(),
            size: 1,
            crc32c: 0,
        };
        let op = |name: &str, keyed: bool| OperatorState {
            name: name.into(),
            parallelism: 2,
            subtasks: (0..2)
                .map(|i| SubtaskState {
                    subtask: i,
                    key_groups: range(i, 2),
                    keyed_files: if keyed { vec![file("000007.sst")] } else { Vec::new() },
                    operator_state: (!keyed).then(|| file("operator-state")),
                })
                .collect(),
        };
        let meta = CheckpointMetadata {
            version: FORMAT_VERSION,
            job: "j".into(),
            id: crate::message::CheckpointId::new(4),
            owner_epoch: None,
            kind: crate::message::BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: Vec::new(),
            operators: vec![op("count", true), op("out", false), op("same", true)],
            stats: CheckpointStats::default(),
        };
        let now: HashMap<String, usize> = [("count".into(), 3), ("out".into(), 3), ("same".into(), 2)].into();
        let key = |step: &str, s: usize| SubtaskKey::new(step, s);
        // New subtask 2 of 3 owns key groups 86..=127, all of old subtask 1's.
        let mine: BTreeSet<SubtaskKey> = [key("count", 2), key("out", 2), key("same", 1)].into();
        assert_eq!(
            state_to_fetch(&meta, &mine, &now, &|_| OperatorStateRule::Combined),
            [key("count", 1), key("out", 0), key("out", 1), key("same", 1)].into()
        );
        // New subtask 1 of 3 (43..=85) overlaps both old ones; a worker without the step
        // fetches none of it.
        let mine: BTreeSet<SubtaskKey> = [key("count", 1)].into();
        assert_eq!(
            state_to_fetch(&meta, &mine, &now, &|_| OperatorStateRule::Combined),
            [key("count", 0), key("count", 1)].into()
        );
        // A step with replicated state also needs old subtask 0's copy, at any parallelism.
        let mine: BTreeSet<SubtaskKey> = [key("same", 1)].into();
        assert_eq!(
            state_to_fetch(&meta, &mine, &now, &|step| {
                if step == "same" {
                    OperatorStateRule::Replicated
                } else {
                    OperatorStateRule::Combined
                }
            }),
            [key("same", 0), key("same", 1)].into()
        );
        // A step that redistributes its operator state needs every old subtask's, even when it
        // kept its parallelism.
        assert_eq!(
            state_to_fetch(&meta, &mine, &now, &|step| {
                if step == "same" {
                    OperatorStateRule::Redistributed
                } else {
                    OperatorStateRule::Combined
                }
            }),
            [key("same", 0), key("same", 1)].into()
        );
    }

    #[test]
    fn redistributed_state_goes_to_every_subtask_at_any_parallelism() {
        let input = input(2);
        let all = vec![(0, vec![0]), (1, vec![1])];
        assert_eq!(
            input.operator_state_for("out", 1, 2, OperatorStateRule::Redistributed),
            RestoredOperatorState {
                own: Some(vec![1]),
                rescaled: all.clone()
            }
        );
        for (subtask, parallelism) in [(2, 3), (0, 1)] {
            assert_eq!(
                input.operator_state_for("out", subtask, parallelism, OperatorStateRule::Redistributed),
                RestoredOperatorState {
                    own: None,
                    rescaled: all.clone()
                }
            );
        }
        assert_eq!(
            input.operator_state_for("other", 0, 2, OperatorStateRule::Redistributed),
            RestoredOperatorState::default()
        );
    }

    #[test]
    fn replicated_state_comes_from_old_subtask_zero_at_any_parallelism() {
        let input = input(2);
        for (subtask, parallelism) in [(0, 2), (1, 2), (2, 3), (0, 1)] {
            assert_eq!(
                input.operator_state_for("out", subtask, parallelism, OperatorStateRule::Replicated),
                RestoredOperatorState {
                    own: Some(vec![0]),
                    rescaled: Vec::new()
                }
            );
        }
        assert_eq!(
            input.operator_state_for("other", 1, 2, OperatorStateRule::Replicated),
            RestoredOperatorState::default()
        );
    }

    #[test]
    fn four_to_two_gives_each_sink_subtask_the_committables_of_two() {
        let input = input(4);
        assert_eq!(
            input.operator_state_for("out", 1, 2, OperatorStateRule::Sink).rescaled,
            vec![(1, vec![1]), (3, vec![3])]
        );
        // Other operators see every old subtask's state.
        assert_eq!(
            input
                .operator_state_for("out", 1, 2, OperatorStateRule::Combined)
                .rescaled
                .len(),
            4
        );
        let Some(KeyedRestore::Rescaled(parts)) = input.keyed_restore("count", 0, 2, 128) else {
            panic!("rescaled");
        };
        let dirs: Vec<_> = parts.iter().map(|p| p.dir.clone()).collect();
        assert_eq!(dirs, vec![PathBuf::from("count-0"), PathBuf::from("count-1")]);
    }
}
