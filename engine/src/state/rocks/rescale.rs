//! Opening a RocksDB store from snapshots of another parallelism (see
//! [`state::rescale`](crate::state::rescale)).
//!
//! The base snapshot is restored whole (its SST files hard-linked), then the key groups outside
//! the part taken from it are dropped by range: `DeleteFilesInRange` unlinks the SST files that
//! hold only such key groups, and one range tombstone per side covers the rest (never a delete
//! per key). Each other part is exported by range into one SST file (`SstFileWriter`) from a
//! read-only copy of its snapshot and ingested (moved, not copied, into the store).
//!
//! # After a crash
//! Nothing here is durable on its own: the working directory and the scratch directory are
//! deleted by the next open of the scope, and the snapshots read are never written (the copies
//! are hard links of immutable files, opened read-only).

use super::{copy_snapshot, RocksDbBackend, RocksDbStore};
use crate::state::backend::{key_group_start, SnapshotPart, StoreScope};
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use rocksdb::{IngestExternalFileOptions, ReadOptions, SstFileWriter, WriteBatch, DB};
use std::fs;
use std::path::Path;

impl RocksDbBackend {
    /// Opens the store of `scope` from `parts`; see
    /// [`StateBackend::open_store_rescaled`](crate::state::StateBackend::open_store_rescaled).
    pub(super) fn open_rescaled(&self, scope: &StoreScope, parts: &[SnapshotPart]) -> Result<RocksDbStore> {
        let Some((base, others)) = parts.split_first() else {
            return self.open(scope, None);
        };
        let mut store = self.open(scope, Some(base.dir.as_path()))?;
        keep_only(&mut store, base.taken).map_err(|e| {
            e.context(format!(
                "dropping the key groups outside {}..={}",
                base.taken.start, base.taken.end
            ))
        })?;
        let work = self.work_dir(scope)?;
        let scratch = work.with_file_name(format!("{}.rescale", scope.subtask));
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
            let result = ingest(self, &store.db, part, &scratch);
            remove_dir(&scratch)?;
            result.map_err(|e| e.context(taking()))?;
        }
        tracing::debug!(store = %work.display(), parts = parts.len(), "opened a rescaled store");
        Ok(store)
    }
}

/// Drops every entry outside `range` from `store`, by ranges.
fn keep_only(store: &mut RocksDbStore, range: KeyGroupRange) -> Result<()> {
    let below = (Vec::new(), key_group_start(range.start as usize).to_vec());
    let above = (
        key_group_start(range.end as usize + 1).to_vec(),
        key_group_start(MAX_KEY_GROUPS).to_vec(),
    );
    let mut batch = WriteBatch::default();
    for (from, to) in [below, above] {
        if from >= to {
            continue;
        }
        // `to` is inclusive here; no entry key is exactly two bytes long (see `layout`), so no
        // file holding an entry of a kept key group is dropped.
        store.db.delete_file_in_range(&from, &to)?;
        batch.delete_range(&from, &to);
    }
    Ok(store.db.write_opt(batch, &store.write)?)
}

/// Exports the entries of `part.taken` from the snapshot `part.dir` into an SST file under
/// `scratch` (which must not exist) and ingests it into `db`.
fn ingest(backend: &RocksDbBackend, db: &DB, part: &SnapshotPart, scratch: &Path) -> Result<()> {
    let copy = scratch.join("snapshot");
    fs::create_dir_all(&copy).map_err(|e| Error::io(format!("creating {}", copy.display()), e))?;
    copy_snapshot(&part.dir, &copy)?;
    let opts = backend.options();
    let source = DB::open_for_read_only(&opts, &copy, false).map_err(|e| {
        Error::checkpoint(format!("opening the snapshot {} read-only", part.dir.display())).with_source(e)
    })?;
    let mut read = ReadOptions::default();
    read.set_iterate_lower_bound(key_group_start(part.taken.start as usize).to_vec());
    read.set_iterate_upper_bound(key_group_start(part.taken.end as usize + 1).to_vec());
    let mut it = source.raw_iterator_opt(read);
    it.seek_to_first();
    let sst = scratch.join("taken.sst");
    let mut writer = SstFileWriter::create(&opts);
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
