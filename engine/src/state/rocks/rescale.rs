//! Opening a RocksDB store from snapshots of another parallelism (see
//! [`state::rescale`](crate::state::rescale)).
//!
//! Every segment of the old snapshots that owns key groups of the new store is a *candidate*,
//! clipped to those key groups. The largest candidate, and every other one of at least
//! [`segment_merge_threshold`](RocksDbBackend::segment_merge_threshold) bytes (at most
//! [`MAX_SEGMENTS`] in all), becomes a segment of the new store: its files are hard-linked from
//! the snapshot as a plain restore does, and the key groups outside the clipped range are
//! dropped by range (`DeleteFilesInRange` unlinks the SST files that hold only such key groups,
//! and one range deletion per gap covers the rest, never a delete per key). Each remaining
//! small candidate is exported by range into one SST file (`SstFileWriter`) from a read-only
//! copy of its snapshot and ingested into the largest segment, which then owns its key groups
//! too. Each segment of the new store gets a fresh id: its files never share a name with
//! another database's in the subtask's checkpoints.
//!
//! # After a crash
//! Nothing here is durable on its own: the working directory (segments and scratch directory)
//! is deleted by the next open of the scope, and the snapshots read are never written (the
//! copies are hard links of immutable files, opened read-only). Only a later
//! [`snapshot_to`](crate::state::KeyedStore::snapshot_to) makes the rescaled state durable.

use super::manifest::{self, SegmentEntry};
use super::{copy_snapshot, RocksDbBackend, RocksDbStore, MAX_SEGMENTS};
use crate::state::backend::{key_group_start, SnapshotPart, StoreScope};
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use rocksdb::{IngestExternalFileOptions, ReadOptions, SstFileWriter, DB};
use std::fs;
use std::path::{Path, PathBuf};

/// A segment of an old snapshot, clipped to the key groups the new store takes from it.
#[derive(Debug)]
struct Candidate {
    snapshot: PathBuf,
    id: String,
    ranges: Vec<KeyGroupRange>,
    /// The bytes of its files in the snapshot, in proportion of the key groups taken.
    bytes: u64,
}

impl RocksDbBackend {
    /// Opens the store of `scope` from `parts`; see
    /// [`StateBackend::open_store_rescaled`](crate::state::StateBackend::open_store_rescaled).
    pub(super) fn open_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<RocksDbStore> {
        let mut candidates = Vec::new();
        for part in parts {
            candidates.extend(candidates_of(part).map_err(|e| {
                e.context(format!(
                    "taking key groups {}..={} from the snapshot {}",
                    part.taken.start,
                    part.taken.end,
                    part.dir.display()
                ))
            })?);
        }
        if candidates.is_empty() {
            return self.open(scope, None);
        }
        // Largest first; equal sizes in the order of the parts (the base first).
        candidates.sort_by_key(|c| std::cmp::Reverse(c.bytes));
        let (mut kept, mut merged) = (Vec::new(), Vec::new());
        for (i, c) in candidates.into_iter().enumerate() {
            if i == 0 || (c.bytes >= self.segment_merge_threshold && kept.len() < MAX_SEGMENTS) {
                kept.push(c);
            } else {
                merged.push(c);
            }
        }
        let work = self.work_dir(scope)?;
        let guard = super::OpenGuard::acquire(&work)?;
        Self::reset_work_dir(&work)?;
        let memtables = self.memtable_budget();
        let write = self.write_options();
        let mut segments = Vec::new();
        for c in &kept {
            let linking = || {
                format!(
                    "linking segment {:?} of the snapshot {} for key groups {:?}",
                    c.id,
                    c.snapshot.display(),
                    c.ranges
                )
            };
            let segment = self
                .open_segment(
                    &work,
                    manifest::fresh_id(),
                    c.ranges.clone(),
                    Some((&c.snapshot, &c.id)),
                    &memtables,
                )
                .map_err(|e| e.context(linking()))?;
            segment
                .drop_foreign_key_groups(&write)
                .map_err(|e| e.context(linking()))?;
            segments.push(segment);
        }
        let scratch = work.join("rescale-scratch");
        for c in &merged {
            remove_dir(&scratch)?;
            let result = ingest(self, &segments[0].db, c, &scratch);
            remove_dir(&scratch)?;
            result.map_err(|e| {
                e.context(format!(
                    "rewriting key groups {:?} of segment {:?} of the snapshot {}",
                    c.ranges,
                    c.id,
                    c.snapshot.display()
                ))
            })?;
            segments[0].ranges.extend_from_slice(&c.ranges);
        }
        segments[0].ranges = merge_ranges(std::mem::take(&mut segments[0].ranges));
        tracing::debug!(
            store = %work.display(),
            parts = parts.len(),
            linked = kept.len(),
            rewritten = merged.len(),
            "opened a rescaled store"
        );
        RocksDbStore::new(segments, write, memtables, guard)
    }
}

/// The segments of the snapshot of `part` that own key groups it takes, clipped to them.
fn candidates_of(part: &SnapshotPart) -> Result<Vec<Candidate>> {
    // A snapshot without a segment list is one store; its key groups are not recorded, so its
    // size is taken whole (an overestimate: it is never rewritten for being small when large).
    let (entries, whole) = match manifest::read(&part.dir)? {
        Some(entries) => (entries, false),
        None => (
            vec![SegmentEntry {
                id: String::new(),
                ranges: vec![KeyGroupRange {
                    start: 0,
                    end: (MAX_KEY_GROUPS - 1) as u16,
                }],
            }],
            true,
        ),
    };
    let mut out = Vec::new();
    for e in entries {
        let ranges: Vec<KeyGroupRange> = e.ranges.iter().filter_map(|r| r.intersect(&part.taken)).collect();
        if ranges.is_empty() {
            continue;
        }
        let files = manifest::files_of(&part.dir, &e.id)?;
        let mut bytes = 0u64;
        for (path, _) in &files {
            bytes += fs::metadata(path)
                .map_err(|err| Error::checkpoint(format!("reading {}", path.display())).with_source(err))?
                .len();
        }
        if !whole {
            let owned: u64 = e.ranges.iter().map(|r| r.len() as u64).sum();
            let taken: u64 = ranges.iter().map(|r| r.len() as u64).sum();
            bytes = bytes * taken / owned;
        }
        out.push(Candidate {
            snapshot: part.dir.clone(),
            id: e.id,
            ranges,
            bytes,
        });
    }
    Ok(out)
}

/// `ranges` sorted, with touching ranges joined.
fn merge_ranges(mut ranges: Vec<KeyGroupRange>) -> Vec<KeyGroupRange> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<KeyGroupRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end as usize + 1 == r.start as usize => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// Exports the entries of `c.ranges` from its snapshot segment into an SST file under
/// `scratch` (which must not exist) and ingests it into `db`.
fn ingest(backend: &RocksDbBackend, db: &DB, c: &Candidate, scratch: &Path) -> Result<()> {
    let copy = scratch.join("snapshot");
    fs::create_dir_all(&copy).map_err(|e| Error::io(format!("creating {}", copy.display()), e))?;
    copy_snapshot(&c.snapshot, &c.id, &copy)?;
    let opts = backend.options();
    let source = DB::open_for_read_only(&opts, &copy, false).map_err(|e| {
        Error::checkpoint(format!("opening the snapshot {} read-only", c.snapshot.display())).with_source(e)
    })?;
    let sst = scratch.join("taken.sst");
    let mut writer = SstFileWriter::create(&opts);
    writer.open(&sst)?;
    let mut entries = 0u64;
    for range in &c.ranges {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(key_group_start(range.start as usize).to_vec());
        read.set_iterate_upper_bound(key_group_start(range.end as usize + 1).to_vec());
        let mut it = source.raw_iterator_opt(read);
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            writer.put(k, v)?;
            entries += 1;
            it.next();
        }
        it.status()?;
    }
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
    use super::super::segment::Segment;
    use super::*;
    use crate::state::backend::KeyedStore;
    use crate::state::rescale::assign_keyed_state;
    use std::collections::{BTreeMap, BTreeSet};

    type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

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

    /// 64 incompressible bytes.
    fn value(kg: u16, i: u32) -> Vec<u8> {
        (0..8u64)
            .flat_map(|w| xxhash_rust::xxh3::xxh3_64(&[&key(kg, i)[..], &w.to_le_bytes()].concat()).to_le_bytes())
            .collect()
    }

    fn entries_of(store: &mut dyn KeyedStore) -> Entries {
        let mut out = BTreeMap::new();
        store
            .scan_prefix(b"", &mut |k, v| {
                out.insert(k.to_vec(), v.to_vec());
                Ok(true)
            })
            .unwrap();
        out
    }

    /// Every entry of a segment's database, read directly (not through the store's routes).
    fn raw_entries(segment: &Segment) -> Entries {
        let mut it = segment.db.raw_iterator();
        it.seek_to_first();
        let mut out = BTreeMap::new();
        while let Some((k, v)) = it.item() {
            out.insert(k.to_vec(), v.to_vec());
            it.next();
        }
        it.status().unwrap();
        out
    }

    fn own(expected: &Entries, range: KeyGroupRange) -> Entries {
        expected
            .iter()
            .filter(|(k, _)| range.contains(u16::from_be_bytes([k[0], k[1]])))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `p` snapshots of stores holding `expected`'s key groups of 128 (overwrites, deletes and
    /// flushes along the way, so that they span files of several levels), under `root/name-i`.
    fn old_snapshots(backend: &RocksDbBackend, root: &Path, name: &str, p: usize) -> (Vec<PathBuf>, Entries) {
        let mut expected = BTreeMap::new();
        let mut snaps = Vec::new();
        for i in 0..p {
            let range = KeyGroupRange::for_subtask(i, p, 128);
            let mut old = backend.open(&scope(name, i, range), None).unwrap();
            for kg in range.start..=range.end {
                for n in 0u32..40 {
                    old.put(&key(kg, n), b"overwritten").unwrap();
                    old.put(&key(kg, n), &value(kg, n)).unwrap();
                    expected.insert(key(kg, n), value(kg, n));
                }
                // A deleted key stays deleted in every layout.
                old.delete(&key(kg, 7)).unwrap();
                expected.remove(&key(kg, 7));
                if kg % 16 == 0 {
                    old.segments[0].db.flush().unwrap();
                }
            }
            let snap = root.join(format!("{name}-{i}"));
            old.snapshot_to(&snap).unwrap();
            snaps.push(snap);
        }
        (snaps, expected)
    }

    /// Rescales the snapshots `snaps` (of `snaps.len()` subtasks) to `new_p` subtasks and
    /// snapshots each new store; checks that each holds exactly its key groups of `expected`,
    /// read through the store and, after a full compaction of every segment, in each segment's
    /// database directly (nothing foreign, nothing missing); and that its snapshot restores
    /// them. Returns the new snapshots.
    fn rescale(
        backend: &RocksDbBackend,
        root: &Path,
        name: &str,
        snaps: &[PathBuf],
        new_p: usize,
        expected: &Entries,
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
            let own = own(expected, a.key_groups);
            let ctx = format!("{name}: {} -> {new_p}, subtask {j}", snaps.len());
            assert!(entries_of(&mut store) == own, "{ctx}: exactly its key groups");
            // A later write of a taken key wins over the linked files' versions.
            let first = own.keys().next().unwrap().clone();
            store.put(&first, b"later").unwrap();
            assert_eq!(store.get(&first).unwrap().as_deref(), Some(&b"later"[..]), "{ctx}");
            store.put(&first, &own[&first]).unwrap();
            let snap = root.join(format!("{name}-{j}"));
            store.snapshot_to(&snap).unwrap();
            // Dropped key groups never come back, compacted or not, in any segment.
            let mut union = BTreeMap::new();
            for segment in &store.segments {
                segment.db.compact_range::<&[u8], &[u8]>(None, None);
                for (k, v) in raw_entries(segment) {
                    let kg = u16::from_be_bytes([k[0], k[1]]);
                    assert!(
                        segment.ranges.iter().any(|r| r.contains(kg)),
                        "{ctx}: segment {} owning {:?} holds key group {kg}",
                        segment.id,
                        segment.ranges
                    );
                    assert!(union.insert(k, v).is_none(), "{ctx}: an entry in two segments");
                }
            }
            assert!(union == own, "{ctx}: after a full compaction of every segment");
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

    fn small_backend(root: &Path, merge_below: u64) -> RocksDbBackend {
        RocksDbBackend::new(root.join("state"))
            .write_buffer_size(64 * 1024)
            .target_file_size(64 * 1024)
            .block_cache_size(1 << 20)
            .segment_merge_threshold(merge_below)
    }

    /// Every rescale p -> p' -> p'' for p, p', p'' in 1..=4: each new store holds exactly its
    /// key groups before and after a full compaction of its segments, and restores from its
    /// snapshot. Overlaps of about 16 key groups or more are kept as segments, smaller ones
    /// rewritten into the largest, so that both paths and their mixes are crossed.
    #[test]
    fn rescales_among_one_to_four_twice_in_a_row_hold_exactly_their_key_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small_backend(tmp.path(), 48 * 1024);
        for p in 1..=4 {
            let (snaps, expected) = old_snapshots(&backend, tmp.path(), &format!("old{p}"), p);
            for q in 1..=4 {
                if q == p {
                    continue;
                }
                let once = rescale(&backend, tmp.path(), &format!("r{p}{q}"), &snaps, q, &expected);
                for r in 1..=4 {
                    if r != q {
                        rescale(&backend, tmp.path(), &format!("r{p}{q}{r}"), &once, r, &expected);
                    }
                }
            }
        }
    }

    /// Twice in a row with every overlap linked, and with every overlap but the largest
    /// rewritten.
    #[test]
    fn rescales_that_link_everything_or_rewrite_everything_hold_exactly_their_key_groups() {
        for merge_below in [0, u64::MAX] {
            let tmp = tempfile::tempdir().unwrap();
            let backend = small_backend(tmp.path(), merge_below);
            for (p, q, r) in [(2, 3, 2), (3, 2, 3), (4, 3, 1), (1, 4, 3), (2, 1, 4)] {
                let (snaps, expected) = old_snapshots(&backend, tmp.path(), &format!("old{p}{q}{r}"), p);
                let once = rescale(&backend, tmp.path(), &format!("r{p}{q}"), &snaps, q, &expected);
                rescale(&backend, tmp.path(), &format!("r{p}{q}{r}"), &once, r, &expected);
            }
        }
    }

    fn inodes(dir: &Path) -> BTreeSet<u64> {
        use std::os::unix::fs::MetadataExt;
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .map(|p| fs::metadata(p).unwrap().ino())
            .collect()
    }

    fn ssts(files: &[PathBuf]) -> BTreeSet<String> {
        files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sst"))
            .collect()
    }

    /// 2 -> 3: new subtask 1 keeps both overlaps as segments, their files linked from the old
    /// snapshots (same inodes); checkpointed, restored, written and checkpointed again, it
    /// opens and reads everything. Its snapshots share the unchanged files by name, and a name
    /// always means the same bytes; none of its names is one of the old snapshots'.
    #[test]
    fn a_rescaled_store_links_its_segments_and_checkpoints_incrementally() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small_backend(tmp.path(), 0);
        let (snaps, mut expected) = old_snapshots(&backend, tmp.path(), "old", 2);
        let a = assign_keyed_state(1, 3, 2, 128);
        let parts: Vec<SnapshotPart> = a
            .sources
            .iter()
            .map(|t| SnapshotPart {
                dir: snaps[t.old_subtask].clone(),
                taken: t.taken,
            })
            .collect();
        let mut store = backend.open_rescaled(&scope("new", 1, a.key_groups), &parts).unwrap();
        assert_eq!(store.segments.len(), 2);
        for (segment, old) in store.segments.iter().zip([&snaps[1], &snaps[0]]) {
            let linked = inodes(&Segment::dir(
                &backend.work_dir(&scope("new", 1, a.key_groups)).unwrap(),
                &segment.id,
            ));
            assert!(
                linked.intersection(&inodes(old)).next().is_some(),
                "segment {} links the files of {}",
                segment.id,
                old.display()
            );
        }
        // No compaction pending afterwards: the files of a segment change only when it is
        // written to.
        for segment in &store.segments {
            segment.db.compact_range::<&[u8], &[u8]>(None, None);
        }
        let first = tmp.path().join("first");
        let first_files = store.snapshot_to(&first).unwrap();
        let old_names: BTreeSet<String> = snaps
            .iter()
            .flat_map(|s| {
                fs::read_dir(s)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            })
            .collect();
        assert!(
            ssts(&first_files).is_disjoint(&old_names),
            "fresh segment ids: no name of an old snapshot"
        );
        drop(store);

        let mut restored = backend.open(&scope("new", 1, a.key_groups), Some(&first)).unwrap();
        let mine = own(&expected, a.key_groups);
        assert!(entries_of(&mut restored) == mine, "restored after a rescale");
        // Writes into key groups of the second segment only (those from old subtask 0).
        for n in 0..200u32 {
            restored.put(&key(50, n), b"new").unwrap();
            expected.insert(key(50, n), b"new".to_vec());
        }
        let second = tmp.path().join("second");
        let second_files = store_snapshot(&mut restored, &second);
        let shared: BTreeSet<_> = ssts(&first_files).intersection(&ssts(&second_files)).cloned().collect();
        let untouched = &restored.segments.iter().find(|s| !s.ranges[0].contains(50)).unwrap().id;
        assert!(
            ssts(&first_files)
                .iter()
                .filter(|f| f.starts_with(untouched.as_str()))
                .all(|f| shared.contains(f)),
            "the untouched segment's files are all shared"
        );
        assert!(shared.len() < ssts(&second_files).len(), "new files for the writes");
        for f in &shared {
            assert_eq!(
                fs::read(first.join(f)).unwrap(),
                fs::read(second.join(f)).unwrap(),
                "{f}: same name, same bytes"
            );
        }
        drop(restored);
        let mut again = backend.open(&scope("new", 1, a.key_groups), Some(&second)).unwrap();
        assert!(entries_of(&mut again) == own(&expected, a.key_groups), "restored twice");
    }

    fn store_snapshot(store: &mut RocksDbStore, dir: &Path) -> Vec<PathBuf> {
        store.snapshot_to(dir).unwrap()
    }

    /// 12 -> 1 with every overlap large enough to keep: at most `MAX_SEGMENTS` segments, the
    /// smallest overlaps rewritten into the largest; exact content. The segments share one
    /// memtable budget: together they hold about what one database would.
    #[test]
    fn segments_per_store_and_their_memtables_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = small_backend(tmp.path(), 0);
        let (snaps, expected) = old_snapshots(&backend, tmp.path(), "old", 12);
        let all = KeyGroupRange { start: 0, end: 127 };
        let parts: Vec<SnapshotPart> = assign_keyed_state(0, 1, 12, 128)
            .sources
            .iter()
            .map(|t| SnapshotPart {
                dir: snaps[t.old_subtask].clone(),
                taken: t.taken,
            })
            .collect();
        let mut store = backend.open_rescaled(&scope("one", 0, all), &parts).unwrap();
        assert_eq!(store.segments.len(), MAX_SEGMENTS);
        assert!(entries_of(&mut store) == expected);
        let memtables = |store: &RocksDbStore| -> u64 {
            store
                .segments
                .iter()
                .map(|s| {
                    s.db.property_int_value(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)
                        .unwrap()
                        .unwrap_or(0)
                })
                .sum()
        };
        let mut most = 0;
        for n in 0..4000u32 {
            let kg = (n % 128) as u16;
            store.put(&key(kg, 1000 + n), &value(kg, n)).unwrap();
            most = most.max(memtables(&store));
        }
        // Budget: two memtables of 64 KiB; one more of slack, since a database flushes when
        // it is written to after the budget is exceeded.
        assert!(
            most <= 3 * 64 * 1024,
            "memtables of {MAX_SEGMENTS} segments peaked at {most} bytes"
        );
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
        old.segments[0].db.compact_range::<&[u8], &[u8]>(None, None);
        let snap = tmp.path().join("snap");
        old.snapshot_to(&snap).unwrap();
        let ssts = |d: &Path| {
            fs::read_dir(d)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
                .count()
        };
        assert!(ssts(&snap) > 4, "the snapshot spans many files");
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
                let new_scope = scope("new", j, a.key_groups);
                let mut store = backend.open_rescaled(&new_scope, &parts).unwrap();
                store
                    .scan_prefix(b"", &mut |k, v| {
                        assert!(a.key_groups.contains(u16::from_be_bytes([k[0], k[1]])));
                        assert!(union.insert(k.to_vec(), v.to_vec()).is_none());
                        Ok(true)
                    })
                    .unwrap();
                if j == new_p - 1 {
                    // Files that hold only dropped key groups are unlinked, not covered by
                    // tombstones.
                    let work = backend.work_dir(&new_scope).unwrap();
                    assert!(
                        ssts(&Segment::dir(&work, &store.segments[0].id)) < ssts(&snap),
                        "1 -> {new_p}: whole files dropped"
                    );
                }
            }
            assert!(union == expected, "1 -> {new_p}: every entry once");
        }
    }
}
