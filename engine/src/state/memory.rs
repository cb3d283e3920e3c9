//! The in-memory state backend: a `BTreeMap` per store, snapshotted to a single file.
//!
//! Suited to tests and jobs whose state fits comfortably in memory. Nothing survives a crash
//! except what [`KeyedStore::snapshot_to`] wrote: `state.bin`, a header (magic, format version,
//! payload length, CRC32C of the payload) followed by the bincode-encoded entries.

use super::backend::{key_group_start, KeyedStore, SnapshotPart, StateBackend, StoreScope};
use super::KeyGroupRange;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// Name of the single file a memory snapshot consists of.
const SNAPSHOT_FILE: &str = "state.bin";
/// First bytes of a snapshot file.
const MAGIC: &[u8; 8] = b"WEIRMEM\0";
/// Version of the snapshot format written by this code.
const FORMAT_VERSION: u32 = 1;
/// Header length: magic, version (u32), payload length (u64), payload CRC32C (u32).
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

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

/// One subtask's state held in memory.
#[derive(Debug)]
struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Sum of key and value lengths of all entries.
    size: u64,
}

impl MemoryStore {
    fn of(map: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let size = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        MemoryStore { map, size }
    }

    /// Entries whose key starts with `prefix`, in order.
    fn prefix_range<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
        self.map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }
}

impl KeyedStore for MemoryStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(v) = self.map.get_mut(key) {
            self.size = self.size - v.len() as u64 + value.len() as u64;
            v.clear();
            v.extend_from_slice(value);
        } else {
            self.size += (key.len() + value.len()) as u64;
            self.map.insert(key.to_vec(), value.to_vec());
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if let Some(v) = self.map.remove(key) {
            self.size -= (key.len() + v.len()) as u64;
        }
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        for (k, v) in self.prefix_range(prefix) {
            if !f(k, v)? {
                break;
            }
        }
        Ok(())
    }

    fn scan_prefix_from(
        &mut self,
        prefix: &[u8],
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let start = from.max(prefix);
        let entries = self
            .map
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in entries {
            if !f(k, v)? {
                break;
            }
        }
        Ok(())
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        let keys: Vec<Vec<u8>> = self.prefix_range(prefix).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.delete(&k)?;
        }
        Ok(())
    }

    fn approximate_size(&mut self) -> Result<u64> {
        Ok(self.size)
    }

    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        save(&self.map, dir).map_err(|e| e.context(format!("writing memory snapshot to {}", dir.display())))?;
        Ok(vec![PathBuf::from(SNAPSHOT_FILE)])
    }
}

/// Writes `map` to `dir/state.bin`, creating `dir` (which must not exist), and makes the file,
/// `dir` and its entry in the parent durable. The file is written under a temporary name and
/// renamed, so `state.bin` is never seen half-written.
fn save(map: &BTreeMap<Vec<u8>, Vec<u8>>, dir: &Path) -> Result<()> {
    let failed = |what: &str, e: std::io::Error| Error::checkpoint(format!("{what} {}", dir.display())).with_source(e);
    let payload = bincode::encode_to_vec(map, bincode::config::standard())
        .map_err(|e| Error::checkpoint("encoding memory state").with_source(e))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);

    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        fs::create_dir_all(parent).map_err(|e| failed("creating the parent of", e))?;
    }
    fs::create_dir(dir).map_err(|e| failed("creating", e))?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| failed("creating a file in", e))?;
    file.write_all(&bytes).map_err(|e| failed("writing into", e))?;
    file.sync_all().map_err(|e| failed("syncing a file in", e))?;
    drop(file);
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| failed("renaming a file in", e))?;
    sync_dir(dir).map_err(|e| failed("syncing", e))?;
    if let Some(parent) = parent {
        sync_dir(parent).map_err(|e| failed("syncing the parent of", e))?;
    }
    Ok(())
}

/// Reads the map written by [`save`] into `dir`.
fn load(dir: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = fs::read(&path).map_err(|e| Error::checkpoint(format!("reading {}", path.display())).with_source(e))?;
    let bad = |why: &str| Error::checkpoint(format!("{} is not a usable memory snapshot: {why}", path.display()));
    if bytes.len() < HEADER_LEN {
        return Err(bad("shorter than its header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("bad magic"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(&format!("format version {version}, expected {FORMAT_VERSION}")));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(bad(&format!("payload is {} bytes, header says {len}", payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch"));
    }
    let (map, read) = bincode::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| bad("cannot decode entries").with_source(e))?;
    if read != payload.len() {
        return Err(bad("trailing bytes after the entries"));
    }
    Ok(map)
}

/// Makes the entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

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
        cases.push(("payload is", good[..good.len() - 1].to_vec()));
        cases.push(("shorter than its header", good[..5].to_vec()));
        for (expected, bytes) in cases {
            fs::write(&file, &bytes).unwrap();
            let e = restore_err(&dir);
            assert_eq!(e.kind(), ErrorKind::Checkpoint, "{e}");
            assert!(e.to_string().contains(expected), "{e} should mention {expected}");
        }

        // Valid header and checksum around a payload that is not an encoded map.
        let junk = [0xFFu8; 7];
        let mut bytes = Vec::from(&MAGIC[..]);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(junk.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&junk).to_le_bytes());
        bytes.extend_from_slice(&junk);
        fs::write(&file, &bytes).unwrap();
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
