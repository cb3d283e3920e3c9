//! The in-memory state backend: a hash map per store for point operations, with its keys also
//! kept in order for prefix scans and snapshots, snapshotted to a single file.
//!
//! Suited to jobs whose state fits comfortably in memory. Nothing survives a crash except what
//! [`KeyedStore::snapshot_to`] wrote: `state.bin` ([`snapshot_file`]).

mod snapshot_file;
mod store;

use super::backend::{key_group_start, KeyedStore, SnapshotPart, StateBackend, StoreScope};
use super::KeyGroupRange;
use crate::Result;
use snapshot_file::load;
use std::collections::BTreeMap;
use std::path::Path;
use store::MemoryStore;

/// A state backend keeping every store in memory: a crash loses everything not yet copied out
/// by a snapshot.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {}

impl MemoryBackend {
    /// A memory backend.
    pub fn new() -> Self {
        MemoryBackend {}
    }
}

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn open_store(&self, scope: &StoreScope, restore_from: Option<&Path>) -> Result<Box<dyn KeyedStore>> {
        let map = match restore_from {
            None => BTreeMap::new(),
            Some(dir) => load(dir).map_err(|e| {
                e.context(format!(
                    "restoring memory store {} from {}",
                    scope.relative_dir().display(),
                    dir.display()
                ))
            })?,
        };
        Ok(Box::new(MemoryStore::of(map)))
    }

    fn open_store_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<Box<dyn KeyedStore>> {
        let mut map = BTreeMap::new();
        for part in parts {
            let mut taken = load(&part.dir).map_err(|e| {
                e.context(format!(
                    "restoring memory store {} from {} (key groups {}..={})",
                    scope.relative_dir().display(),
                    part.dir.display(),
                    part.taken.start,
                    part.taken.end
                ))
            })?;
            map.append(&mut key_group_range(&mut taken, part.taken));
        }
        Ok(Box::new(MemoryStore::of(map)))
    }
}

/// Takes the entries of the key groups of `range` out of `map`.
fn key_group_range(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, range: KeyGroupRange) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut taken = map.split_off(&key_group_start(range.start as usize)[..]);
    taken.split_off(&key_group_start(range.end as usize + 1)[..]);
    taken
}

#[cfg(test)]
mod tests {
    use super::snapshot_file::{KIND, SNAPSHOT_FILE};
    use super::*;
    use crate::state::framed::frame;
    use crate::{Error, ErrorKind};
    use std::fs;
    use std::path::PathBuf;

    super::super::conformance::conformance_tests!(|_root: &Path| MemoryBackend::new());

    fn scope() -> StoreScope {
        StoreScope {
            job: "job".into(),
            operator: "op".into(),
            subtask: 0,
            key_groups: crate::state::KeyGroupRange { start: 0, end: 127 },
        }
    }

    fn snapshot_of(entries: &[(&[u8], &[u8])], dir: &Path) {
        let mut store = MemoryBackend::new().open_store(&scope(), None).unwrap();
        for (k, v) in entries {
            store.put(k, v).unwrap();
        }
        assert_eq!(store.snapshot_to(dir).unwrap(), vec![PathBuf::from(SNAPSHOT_FILE)]);
    }

    fn restore_err(dir: &Path) -> Error {
        match MemoryBackend::new().open_store(&scope(), Some(dir)) {
            Ok(_) => panic!("restore from {} should fail", dir.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn corrupt_snapshots_are_rejected_with_checkpoint_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snap");
        snapshot_of(&[(b"k1", b"v1"), (b"k2", b"v2")], &dir);
        let file = dir.join(SNAPSHOT_FILE);
        let good = fs::read(&file).unwrap();

        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut magic = good.clone();
        magic[0] ^= 1;
        cases.push(("bad magic", magic));
        let mut version = good.clone();
        version[8] = 99;
        cases.push(("format version 99", version));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        cases.push(("checksum", flipped));
        cases.push(("truncated", good[..good.len() - 1].to_vec()));
        cases.push(("shorter than its header", good[..5].to_vec()));
        for (expected, bytes) in cases {
            fs::write(&file, &bytes).unwrap();
            let e = restore_err(&dir);
            assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
            assert!(e.to_string().contains(expected), "{e} should mention {expected}");
        }

        // Valid header and checksum around a payload that is not an encoded map.
        fs::write(&file, frame(KIND, &[0xFFu8; 7])).unwrap();
        let e = restore_err(&dir);
        assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
        assert!(e.to_string().contains("cannot decode"), "{e}");

        fs::remove_file(&file).unwrap();
        assert_eq!(restore_err(&dir).kind(), ErrorKind::Checkpoint);
        assert_eq!(restore_err(&tmp.path().join("missing")).kind(), ErrorKind::Checkpoint);
    }

    #[test]
    fn snapshot_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/snap");
        snapshot_of(&[(b"k", b"v")], &dir);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SNAPSHOT_FILE)]);
    }

    #[test]
    fn approximate_size_is_exact() {
        let mut store = MemoryBackend::new().open_store(&scope(), None).unwrap();
        store.put(b"ab", b"xyz").unwrap();
        store.put(b"c", b"").unwrap();
        assert_eq!(store.approximate_size().unwrap(), 6);
        store.put(b"ab", b"x").unwrap();
        assert_eq!(store.approximate_size().unwrap(), 4);
        store.delete(b"c").unwrap();
        store.delete(b"missing").unwrap();
        assert_eq!(store.approximate_size().unwrap(), 3);
        store.delete_prefix(b"").unwrap();
        assert_eq!(store.approximate_size().unwrap(), 0);
    }
}
