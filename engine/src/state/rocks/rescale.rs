//! Opening a RocksDB store from snapshots of another parallelism (see
//! [`state::rescale`](crate::state::rescale)), as Flink does since its `ingestDB` restore.
//!
//! The base snapshot is restored whole (its SST files hard-linked, as a plain restore does),
//! and its files that hold only key groups outside the new range are unlinked. Each other part
//! comes in as whole SST files: those of its snapshot whose key range meets the part taken are
//! hard-linked into the store with their sequence numbers (RocksDB's ingestion of files
//! written by another database, see [`weir_rocksdb_ingest`]). Last, the key groups outside the
//! new range are dropped by range: `DeleteFilesInRange` unlinks the files that hold only such
//! key groups, and one range tombstone per side covers what the remaining files hold there
//! (never a delete per key).
//!
//! Linking keeps sequence numbers, so RocksDB admits a part's files only when their key range
//! overlaps nothing already in the store. Snapshots of subtasks of one checkpoint hold
//! disjoint key-group ranges, so that holds, except for a snapshot of a store that was itself
//! rescaled and not compacted since: its files and tombstones can reach into the key groups of
//! its neighbours, with entries there that only its own tombstones hide. Such a part (a file
//! that meets the part taken and reaches into key groups of the new range that other parts
//! bring, or a refusal by RocksDB) is rewritten instead: its entries of the part taken are
//! exported into one SST file (`SstFileWriter`) from a read-only copy of its snapshot and
//! ingested as newer than everything in the store.
//!
//! # After a crash
//! Nothing here is durable on its own: the working directory and the scratch directory are
//! deleted by the next open of the scope, and the snapshots read are never written (the copies
//! and the ingested files are hard links of immutable files, opened read-only).

use super::{copy_snapshot, RocksDbBackend, RocksDbStore};
use crate::state::backend::{key_group_start, SnapshotPart, StoreScope};
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use rocksdb::{IngestExternalFileOptions, ReadOptions, SstFileWriter, WriteBatch, DB};
use std::fs;
use std::path::{Path, PathBuf};
use weir_rocksdb_ingest::{ingest_db_files, live_files, LiveSst};

impl RocksDbBackend {
    /// Opens the store of `scope` from `parts`; see
    /// [`StateBackend::open_store_rescaled`](crate::state::StateBackend::open_store_rescaled).
    pub(super) fn open_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<RocksDbStore> {
        let Some((base, others)) = parts.split_first() else {
            return self.open(scope, None);
        };
        let range = scope.key_groups;
        let dropping = || format!("dropping the key groups outside {}..={}", range.start, range.end);
        let mut store = self.open(scope, Some(base.dir.as_path()))?;
        // Fewer files of the base for the other parts' files to overlap.
        drop_files_outside(&store.db, range).map_err(|e| e.context(dropping()))?;
        let work = self.work_dir(scope)?;
        let scratch = work.with_file_name(format!("{}.rescale", scope.subtask));
        let (mut linked, mut rewritten) = (0usize, 0usize);
        for part in others {
            let taking = || {
                format!(
                    "taking key groups {}..={} from the snapshot {}",
                    part.taken.start,
                    part.taken.end,
                    part.dir.display()
                )
            };
            remove_dir(&scratch)?;
            let result = take(self, &store.db, part, range, &scratch);
            remove_dir(&scratch)?;
            match result.map_err(|e| e.context(taking()))? {
                Taken::Linked => linked += 1,
                Taken::Rewritten => rewritten += 1,
            }
        }
        keep_only(&mut store, range).map_err(|e| e.context(dropping()))?;
        tracing::debug!(store = %work.display(), parts = parts.len(), linked, rewritten, "opened a rescaled store");
        Ok(store)
    }
}

/// How a part came into the store.
enum Taken {
    /// Its snapshot's files, hard-linked with their sequence numbers.
    Linked,
    /// Rewritten into one new SST file.
    Rewritten,
}

/// The first key of key group `kg`, or above every key group.
fn start_of(kg: usize) -> Vec<u8> {
    key_group_start(kg.min(MAX_KEY_GROUPS)).to_vec()
}

/// Whether the key range of `file` (range deletions included) meets key groups `range`.
fn meets(file: &LiveSst, range: KeyGroupRange) -> bool {
    file.largest_key >= start_of(range.start as usize) && file.smallest_key < start_of(range.end as usize + 1)
}

/// Unlinks the files of `db` that hold only key groups outside `range` (some may remain).
fn drop_files_outside(db: &DB, range: KeyGroupRange) -> Result<()> {
    let (lo, hi) = (start_of(range.start as usize), start_of(range.end as usize + 1));
    // Both ends are inclusive here. No entry key is exactly two bytes long (see `layout`): a
    // file ending at `lo` ends with a range tombstone, which covers keys below `lo` only.
    if range.start > 0 {
        db.delete_file_in_range(&[][..], &lo)?;
    }
    db.delete_file_in_range(&hi, &start_of(MAX_KEY_GROUPS))?;
    Ok(())
}

/// Drops every entry outside `range` from `store`: whole files, then one range tombstone per
/// side over what the remaining files hold there.
fn keep_only(store: &mut RocksDbStore, range: KeyGroupRange) -> Result<()> {
    drop_files_outside(&store.db, range)?;
    let (lo, hi) = (start_of(range.start as usize), start_of(range.end as usize + 1));
    let files = live_files(&store.db);
    let mut batch = WriteBatch::default();
    if let Some(min) = files.iter().map(|f| &f.smallest_key).min().filter(|min| **min < lo) {
        batch.delete_range(min.as_slice(), lo.as_slice());
    }
    if let Some(max) = files.iter().map(|f| &f.largest_key).max().filter(|max| **max >= hi) {
        let mut end = max.clone();
        end.push(0); // the smallest key above `max`
        batch.delete_range(hi.as_slice(), end.as_slice());
    }
    if batch.is_empty() {
        return Ok(());
    }
    Ok(store.db.write_opt(batch, &store.write)?)
}

/// Brings `part.taken` from the snapshot `part.dir` into `db`, the store of key groups
/// `range`: links its files when they hold no other key groups of `range` and RocksDB admits
/// them, rewrites the part otherwise. `scratch` must not exist.
fn take(backend: &RocksDbBackend, db: &DB, part: &SnapshotPart, range: KeyGroupRange, scratch: &Path) -> Result<Taken> {
    let copy = scratch.join("snapshot");
    fs::create_dir_all(&copy).map_err(|e| Error::io(format!("creating {}", copy.display()), e))?;
    copy_snapshot(&part.dir, &copy)?;
    let mut opts = backend.options();
    // Only the file list is needed unless the part is rewritten: open no table up front.
    opts.set_max_open_files(64);
    opts.set_skip_stats_update_on_db_open(true);
    let source = DB::open_for_read_only(&opts, &copy, false).map_err(|e| {
        Error::checkpoint(format!("opening the snapshot {} read-only", part.dir.display())).with_source(e)
    })?;
    let mut files: Vec<LiveSst> = live_files(&source)
        .into_iter()
        .filter(|f| meets(f, part.taken))
        .collect();
    if files.iter().all(|f| only_takes(f, part.taken, range)) {
        if files.is_empty() {
            return Ok(Taken::Linked);
        }
        // Older versions of a key first: the deepest level first, level 0 oldest first.
        files.sort_by_key(|f| (std::cmp::Reverse(f.level), f.largest_seqno, f.smallest_seqno));
        let paths: Vec<PathBuf> = files.iter().map(|f| part.dir.join(&f.name)).collect();
        match ingest_db_files(db, &paths) {
            Ok(()) => return Ok(Taken::Linked),
            Err(e) => {
                tracing::debug!(snapshot = %part.dir.display(), error = %e, "RocksDB refused the files; rewriting the part")
            }
        }
    } else {
        tracing::debug!(snapshot = %part.dir.display(), "files reach into key groups of other parts; rewriting the part");
    }
    rewrite(&opts, db, &source, part, scratch)?;
    Ok(Taken::Rewritten)
}

/// Whether linking `file` (which meets `taken`) brings nothing into the key groups of `range`
/// but those of `taken`: whatever it holds outside `range` is dropped at the end, but inside,
/// the other key groups come from other parts.
fn only_takes(file: &LiveSst, taken: KeyGroupRange, range: KeyGroupRange) -> bool {
    (taken.start == range.start || file.smallest_key >= start_of(taken.start as usize))
        && (taken.end == range.end || file.largest_key < start_of(taken.end as usize + 1))
}

/// Exports the entries of `part.taken` from `source` into an SST file under `scratch` and
/// ingests it into `db`, newer than everything there.
fn rewrite(opts: &rocksdb::Options, db: &DB, source: &DB, part: &SnapshotPart, scratch: &Path) -> Result<()> {
    let mut read = ReadOptions::default();
    read.set_iterate_lower_bound(start_of(part.taken.start as usize));
    read.set_iterate_upper_bound(start_of(part.taken.end as usize + 1));
    let mut it = source.raw_iterator_opt(read);
    it.seek_to_first();
    let sst = scratch.join("taken.sst");
    let mut writer = SstFileWriter::create(opts);
    writer.open(&sst)?;
    let mut entries = 0u64;
    while let Some((k, v)) = it.item() {
        writer.put(k, v)?;
        entries += 1;
        it.next();
    }
    it.status()?;
    if entries == 0 {
        return Ok(()); // an SST file must hold an entry; nothing to take
    }
    writer.finish()?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_opts(&ingest, vec![&sst])?;
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting {}", dir.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::backend::{KeyedStore, StateBackend};
    use crate::state::rescale::assign_keyed_state;
    use std::collections::BTreeMap;

    fn scope(operator: &str, subtask: usize, key_groups: KeyGroupRange) -> StoreScope {
        StoreScope {
            job: "j".into(),
            operator: operator.into(),
            subtask,
            key_groups,
        }
    }

    fn key(kg: u16, i: u32) -> Vec<u8> {
        let mut k = kg.to_be_bytes().to_vec();
        k.push(1);
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    fn entries_of(store: &mut dyn KeyedStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = BTreeMap::new();
        store
            .scan_prefix(b"", &mut |k, v| {
                out.insert(k.to_vec(), v.to_vec());
                Ok(true)
            })
            .unwrap();
        out
    }

    fn inodes(dir: &Path) -> std::collections::BTreeSet<u64> {
        use std::os::unix::fs::MetadataExt;
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .map(|p| fs::metadata(p).unwrap().ino())
            .collect()
    }

    /// Rescales the snapshots `snaps` (of `snaps.len()` subtasks) to `new_p` subtasks and
    /// snapshots each new store; checks that each holds exactly its key groups of `expected`
    /// (also after a full compaction), and returns the new snapshots.
    fn rescale(
        backend: &RocksDbBackend,
        root: &Path,
        name: &str,
        snaps: &[PathBuf],
        new_p: usize,
        expected: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for j in 0..new_p {
            let a = assign_keyed_state(j, new_p, snaps.len(), 128);
            let parts: Vec<SnapshotPart> = a
                .sources
                .iter()
                .map(|t| SnapshotPart {
                    dir: snaps[t.old_subtask].clone(),
                    taken: t.taken,
                })
                .collect();
            let mut store = backend.open_rescaled(&scope(name, j, a.key_groups), &parts).unwrap();
            let own: BTreeMap<Vec<u8>, Vec<u8>> = expected
                .iter()
                .filter(|(k, _)| a.key_groups.contains(u16::from_be_bytes([k[0], k[1]])))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let ctx = format!("{name}: {} -> {new_p}, subtask {j}", snaps.len());
            assert!(entries_of(&mut store) == own, "{ctx}: exactly its key groups");
            // A later write of a taken key wins over the linked files' versions.
            let first = own.keys().next().unwrap().clone();
            store.put(&first, b"later").unwrap();
            assert_eq!(store.get(&first).unwrap().as_deref(), Some(&b"later"[..]), "{ctx}");
            store.put(&first, &own[&first]).unwrap();
            let snap = root.join(format!("{name}-{j}"));
            store.snapshot_to(&snap).unwrap();
            // Dropped key groups never come back, compacted or not.
            store.db.compact_range::<&[u8], &[u8]>(None, None);
            assert!(entries_of(&mut store) == own, "{ctx}: after a full compaction");
            drop(store);
            // The snapshot of a rescaled store restores like any other.
            let mut restored = backend
                .open(&scope(&format!("{name}-restored"), j, a.key_groups), Some(&snap))
                .unwrap();
            assert!(entries_of(&mut restored) == own, "{ctx}: restored from its snapshot");
            out.push(snap);
        }
        out
    }

    /// 2 -> 3 -> 2 -> 1 from stores of many files: the other parts' files are linked, not
    /// rewritten (their inodes are in the new store); every new store holds exactly its key
    /// groups, before and after a full compaction, and its snapshot restores them. The second
    /// and third rescales start from snapshots of rescaled stores, whose files reach into
    /// other key groups (some parts are then rewritten).
    #[test]
    fn rescaled_stores_link_the_other_parts_files_and_hold_exactly_their_key_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = RocksDbBackend::new(tmp.path().join("state"))
            .write_buffer_size(64 * 1024)
            .target_file_size(64 * 1024)
            .block_cache_size(1 << 20);
        let mut expected = BTreeMap::new();
        let mut snaps = Vec::new();
        for i in 0..2 {
            let range = KeyGroupRange::for_subtask(i, 2, 128);
            let mut old = backend.open(&scope("old", i, range), None).unwrap();
            for kg in range.start..=range.end {
                for n in 0u32..150 {
                    let v = vec![(kg as u8) ^ (n as u8); 64];
                    old.put(&key(kg, n), b"overwritten").unwrap();
                    old.put(&key(kg, n), &v).unwrap();
                    expected.insert(key(kg, n), v);
                }
                // A deleted key stays deleted in every layout.
                old.delete(&key(kg, 7)).unwrap();
                expected.remove(&key(kg, 7));
                if kg % 16 == 0 {
                    old.db.flush().unwrap();
                }
            }
            let snap = tmp.path().join(format!("old-{i}"));
            old.snapshot_to(&snap).unwrap();
            snaps.push(snap);
        }
        let three = rescale(&backend, tmp.path(), "three", &snaps, 3, &expected);
        // New subtask 1 of 3 (43..=85) takes 64..=85 from old subtask 1, its base, and 43..=63
        // from old subtask 0 as linked files.
        let (linked, base) = (inodes(&snaps[0]), inodes(&tmp.path().join("three-1")));
        assert!(
            linked.intersection(&base).next().is_some(),
            "old subtask 0's files are linked"
        );
        let two = rescale(&backend, tmp.path(), "two", &three, 2, &expected);
        rescale(&backend, tmp.path(), "one", &two, 1, &expected);
    }

    /// A store large enough to span many SST files, in levels below L0 after compaction, so
    /// that dropping key groups unlinks whole files as well as writing range tombstones.
    #[test]
    fn a_store_of_many_files_is_split_exactly_by_key_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = RocksDbBackend::new(tmp.path().join("state"))
            .write_buffer_size(64 * 1024)
            .target_file_size(64 * 1024)
            .block_cache_size(1 << 20);
        let all = KeyGroupRange { start: 0, end: 127 };
        let mut old = backend.open(&scope("old", 0, all), None).unwrap();
        let mut expected = BTreeMap::new();
        for kg in 0u16..128 {
            for i in 0u32..200 {
                let mut k = kg.to_be_bytes().to_vec();
                k.push(1);
                k.extend_from_slice(&i.to_be_bytes());
                let v = vec![(kg as u8) ^ (i as u8); 64];
                old.put(&k, &v).unwrap();
                expected.insert(k, v);
            }
        }
        old.db.compact_range::<&[u8], &[u8]>(None, None);
        let snap = tmp.path().join("snap");
        old.snapshot_to(&snap).unwrap();
        assert!(
            fs::read_dir(&snap)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
                .count()
                > 4,
            "the snapshot spans many files"
        );
        for new_p in [2, 3] {
            let mut union = BTreeMap::new();
            for j in 0..new_p {
                let a = assign_keyed_state(j, new_p, 1, 128);
                let parts: Vec<SnapshotPart> = a
                    .sources
                    .iter()
                    .map(|t| SnapshotPart {
                        dir: snap.clone(),
                        taken: t.taken,
                    })
                    .collect();
                let mut store = backend
                    .open_store_rescaled(&scope("new", j, a.key_groups), &parts)
                    .unwrap();
                store
                    .scan_prefix(b"", &mut |k, v| {
                        assert!(a.key_groups.contains(u16::from_be_bytes([k[0], k[1]])));
                        assert!(union.insert(k.to_vec(), v.to_vec()).is_none());
                        Ok(true)
                    })
                    .unwrap();
            }
            assert!(union == expected, "1 -> {new_p}: every entry once");
            let ssts = |d: &Path| {
                fs::read_dir(d)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
                    .count()
            };
            // Files that hold only dropped key groups are unlinked, not covered by tombstones.
            let last = backend.dir().join(scope("new", new_p - 1, all).relative_dir());
            assert!(ssts(&last) < ssts(&snap), "1 -> {new_p}: whole files dropped");
        }
    }
}
