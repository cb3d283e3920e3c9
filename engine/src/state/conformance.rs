//! A conformance suite every [`StateBackend`] must pass.
//!
//! Each check is a function taking the backend under test and a scratch directory. A backend's
//! test module instantiates all of them with
//! `super::super::conformance::conformance_tests!(|root: &Path| make_backend(root));`.

use super::backend::{KeyedStore, StateBackend, StoreScope};
use super::key_group::KeyGroupRange;
use crate::{Error, ErrorKind, Result};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Expands to one `#[test]` per conformance check, in a module named `conformance`. `$make` is
/// called with a fresh temporary directory and returns the backend under test.
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::state::conformance::conformance_tests!(@tests $make;
            get_put_delete_overwrite,
            scan_prefix_is_ordered_and_exactly_bounded,
            scan_prefix_stops_early_and_propagates_errors,
            delete_prefix_leaves_neighbours_intact,
            restore_sees_exactly_the_snapshot,
            snapshot_is_immutable_and_self_contained,
            open_without_restore_starts_empty,
            snapshot_into_existing_dir_fails,
            restore_from_unusable_dir_fails,
            approximate_size_tracks_writes,
            random_operations_match_a_btreemap,
            rescale_moves_every_key_to_the_owner_of_its_key_group,
            rescale_from_a_missing_snapshot_fails,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        mod conformance {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let root = tempfile::tempdir().unwrap();
                    let backend = ($make)(root.path());
                    $crate::state::conformance::$name(&backend, root.path());
                }
            )*
        }
    };
}
pub use super::rescale_conformance::{
    rescale_from_a_missing_snapshot_fails, rescale_moves_every_key_to_the_owner_of_its_key_group,
};
pub(crate) use conformance_tests;

/// A scope for tests.
pub fn scope(subtask: usize) -> StoreScope {
    StoreScope {
        job: "conformance job".into(),
        operator: "op/1".into(),
        subtask,
        key_groups: KeyGroupRange { start: 0, end: 127 },
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys chosen to sit on prefix boundaries: empty, 0x00, 0xFF runs, neighbouring prefixes.
fn tricky_keys() -> Vec<Vec<u8>> {
    let raw: &[&[u8]] = &[
        b"",
        &[0x00],
        &[0x00, 0x00],
        &[0x01],
        &[0x01, 0x00],
        &[0x01, 0x7F],
        &[0x01, 0xFF],
        &[0x01, 0xFF, 0xFF],
        &[0x02],
        &[0x02, 0x00],
        &[0xFE, 0xFF],
        &[0xFF],
        &[0xFF, 0x00],
        &[0xFF, 0xFF],
        &[0xFF, 0xFF, 0x01],
        &[0xFF, 0xFF, 0xFF],
        b"a",
        b"ab",
        b"abc",
        b"abd",
        b"ac",
        b"b",
    ];
    raw.iter().map(|k| k.to_vec()).collect()
}

/// Prefixes to scan and delete with: every tricky key, its one-byte extensions and a few that
/// match nothing.
fn tricky_prefixes() -> Vec<Vec<u8>> {
    let mut prefixes = tricky_keys();
    for k in tricky_keys() {
        for b in [0x00, 0xFF] {
            let mut p = k.clone();
            p.push(b);
            prefixes.push(p);
        }
    }
    prefixes.push(vec![0xFF, 0xFF, 0xFF, 0xFF]);
    prefixes.push(b"abcd".to_vec());
    prefixes.push(vec![0x03]);
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// A store holding every tricky key (inserted in a scrambled order), and the matching model.
fn tricky_store(backend: &dyn StateBackend, subtask: usize) -> (Box<dyn KeyedStore>, Model) {
    let mut store = backend.open_store(&scope(subtask), None).unwrap();
    let mut model = Model::new();
    let mut keys = tricky_keys();
    keys.reverse();
    keys.rotate_left(7);
    for (i, k) in keys.into_iter().enumerate() {
        let v = format!("value {i}").into_bytes();
        store.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    (store, model)
}

/// Every entry of `store` under `prefix`, in visit order.
pub fn scan_all(store: &mut dyn KeyedStore, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan_prefix(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
    out
}

fn model_scan(model: &Model, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Every file under `dir` (relative path and content), sorted by path.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let content = std::fs::read(&path).unwrap();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), content));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Snapshots `store` into `dir` and checks that the returned list is exactly the files in `dir`.
fn snapshot(store: &mut dyn KeyedStore, dir: &Path) {
    let mut listed = store.snapshot_to(dir).unwrap();
    assert!(!listed.is_empty(), "a snapshot has at least one file");
    assert!(listed.iter().all(|p| p.is_relative()), "{listed:?}");
    listed.sort();
    let found: Vec<PathBuf> = fingerprint(dir).into_iter().map(|(p, _)| p).collect();
    assert_eq!(listed, found, "snapshot_to must list exactly the files it wrote");
}

/// Point reads and writes, including empty keys and values.
pub fn get_put_delete_overwrite(backend: &dyn StateBackend, _root: &Path) {
    let mut store = backend.open_store(&scope(0), None).unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    store.put(b"k", b"v1").unwrap();
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    store.put(b"k", b"a longer second value").unwrap();
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"a longer second value"[..]));
    store.put(b"k", b"").unwrap();
    assert_eq!(
        store.get(b"k").unwrap(),
        Some(Vec::new()),
        "an empty value is not an absent one"
    );
    store.put(b"", b"empty key").unwrap();
    assert_eq!(store.get(b"").unwrap().as_deref(), Some(&b"empty key"[..]));
    assert_eq!(store.get(b"k\0").unwrap(), None);
    store.delete(b"k").unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    store.delete(b"k").unwrap();
    store.delete(b"never written").unwrap();
    assert_eq!(store.get(b"").unwrap().as_deref(), Some(&b"empty key"[..]));
    let big = vec![0xABu8; 1 << 20];
    store.put(b"big", &big).unwrap();
    assert_eq!(store.get(b"big").unwrap(), Some(big));
}

/// `scan_prefix` visits exactly the keys starting with the prefix, in ascending order.
pub fn scan_prefix_is_ordered_and_exactly_bounded(backend: &dyn StateBackend, _root: &Path) {
    let (mut store, model) = tricky_store(backend, 0);
    for prefix in tricky_prefixes() {
        assert_eq!(
            scan_all(&mut *store, &prefix),
            model_scan(&model, &prefix),
            "prefix {prefix:02x?}"
        );
    }
    assert_eq!(
        scan_all(&mut *store, b"").len(),
        model.len(),
        "the empty prefix scans everything"
    );
}

/// Returning `Ok(false)` stops a scan; an error stops it and is returned.
pub fn scan_prefix_stops_early_and_propagates_errors(backend: &dyn StateBackend, _root: &Path) {
    let (mut store, model) = tricky_store(backend, 0);
    let mut seen = Vec::new();
    store
        .scan_prefix(b"", &mut |k, _| {
            seen.push(k.to_vec());
            Ok(seen.len() < 3)
        })
        .unwrap();
    let expected: Vec<Vec<u8>> = model.keys().take(3).cloned().collect();
    assert_eq!(seen, expected);

    let mut calls = 0;
    let result: Result<()> = store.scan_prefix(&[0xFF], &mut |_, _| {
        calls += 1;
        Err(Error::data("stop here"))
    });
    let e = result.expect_err("the callback's error is returned");
    assert_eq!(e.kind(), ErrorKind::Data);
    assert_eq!(e.message(), "stop here");
    assert_eq!(calls, 1);

    let mut none = 0;
    store
        .scan_prefix(&[0x03], &mut |_, _| {
            none += 1;
            Ok(true)
        })
        .unwrap();
    assert_eq!(none, 0);
}

/// `delete_prefix` removes exactly the keys starting with the prefix.
pub fn delete_prefix_leaves_neighbours_intact(backend: &dyn StateBackend, _root: &Path) {
    for prefix in tricky_prefixes() {
        let (mut store, mut model) = tricky_store(backend, 0);
        store.delete_prefix(&prefix).unwrap();
        model.retain(|k, _| !k.starts_with(&prefix));
        assert_eq!(
            scan_all(&mut *store, b""),
            model_scan(&model, b""),
            "after delete_prefix {prefix:02x?}"
        );
        for k in tricky_keys() {
            assert_eq!(
                store.get(&k).unwrap(),
                model.get(&k).cloned(),
                "key {k:02x?} after {prefix:02x?}"
            );
        }
        // Writing again under a deleted prefix works.
        store.put(&prefix, b"again").unwrap();
        assert_eq!(store.get(&prefix).unwrap().as_deref(), Some(&b"again"[..]));
    }
}

/// Restoring a snapshot yields its content, not the writes made after it.
pub fn restore_sees_exactly_the_snapshot(backend: &dyn StateBackend, root: &Path) {
    let (mut store, model) = tricky_store(backend, 0);
    let snap = root.join("snapshots").join("1");
    snapshot(&mut *store, &snap);

    store.put(b"after", b"snapshot").unwrap();
    store.put(b"a", b"overwritten").unwrap();
    store.delete(b"ab").unwrap();
    store.delete_prefix(&[0xFF]).unwrap();
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"snapshot"[..]));

    // Into another scope while the original store is still open.
    let mut other = backend.open_store(&scope(1), Some(&snap)).unwrap();
    assert_eq!(scan_all(&mut *other, b""), model_scan(&model, b""));
    assert_eq!(other.get(b"after").unwrap(), None);
    drop(other);

    // Into the same scope, replacing the store that moved on.
    drop(store);
    let mut restored = backend.open_store(&scope(0), Some(&snap)).unwrap();
    assert_eq!(scan_all(&mut *restored, b""), model_scan(&model, b""));
    for prefix in tricky_prefixes() {
        assert_eq!(scan_all(&mut *restored, &prefix), model_scan(&model, &prefix));
    }
    // The restored store is writable and can itself be snapshotted and restored.
    restored.put(b"second", b"generation").unwrap();
    let snap2 = root.join("snapshots").join("2");
    snapshot(&mut *restored, &snap2);
    drop(restored);
    let mut again = backend.open_store(&scope(0), Some(&snap2)).unwrap();
    let mut expected = model.clone();
    expected.insert(b"second".to_vec(), b"generation".to_vec());
    assert_eq!(scan_all(&mut *again, b""), model_scan(&expected, b""));
}

/// A snapshot directory never changes after `snapshot_to` returns, whatever happens to the store
/// it came from or to stores restored from it, and it outlives their working directories.
pub fn snapshot_is_immutable_and_self_contained(backend: &dyn StateBackend, root: &Path) {
    let mut store = backend.open_store(&scope(0), None).unwrap();
    let mut model = Model::new();
    let value = |round: usize, i: usize| format!("{round:04}-{i:06}-{}", "x".repeat(80)).into_bytes();
    for i in 0..500 {
        let k = format!("key-{:06}", i * 7 % 500).into_bytes();
        store.put(&k, &value(0, i)).unwrap();
        model.insert(k, value(0, i));
    }
    let snap = root.join("snapshots").join("immutable");
    snapshot(&mut *store, &snap);
    let before = fingerprint(&snap);

    // Many overwrites and deletes (enough to flush and compact a small RocksDB), and more
    // snapshots, which flush.
    for round in 1..=12 {
        for i in 0..500 {
            store.put(format!("key-{i:06}").as_bytes(), &value(round, i)).unwrap();
        }
        store.delete_prefix(format!("key-{:04}", round).as_bytes()).unwrap();
        if round % 4 == 0 {
            snapshot(&mut *store, &root.join("snapshots").join(format!("later-{round}")));
        }
    }
    assert_eq!(fingerprint(&snap), before, "later writes changed the snapshot");

    // The working directory of the original scope is discarded on reopen.
    drop(store);
    drop(backend.open_store(&scope(0), None).unwrap());

    // A store restored from it moves on; the snapshot does not.
    let mut restored = backend.open_store(&scope(0), Some(&snap)).unwrap();
    assert_eq!(scan_all(&mut *restored, b""), model_scan(&model, b""));
    for round in 20..30 {
        for i in 0..500 {
            restored
                .put(format!("key-{i:06}").as_bytes(), &value(round, i))
                .unwrap();
        }
        restored.delete_prefix(b"key-0001").unwrap();
    }
    snapshot(&mut *restored, &root.join("snapshots").join("from-restored"));
    drop(restored);
    drop(backend.open_store(&scope(0), None).unwrap());
    assert_eq!(fingerprint(&snap), before, "a restored store changed the snapshot");

    let mut again = backend.open_store(&scope(2), Some(&snap)).unwrap();
    assert_eq!(scan_all(&mut *again, b""), model_scan(&model, b""));
}

/// Opening without a restore directory yields an empty store, whatever an earlier store of the
/// same scope held.
pub fn open_without_restore_starts_empty(backend: &dyn StateBackend, root: &Path) {
    let (mut store, _) = tricky_store(backend, 0);
    let snap = root.join("snapshots").join("s");
    snapshot(&mut *store, &snap);
    drop(store);
    let mut fresh = backend.open_store(&scope(0), None).unwrap();
    assert!(
        scan_all(&mut *fresh, b"").is_empty(),
        "stale state leaked into a fresh store"
    );
    assert_eq!(fresh.get(b"a").unwrap(), None);
    fresh.put(b"only", b"this").unwrap();
    drop(fresh);

    let restored = backend.open_store(&scope(0), Some(&snap)).unwrap();
    drop(restored);
    let mut fresh = backend.open_store(&scope(0), None).unwrap();
    assert!(
        scan_all(&mut *fresh, b"").is_empty(),
        "restored state leaked into a fresh store"
    );
}

/// `snapshot_to` refuses a directory that already exists.
pub fn snapshot_into_existing_dir_fails(backend: &dyn StateBackend, root: &Path) {
    let (mut store, _) = tricky_store(backend, 0);
    let dir = root.join("exists");
    std::fs::create_dir_all(&dir).unwrap();
    let e = store.snapshot_to(&dir).expect_err("the directory exists");
    assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
}

/// Restoring from a missing or empty directory is a `Checkpoint` error.
pub fn restore_from_unusable_dir_fails(backend: &dyn StateBackend, root: &Path) {
    for dir in [root.join("missing"), root.join("empty")] {
        if dir.ends_with("empty") {
            std::fs::create_dir_all(&dir).unwrap();
        }
        match backend.open_store(&scope(0), Some(&dir)) {
            Ok(_) => panic!("restoring from {} should fail", dir.display()),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}"),
        }
    }
}

/// `approximate_size` is zero for an empty store and grows with the data written.
pub fn approximate_size_tracks_writes(backend: &dyn StateBackend, _root: &Path) {
    let mut store = backend.open_store(&scope(0), None).unwrap();
    let empty = store.approximate_size().unwrap();
    assert!(empty < 16 * 1024, "an empty store is small: {empty}");
    // Values that do not compress, since flushed data may be counted at its size on disk.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..1000u32 {
        let value: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        store.put(&i.to_be_bytes(), &value).unwrap();
    }
    let full = store.approximate_size().unwrap();
    assert!(full >= empty + 100_000, "1000 entries of 200 bytes: {empty} -> {full}");
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeletePrefix(Vec<u8>),
    Get(Vec<u8>),
    Scan(Vec<u8>, Option<usize>),
    SnapshotAndRestore,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0x00u8, 0x01, 0x7F, 0xFE, 0xFF]), 0..4)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key_strategy(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key_strategy().prop_map(Op::Delete),
        1 => key_strategy().prop_map(Op::DeletePrefix),
        2 => key_strategy().prop_map(Op::Get),
        2 => (key_strategy(), prop::option::of(1usize..4)).prop_map(|(p, n)| Op::Scan(p, n)),
        1 => Just(Op::SnapshotAndRestore),
    ]
}

/// Random sequences of operations behave as on a `BTreeMap`, across snapshots and restores.
pub fn random_operations_match_a_btreemap(backend: &dyn StateBackend, root: &Path) {
    let config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let run = Cell::new(0usize);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..60), |ops| {
        run.set(run.get() + 1);
        let mut store = backend.open_store(&scope(0), None).unwrap();
        let mut model = Model::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Put(k, v) => {
                    store.put(k, v).unwrap();
                    model.insert(k.clone(), v.clone());
                }
                Op::Delete(k) => {
                    store.delete(k).unwrap();
                    model.remove(k);
                }
                Op::DeletePrefix(p) => {
                    store.delete_prefix(p).unwrap();
                    model.retain(|k, _| !k.starts_with(p));
                }
                Op::Get(k) => prop_assert_eq!(store.get(k).unwrap(), model.get(k).cloned()),
                Op::Scan(p, limit) => {
                    let mut seen = Vec::new();
                    store
                        .scan_prefix(p, &mut |k, v| {
                            seen.push((k.to_vec(), v.to_vec()));
                            Ok(limit.is_none_or(|n| seen.len() < n))
                        })
                        .unwrap();
                    let mut expected = model_scan(&model, p);
                    expected.truncate(limit.unwrap_or(usize::MAX));
                    prop_assert_eq!(seen, expected, "scan {:02x?}", p);
                }
                Op::SnapshotAndRestore => {
                    let dir = root.join("prop").join(format!("{}-{i}", run.get()));
                    store.snapshot_to(&dir).unwrap();
                    drop(store);
                    store = backend.open_store(&scope(0), Some(&dir)).unwrap();
                }
            }
        }
        prop_assert_eq!(scan_all(&mut *store, b""), model_scan(&model, b""));
        Ok::<(), TestCaseError>(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
