//! One segment of a RocksDB store: a RocksDB instance holding the entries of the key groups it
//! owns, and the operations of [`KeyedStore`](crate::state::KeyedStore) on it alone.

use super::manifest::{self, SegmentEntry};
use super::prefix_successor;
use crate::state::backend::{key_group_start, EntryVisitor};
use crate::state::key_group::MAX_KEY_GROUPS;
use crate::state::{KeyGroupRange, MemtableAtBarrier};
use crate::{Error, Result};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{properties, ReadOptions, WriteBatch, WriteOptions, DB};
use std::fs;
use std::path::{Path, PathBuf};

/// `delete_prefix` deletes up to this many keys one by one; beyond, it writes a range deletion.
const POINT_DELETE_LIMIT: usize = 128;
/// Keys per batch when `delete_prefix` cannot use a range deletion.
pub(super) const DELETE_CHUNK: usize = 16 * 1024;

/// A RocksDB instance owning some key groups of a store.
pub(super) struct Segment {
    /// Names the segment's files in snapshots (see [`manifest`]).
    pub(super) id: String,
    /// The key groups the segment owns, ascending and disjoint. It holds no entry of any other
    /// key group (those a rescale dropped are covered by range deletions).
    pub(super) ranges: Vec<KeyGroupRange>,
    pub(super) db: DB,
    /// What [`checkpoint_into`](Self::checkpoint_into) does with the memtable.
    pub(super) at_barrier: MemtableAtBarrier,
}

impl Segment {
    /// The working directory of segment `id` of the store working in `work`: `work` itself
    /// for the unnamed segment (the layout of a store that was never rescaled).
    pub(super) fn dir(work: &Path, id: &str) -> PathBuf {
        if id.is_empty() {
            work.to_path_buf()
        } else {
            work.join(format!("segment-{id}"))
        }
    }

    /// The segment list entry of this segment.
    pub(super) fn entry(&self) -> SegmentEntry {
        SegmentEntry {
            id: self.id.clone(),
            ranges: self.ranges.clone(),
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    pub(super) fn put(&self, key: &[u8], value: &[u8], write: &WriteOptions) -> Result<()> {
        Ok(self.db.put_opt(key, value, write)?)
    }

    pub(super) fn delete(&self, key: &[u8], write: &WriteOptions) -> Result<()> {
        Ok(self.db.delete_opt(key, write)?)
    }

    /// Applies `batch` atomically.
    pub(super) fn write(&self, batch: WriteBatch, write: &WriteOptions) -> Result<()> {
        Ok(self.db.write_opt(batch, write)?)
    }

    /// Visits, in key order, the entries starting with `prefix` that are not below `lower` nor
    /// at or above `upper`; `Ok(false)` when `f` asked to stop.
    #[allow(clippy::type_complexity)]
    pub(super) fn scan(
        &self,
        prefix: &[u8],
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        f: &mut EntryVisitor<'_>,
    ) -> Result<bool> {
        let mut read = ReadOptions::default();
        let end = match (prefix_successor(prefix), upper) {
            (Some(a), Some(b)) => Some(a.min(b.to_vec())),
            (a, b) => a.or(b.map(<[u8]>::to_vec)),
        };
        if let Some(end) = end {
            read.set_iterate_upper_bound(end);
        }
        let start = match lower {
            Some(l) if l > prefix => l,
            _ => prefix,
        };
        let mut it = self.db.raw_iterator_opt(read);
        it.seek(start);
        while let Some((k, v)) = it.item() {
            if !k.starts_with(prefix) {
                break;
            }
            if !f(k, v)? {
                return Ok(false);
            }
            it.next();
        }
        it.status()?;
        Ok(true)
    }

    /// A batch deleting the first `limit` keys starting with `prefix`, and whether more follow.
    fn prefix_deletes(&self, prefix: &[u8], limit: usize) -> Result<(WriteBatch, bool)> {
        let mut batch = WriteBatch::default();
        let mut it = self.db.raw_iterator();
        it.seek(prefix);
        while let Some(key) = it.key().filter(|k| k.starts_with(prefix)) {
            if batch.len() == limit {
                return Ok((batch, true));
            }
            batch.delete(key);
            it.next();
        }
        it.status()?;
        Ok((batch, false))
    }

    pub(super) fn delete_prefix(&self, prefix: &[u8], write: &WriteOptions) -> Result<()> {
        match prefix_successor(prefix) {
            Some(end) => {
                // Few keys: point deletes, which keep reads free of range tombstones.
                let (mut batch, more) = self.prefix_deletes(prefix, POINT_DELETE_LIMIT)?;
                if more {
                    batch = WriteBatch::default();
                    batch.delete_range(prefix, end.as_slice());
                }
                self.db.write_opt(batch, write)?;
            }
            // No finite upper bound (empty or all-0xFF prefix): delete what is there, in chunks.
            None => loop {
                let (batch, more) = self.prefix_deletes(prefix, DELETE_CHUNK)?;
                self.db.write_opt(batch, write)?;
                if !more {
                    break;
                }
            },
        }
        Ok(())
    }

    pub(super) fn approximate_size(&self) -> Result<u64> {
        let sst = self
            .db
            .property_int_value(properties::ESTIMATE_LIVE_DATA_SIZE)?
            .unwrap_or(0);
        let mem = self
            .db
            .property_int_value(properties::CUR_SIZE_ALL_MEM_TABLES)?
            .unwrap_or(0);
        Ok(sst + mem)
    }

    /// Drops every entry outside the key groups the segment owns, by ranges:
    /// `DeleteFilesInRange` unlinks the SST files that hold only such key groups, and one range
    /// deletion per gap covers the rest (never a delete per key).
    pub(super) fn drop_foreign_key_groups(&self, write: &WriteOptions) -> Result<()> {
        let mut gaps = Vec::new();
        let mut next = 0usize;
        for r in &self.ranges {
            if next < r.start as usize {
                gaps.push((next, r.start as usize));
            }
            next = r.end as usize + 1;
        }
        if next < MAX_KEY_GROUPS {
            gaps.push((next, MAX_KEY_GROUPS));
        }
        let mut batch = WriteBatch::default();
        for (from, to) in gaps {
            let from = if from == 0 {
                Vec::new()
            } else {
                key_group_start(from).to_vec()
            };
            let to = key_group_start(to).to_vec();
            // `to` is inclusive here; no entry key is exactly two bytes long (see `layout`), so
            // no file holding an entry of a kept key group is dropped.
            self.db.delete_file_in_range(&from, &to)?;
            batch.delete_range(&from, &to);
        }
        Ok(self.db.write_opt(batch, write)?)
    }

    /// Writes a RocksDB checkpoint of the segment into the snapshot directory `dir` (existing),
    /// its files named as [`manifest::file_name`] says; returns their names. With
    /// [`MemtableAtBarrier::Flush`] the memtable is flushed first and the checkpoint is SST
    /// files; with [`MemtableAtBarrier::Log`] the buffered log is written out and the
    /// checkpoint copies the live log files up to their current end, next to the SST files it
    /// links. Files are not yet fsynced.
    pub(super) fn checkpoint_into(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let log_size_for_flush = match self.at_barrier {
            MemtableAtBarrier::Flush => {
                // Writes skip the WAL, so the memtable must reach SST files before the
                // checkpoint links them.
                self.db
                    .flush()
                    .map_err(|e| Error::checkpoint("flushing the memtable").with_source(e))?;
                0
            }
            MemtableAtBarrier::Log => {
                self.db
                    .flush_wal(false)
                    .map_err(|e| Error::checkpoint("writing out the write-ahead log").with_source(e))?;
                // Never flush: the log files carry what the memtable holds.
                u64::MAX
            }
        };
        let staged = dir.join(format!(".segment-{}", self.id));
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint_with_log_size(&staged, log_size_for_flush))
            .map_err(|e| Error::checkpoint("creating the checkpoint").with_source(e))?;
        let mut names = Vec::new();
        let entries = fs::read_dir(&staged).map_err(|e| Error::io(format!("listing {}", staged.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", staged.display()), e))?;
            let name = manifest::file_name(&self.id, &entry.file_name().to_string_lossy());
            fs::rename(entry.path(), dir.join(&name))
                .map_err(|e| Error::io(format!("moving {} into {}", entry.path().display(), dir.display()), e))?;
            names.push(PathBuf::from(name));
        }
        fs::remove_dir(&staged).map_err(|e| Error::io(format!("removing {}", staged.display()), e))?;
        Ok(names)
    }
}
