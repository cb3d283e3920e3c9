//! A subtask's RocksDB store: one or more segments, each a RocksDB instance owning disjoint key
//! groups, with every operation routed by the key group its key starts with.
//!
//! A store that was never rescaled has one segment. A rescale keeps each large overlapping old
//! segment as a segment of its own, linked from the checkpoint like a plain restore (see
//! [`rescale`](super::rescale)), instead of rewriting it into one database. Since every entry
//! key starts with its key group (2 bytes, big-endian) and the segments' key groups are
//! disjoint, a scan that spans key groups visits the segments in key-group order and sees the
//! entries in the same byte order as one database would.
//!
//! The segments of a store share one memtable budget (a RocksDB write buffer manager of twice
//! the backend's memtable size, what one database holds at most) and the backend's block cache;
//! RocksDB's background threads are the process's (one thread pool for every database).

use super::manifest;
use super::segment::Segment;
use super::{sync_snapshot, OpenGuard};
use crate::state::backend::{EntryVisitor, KeyedStore, WriteOp};
use crate::state::KeyGroupRange;
use crate::{Error, Result};
use rocksdb::{WriteBatch, WriteBufferManager, WriteOptions};
use std::fs;
use std::path::{Path, PathBuf};

/// A segment to scan and the bounds to scan it within: (segment index, lower, upper).
type RouteScan = (usize, Option<[u8; 2]>, Option<[u8; 2]>);

/// One subtask's state in one or more RocksDB instances.
pub(super) struct RocksDbStore {
    /// Declared before `_open` so that the databases are closed before the scope is released.
    pub(super) segments: Vec<Segment>,
    /// The segment owning each key-group range, in key-group order; together the ranges are
    /// the store's key groups.
    routes: Vec<(KeyGroupRange, usize)>,
    /// Writes skip the WAL unless snapshots include it.
    pub(super) write: WriteOptions,
    /// The memtable budget the segments share (the databases hold it too).
    _memtables: WriteBufferManager,
    _open: OpenGuard,
}

impl RocksDbStore {
    /// A store of `segments`, whose ranges must be disjoint.
    pub(super) fn new(
        segments: Vec<Segment>,
        write: WriteOptions,
        memtables: WriteBufferManager,
        open: OpenGuard,
    ) -> Result<Self> {
        let mut routes: Vec<(KeyGroupRange, usize)> = segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.ranges.iter().map(move |r| (*r, i)))
            .collect();
        routes.sort_by_key(|(r, _)| r.start);
        if routes.is_empty() || routes.windows(2).any(|w| w[0].0.end >= w[1].0.start) {
            return Err(Error::internal(format!(
                "the segments of a RocksDB store own overlapping key groups: {routes:?}"
            )));
        }
        Ok(RocksDbStore {
            segments,
            routes,
            write,
            _memtables: memtables,
            _open: open,
        })
    }

    /// The segment that holds `key`: the one owning its key group. A key shorter than a key
    /// group reads as padded with zero bytes, and one outside the store's key groups (never
    /// written by Weir's operators) goes to the first or last segment, which keeps every
    /// segment's keys in the store's byte order.
    fn segment_of(&self, key: &[u8]) -> &Segment {
        &self.segments[self.segment_index_of(key)]
    }

    /// The index in `segments` of [`segment_of`](Self::segment_of).
    fn segment_index_of(&self, key: &[u8]) -> usize {
        if self.segments.len() == 1 {
            return 0;
        }
        let kg = key_group_prefix(key, 0);
        let i = self
            .routes
            .partition_point(|(r, _)| r.end < kg)
            .min(self.routes.len() - 1);
        self.routes[i].1
    }

    /// The routes (index, range, segment) whose key groups a key starting with `prefix` may
    /// have, in key-group order, with the bounds to scan each within: none below the first
    /// route, none above the last (see [`segment_of`](Self::segment_of)).
    fn routes_for(&self, prefix: &[u8]) -> Vec<RouteScan> {
        let (lo, hi) = (key_group_prefix(prefix, 0), key_group_prefix(prefix, 0xFF));
        let last = self.routes.len() - 1;
        self.routes
            .iter()
            .enumerate()
            .filter(|(i, (r, _))| (*i == last || r.end >= lo) && (*i == 0 || r.start <= hi))
            .map(|(i, (r, seg))| {
                let lower = (i > 0).then(|| r.start.to_be_bytes());
                let upper = (i < last).then(|| (r.end + 1).to_be_bytes());
                (*seg, lower, upper)
            })
            .collect()
    }
}

/// The key group the first two bytes of `key` name, the missing ones taken as `pad`.
fn key_group_prefix(key: &[u8], pad: u8) -> u16 {
    u16::from_be_bytes([key.first().copied().unwrap_or(pad), key.get(1).copied().unwrap_or(pad)])
}

impl KeyedStore for RocksDbStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.segment_of(key).get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.segment_of(key).put(key, value, &self.write)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.segment_of(key).delete(key, &self.write)
    }

    /// One RocksDB write batch per segment that `ops` touch (one in all for a store that was
    /// never rescaled); each is atomic, and they are written in segment order.
    fn write_batch(&mut self, ops: &[WriteOp<'_>]) -> Result<()> {
        let mut batches: Vec<Option<WriteBatch>> = (0..self.segments.len()).map(|_| None).collect();
        for op in ops {
            let batch = batches[self.segment_index_of(op.key())].get_or_insert_with(WriteBatch::default);
            match *op {
                WriteOp::Put(k, v) => batch.put(k, v),
                WriteOp::Delete(k) => batch.delete(k),
            }
        }
        for (segment, batch) in self.segments.iter().zip(batches) {
            if let Some(batch) = batch {
                segment.write(batch, &self.write)?;
            }
        }
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        if self.segments.len() == 1 {
            return self.segments[0].scan(prefix, None, None, f).map(|_| ());
        }
        for (seg, lower, upper) in self.routes_for(prefix) {
            let segment = &self.segments[seg];
            if !segment.scan(
                prefix,
                lower.as_ref().map(|b| &b[..]),
                upper.as_ref().map(|b| &b[..]),
                f,
            )? {
                break;
            }
        }
        Ok(())
    }

    fn scan_prefix_from(&mut self, prefix: &[u8], from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        if self.segments.len() == 1 {
            return self.segments[0].scan(prefix, Some(from), None, f).map(|_| ());
        }
        for (seg, lower, upper) in self.routes_for(prefix) {
            // Seek to the later of the route's start and `from`; a route ending before `from`
            // yields nothing.
            let lower = match lower {
                Some(l) if l.as_slice() > from => l.to_vec(),
                _ => from.to_vec(),
            };
            if upper.is_some_and(|u| u.as_slice() <= lower.as_slice()) {
                continue;
            }
            if !self.segments[seg].scan(prefix, Some(&lower), upper.as_ref().map(|b| &b[..]), f)? {
                break;
            }
        }
        Ok(())
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        let mut done: Vec<usize> = Vec::new();
        for (seg, _, _) in self.routes_for(prefix) {
            // A segment holds only the keys routed to it: deleting the prefix in it once deletes
            // exactly its share.
            if !done.contains(&seg) {
                self.segments[seg].delete_prefix(prefix, &self.write)?;
                done.push(seg);
            }
        }
        Ok(())
    }

    fn approximate_size(&mut self) -> Result<u64> {
        self.segments.iter().map(Segment::approximate_size).sum()
    }

    /// Writes every segment's RocksDB checkpoint into `dir` (files named per segment, see
    /// [`manifest`]), then the segment list, then fsyncs them all, `dir` and its entry in its
    /// parent.
    ///
    /// # After a crash
    /// Before the final fsync, `dir` may lack files or the segment list: it is not part of a
    /// completed checkpoint yet (the checkpoint's metadata is published only after this
    /// returns and the files are stored), and the staging directory is deleted. After it
    /// returns, `dir` holds a complete snapshot.
    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        let failed = |what: &str| Error::checkpoint(format!("{what} (RocksDB snapshot into {})", dir.display()));
        if fs::symlink_metadata(dir).is_ok() {
            return Err(failed("the snapshot directory already exists"));
        }
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs::create_dir_all(parent).map_err(|e| failed("cannot create the parent directory").with_source(e))?;
        }
        fs::create_dir(dir).map_err(|e| failed("cannot create the directory").with_source(e))?;
        for segment in &self.segments {
            segment.checkpoint_into(dir).map_err(|e| {
                e.context(format!(
                    "snapshotting segment {:?} (RocksDB snapshot into {})",
                    segment.id,
                    dir.display()
                ))
            })?;
        }
        let entries: Vec<_> = self.segments.iter().map(Segment::entry).collect();
        manifest::write(dir, &entries).map_err(|e| e.context(format!("RocksDB snapshot into {}", dir.display())))?;
        sync_snapshot(dir, parent).map_err(|e| failed("syncing the checkpoint").with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::RocksDbBackend;
    use super::*;
    use crate::state::backend::StateBackend;
    use crate::state::conformance::scan_all;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::collections::BTreeMap;

    #[test]
    fn short_keys_read_as_padded() {
        assert_eq!(key_group_prefix(&[], 0), 0);
        assert_eq!(key_group_prefix(&[], 0xFF), 0xFFFF);
        assert_eq!(key_group_prefix(&[1], 0), 0x0100);
        assert_eq!(key_group_prefix(&[1], 0xFF), 0x01FF);
        assert_eq!(key_group_prefix(&[1, 2, 3], 0xFF), 0x0102);
    }

    fn kgs(ranges: &[(u16, u16)]) -> Vec<KeyGroupRange> {
        ranges
            .iter()
            .map(|&(start, end)| KeyGroupRange { start, end })
            .collect()
    }

    /// A store of three segments over key groups 0..=767 (the first two bytes of a key span
    /// 0x0000..=0x02FF), one of which owns two ranges around another's, in `work`.
    fn segmented(backend: &RocksDbBackend, work: &Path) -> RocksDbStore {
        let open = OpenGuard::acquire(work).unwrap();
        RocksDbBackend::reset_work_dir(work).unwrap();
        let memtables = backend.memtable_budget();
        let layout = [kgs(&[(0, 200), (400, 600)]), kgs(&[(201, 399)]), kgs(&[(601, 767)])];
        let segments = layout
            .into_iter()
            .map(|ranges| {
                backend
                    .open_segment(work, manifest::fresh_id(), ranges, None, &memtables)
                    .unwrap()
            })
            .collect();
        RocksDbStore::new(segments, backend.write_options(), memtables, open).unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>, u8),
        Delete(Vec<u8>),
        Get(Vec<u8>),
        /// Scans `prefix`, stopping after `limit` entries.
        Scan(Vec<u8>, usize),
        DeletePrefix(Vec<u8>),
        /// Puts (`Some`) and deletes (`None`) in one `write_batch`.
        Batch(Vec<(Vec<u8>, Option<u8>)>),
        /// Snapshots the store and continues on its restored copy.
        Restore,
    }

    /// Keys around the segment boundaries: the first byte picks a key group region, the rest
    /// few values so that keys and prefixes collide.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        let kg = prop::sample::select(vec![
            0u16, 1, 199, 200, 201, 255, 256, 399, 400, 511, 512, 600, 601, 767,
        ]);
        (kg, prop::collection::vec(0u8..3, 0..3)).prop_map(|(kg, rest)| [&kg.to_be_bytes()[..], &rest].concat())
    }

    /// Prefixes of keys, from empty to whole.
    fn prefix() -> impl Strategy<Value = Vec<u8>> {
        (key(), 0usize..=4).prop_map(|(k, n)| k[..n.min(k.len())].to_vec())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (key(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => key().prop_map(Op::Delete),
            2 => key().prop_map(Op::Get),
            3 => (prefix(), 1usize..20).prop_map(|(p, n)| Op::Scan(p, n)),
            1 => prefix().prop_map(Op::DeletePrefix),
            2 => prop::collection::vec((key(), prop::option::of(any::<u8>())), 0..8).prop_map(Op::Batch),
            1 => Just(Op::Restore),
        ]
    }

    /// Random operations give a store of several segments, and its restored snapshots, the
    /// same answers as a map (and so as one database), scans of short and long prefixes and
    /// scans stopped early included.
    #[test]
    fn a_store_of_segments_answers_like_one_ordered_map() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = RocksDbBackend::new(tmp.path().join("state"))
            .write_buffer_size(64 * 1024)
            .block_cache_size(1 << 20);
        let scope = |subtask: usize| crate::state::StoreScope {
            job: "segments".into(),
            operator: "op".into(),
            subtask,
            key_groups: KeyGroupRange { start: 0, end: 767 },
        };
        let config = Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        };
        let run = std::cell::Cell::new(0usize);
        let result = TestRunner::new(config).run(&prop::collection::vec(op(), 1..80), |ops| {
            run.set(run.get() + 1);
            let work = tmp.path().join(format!("work-{}", run.get()));
            let mut store: Box<dyn KeyedStore> = Box::new(segmented(&backend, &work));
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Put(k, v) => {
                        store.put(&k, &[v]).unwrap();
                        model.insert(k, vec![v]);
                    }
                    Op::Delete(k) => {
                        store.delete(&k).unwrap();
                        model.remove(&k);
                    }
                    Op::Get(k) => prop_assert_eq!(store.get(&k).unwrap(), model.get(&k).cloned()),
                    Op::Scan(prefix, limit) => {
                        let mut seen = Vec::new();
                        store
                            .scan_prefix(&prefix, &mut |k, v| {
                                seen.push((k.to_vec(), v.to_vec()));
                                Ok(seen.len() < limit)
                            })
                            .unwrap();
                        let want: Vec<_> = model
                            .iter()
                            .filter(|(k, _)| k.starts_with(&prefix))
                            .take(limit)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        prop_assert_eq!(seen, want, "scan of {:?}", prefix);
                    }
                    Op::DeletePrefix(prefix) => {
                        store.delete_prefix(&prefix).unwrap();
                        model.retain(|k, _| !k.starts_with(&prefix));
                    }
                    Op::Batch(writes) => {
                        let values: Vec<[u8; 1]> = writes.iter().map(|(_, v)| [v.unwrap_or(0)]).collect();
                        let ops: Vec<WriteOp<'_>> = writes
                            .iter()
                            .zip(&values)
                            .map(|((k, v), value)| match v {
                                Some(_) => WriteOp::Put(k, value),
                                None => WriteOp::Delete(k),
                            })
                            .collect();
                        store.write_batch(&ops).unwrap();
                        for (k, v) in writes {
                            match v {
                                Some(v) => model.insert(k, vec![v]),
                                None => model.remove(&k),
                            };
                        }
                    }
                    Op::Restore => {
                        let snap = work.with_extension(format!("snap-{i}"));
                        store.snapshot_to(&snap).unwrap();
                        drop(store);
                        store = backend.open_store(&scope(run.get()), Some(&snap)).unwrap();
                    }
                }
            }
            let all: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(scan_all(store.as_mut(), b""), all);
            Ok::<(), TestCaseError>(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
