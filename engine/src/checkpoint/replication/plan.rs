//! What to copy and what to delete in a replica: decisions only, no I/O.

use crate::checkpoint::metadata::{CheckpointMetadata, StoredFile};
use crate::message::CheckpointId;
use std::collections::{BTreeMap, HashSet};

/// The files of `meta` that the replica does not hold (`present`: keys it holds, verified).
pub(crate) fn files_to_copy<'m>(meta: &'m CheckpointMetadata, present: &HashSet<String>) -> Vec<&'m StoredFile> {
    let mut seen = HashSet::new();
    meta.files()
        .filter(|f| !present.contains(&f.key) && seen.insert(f.key.as_str()))
        .collect()
}

/// What retention removes from a replica that holds `retained` (complete, with metadata)
/// after `newest` was published, keeping `keep` checkpoints: the checkpoints to delete and
/// the shared keys (from `shared`) no kept checkpoint references.
pub(crate) fn retention(
    retained: &BTreeMap<CheckpointId, CheckpointMetadata>,
    keep: usize,
    shared: &[String],
) -> (Vec<CheckpointId>, Vec<String>) {
    let keep = keep.max(1);
    let drop: Vec<CheckpointId> = retained
        .keys()
        .copied()
        .take(retained.len().saturating_sub(keep))
        .collect();
    let referenced: HashSet<&str> = retained
        .iter()
        .filter(|(id, _)| !drop.contains(id))
        .flat_map(|(_, m)| m.files().map(|f| f.key.as_str()))
        .collect();
    let unreferenced = shared
        .iter()
        .filter(|k| !referenced.contains(k.as_str()))
        .cloned()
        .collect();
    (drop, unreferenced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{OperatorState, SubtaskState};
    use crate::state::KeyGroupRange;

    fn file(key: &str) -> StoredFile {
        StoredFile {
            name: key.rsplit('/').next().unwrap().to_string(),
            key: key.to_string(),
            size: 1,
            crc32c: 7,
        }
    }

    fn meta(id: u64, keys: &[&str]) -> CheckpointMetadata {
        CheckpointMetadata {
            version: crate::checkpoint::metadata::FORMAT_VERSION,
            job: "j".into(),
            id: CheckpointId::new(id),
            owner_epoch: Some(1),
            kind: crate::message::BarrierKind::Checkpoint,
            max_parallelism: 128,
            sources: vec![],
            stats: Default::default(),
            operators: vec![OperatorState {
                name: "op".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange::for_subtask(0, 1, 128),
                    keyed_files: keys.iter().map(|k| file(k)).collect(),
                    operator_state: None,
                }],
            }],
        }
    }

    #[test]
    fn only_files_the_replica_lacks_are_copied_once() {
        let m = meta(
            3,
            &[
                "shared/op/0/1-a.sst",
                "shared/op/0/3-b.sst",
                "chk-3/op/0/MANIFEST",
                "shared/op/0/1-a.sst",
            ],
        );
        let present: HashSet<String> = ["shared/op/0/1-a.sst".to_string()].into();
        let keys: Vec<&str> = files_to_copy(&m, &present).iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, vec!["shared/op/0/3-b.sst", "chk-3/op/0/MANIFEST"]);
    }

    #[test]
    fn retention_keeps_the_newest_and_every_file_they_reference() {
        let retained: BTreeMap<CheckpointId, CheckpointMetadata> = [
            (
                CheckpointId::new(1),
                meta(1, &["shared/op/0/1-a.sst", "shared/op/0/1-old.sst"]),
            ),
            (
                CheckpointId::new(2),
                meta(2, &["shared/op/0/1-a.sst", "shared/op/0/2-b.sst"]),
            ),
            (
                CheckpointId::new(3),
                meta(3, &["shared/op/0/1-a.sst", "shared/op/0/3-c.sst"]),
            ),
        ]
        .into();
        let shared: Vec<String> = ["1-a", "1-old", "2-b", "3-c"]
            .iter()
            .map(|n| format!("shared/op/0/{n}.sst"))
            .collect();
        let (drop, unreferenced) = retention(&retained, 2, &shared);
        assert_eq!(drop, vec![CheckpointId::new(1)]);
        assert_eq!(unreferenced, vec!["shared/op/0/1-old.sst".to_string()]);
        let (drop, unreferenced) = retention(&retained, 0, &shared);
        assert_eq!(
            drop,
            vec![CheckpointId::new(1), CheckpointId::new(2)],
            "the newest is always kept"
        );
        assert_eq!(unreferenced.len(), 2);
    }
}
