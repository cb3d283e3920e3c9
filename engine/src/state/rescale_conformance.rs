//! The conformance check of [`StateBackend::open_store_rescaled`]: a property test over random
//! key sets and parallelism changes, run against every backend (see `conformance`).

use super::backend::{SnapshotPart, StateBackend, StoreScope};
use super::conformance::scan_all;
use super::key_group::{key_group_of, subtask_for_key_group, KeyGroupRange};
use super::layout::{key_group_of_entry, user_state_prefix, watermark_key};
use super::rescale::assign_keyed_state;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

fn scope(operator: &str, subtask: usize, key_groups: KeyGroupRange) -> StoreScope {
    StoreScope {
        job: "rescale job".into(),
        operator: operator.into(),
        subtask,
        key_groups,
    }
}

/// The entries of a keyed operator holding `keys`: a value per key, and a watermark entry in
/// every key group that holds a key (as a snapshot writes them).
fn entries_of(keys: &[Vec<u8>], max: usize) -> Entries {
    let mut entries = Entries::new();
    for (i, key) in keys.iter().enumerate() {
        let kg = key_group_of(key, max);
        entries.insert(user_state_prefix(kg, "count", key), format!("value {i}").into_bytes());
        entries.insert(watermark_key(kg).to_vec(), kg.to_be_bytes().to_vec());
    }
    entries
}

/// For random keys and any `p -> p'`: the union of the new subtasks' stores is the old state,
/// and every entry lands in exactly the new subtask that owns its key group; a rescaled store
/// snapshots and restores like any other.
pub fn rescale_moves_every_key_to_the_owner_of_its_key_group(backend: &dyn StateBackend, root: &Path) {
    let config = Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    };
    let run = Cell::new(0usize);
    let mut runner = TestRunner::new(config);
    let keys = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..200);
    let shape = (prop::sample::select(vec![4usize, 7, 128]), 1usize..=4, 1usize..=4);
    let result = runner.run(&(keys, shape), |(keys, (max, old_p, new_p))| {
        let (old_p, new_p) = (old_p.min(max), new_p.min(max));
        run.set(run.get() + 1);
        let dir = root.join(format!("rescale-{}", run.get()));
        let state = entries_of(&keys, max);
        let mut snapshots = Vec::new();
        for i in 0..old_p {
            let range = KeyGroupRange::for_subtask(i, old_p, max);
            let mut store = backend.open_store(&scope("old", i, range), None).unwrap();
            for (k, v) in state.range(range.start.to_be_bytes().to_vec()..) {
                if !range.contains(key_group_of_entry(k)) {
                    break;
                }
                store.put(k, v).unwrap();
            }
            let snap = dir.join(format!("old-{i}"));
            store.snapshot_to(&snap).unwrap();
            snapshots.push(snap);
        }
        let mut union = Entries::new();
        for j in 0..new_p {
            let a = assign_keyed_state(j, new_p, old_p, max);
            let parts: Vec<SnapshotPart> = a
                .sources
                .iter()
                .map(|t| SnapshotPart {
                    dir: snapshots[t.old_subtask].clone(),
                    taken: t.taken,
                })
                .collect();
            let new_scope = scope("new", j, a.key_groups);
            let mut store = backend.open_store_rescaled(&new_scope, &parts).unwrap();
            let found = scan_all(store.as_mut(), b"");
            // Snapshotted and restored again: the same entries.
            let snap = dir.join(format!("new-{j}"));
            store.snapshot_to(&snap).unwrap();
            drop(store);
            let mut again = backend.open_store(&new_scope, Some(&snap)).unwrap();
            prop_assert_eq!(&scan_all(again.as_mut(), b""), &found, "subtask {} restored again", j);
            for (k, v) in found {
                let kg = key_group_of_entry(&k);
                prop_assert_eq!(
                    subtask_for_key_group(kg, max, new_p),
                    j,
                    "key group {} of {}: {} -> {}",
                    kg,
                    max,
                    old_p,
                    new_p
                );
                prop_assert!(union.insert(k, v).is_none(), "an entry in two subtasks");
            }
        }
        prop_assert_eq!(&union, &state, "{} -> {} with {} key groups", old_p, new_p, max);
        let _ = std::fs::remove_dir_all(&dir);
        Ok::<(), TestCaseError>(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A store that is asked to take a snapshot that does not exist fails with a `Checkpoint` error.
pub fn rescale_from_a_missing_snapshot_fails(backend: &dyn StateBackend, root: &Path) {
    let parts = [SnapshotPart {
        dir: root.join("nothing here"),
        taken: KeyGroupRange { start: 0, end: 3 },
    }];
    let e = match backend.open_store_rescaled(&scope("new", 0, KeyGroupRange { start: 0, end: 3 }), &parts) {
        Ok(_) => panic!("a missing snapshot must fail the restore"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), crate::ErrorKind::Checkpoint, "{e}");
}
