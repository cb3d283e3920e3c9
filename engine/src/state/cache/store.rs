//! [`CachedStore`]: a [`KeyedStore`] that keeps hot entries, and writes not yet applied, in
//! memory in front of another store.

use super::entries::Entries;
use crate::state::backend::{KeyedStore, WriteOp};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A write-back cache in front of a keyed store.
///
/// Reads are answered from the cache when it knows the key (its value, or that it is absent);
/// a miss reads the inner store and remembers the answer. Puts and deletes change only the cache
/// and mark the entry dirty. Dirty entries are written to the inner store with
/// [`KeyedStore::write_batch`] (in key order, in batches of a few MiB):
/// - all of them before [`snapshot_to`](KeyedStore::snapshot_to) delegates;
/// - all of them when the cache's bytes exceed its budget, after which clean entries are
///   evicted (CLOCK) down to 7/8 of the budget;
/// - those under the prefix before a scan, so that the inner store's scan sees them.
///
/// `delete_prefix` deletes in the inner store and forgets the cached entries under the prefix,
/// dirty ones included.
///
/// # After a crash
/// Nothing is durable before `snapshot_to`, with or without the cache: the inner store is not
/// durable either (RocksDB runs without its write-ahead log and its working directory is
/// deleted on the next open). The cache changes nothing in a snapshot: `snapshot_to` first
/// writes every dirty entry, so the snapshot holds exactly the writes made before it, as the
/// inner store's would. A failed write leaves the entries dirty, and the snapshot fails.
pub struct CachedStore {
    inner: Box<dyn KeyedStore>,
    entries: Entries,
    /// The most bytes the entries are counted for before dirty entries are written and clean
    /// ones evicted.
    budget: usize,
}

impl CachedStore {
    /// A cache of at most about `budget` bytes (keys, values and a per-entry overhead) in front
    /// of `inner`. A budget smaller than one entry still works: every write then goes to `inner`
    /// at the next operation that needs room.
    pub fn new(inner: Box<dyn KeyedStore>, budget: usize) -> Self {
        CachedStore {
            inner,
            entries: Entries::default(),
            budget,
        }
    }

    /// Writes the dirty entries under `prefix` (all of them for an empty prefix) to the inner
    /// store.
    fn flush(&mut self, prefix: &[u8]) -> Result<()> {
        let inner = &mut self.inner;
        self.entries
            .flush_prefix(prefix, &mut |ops: &[WriteOp<'_>]| inner.write_batch(ops))
    }

    /// Keeps the cache within its budget: over it, writes every dirty entry, then evicts clean
    /// ones down to 7/8 of the budget (so that the next flush comes after a batch's worth of
    /// new entries, not at the next write).
    fn make_room(&mut self) -> Result<()> {
        if self.entries.bytes() <= self.budget {
            return Ok(());
        }
        self.flush(&[])?;
        self.entries.evict_to(self.budget - self.budget / 8);
        Ok(())
    }

    /// Counted bytes of the cached entries.
    #[cfg(test)]
    pub(super) fn cached_bytes(&self) -> usize {
        self.entries.bytes()
    }

    /// Number of entries not yet written to the inner store.
    #[cfg(test)]
    pub(super) fn dirty_entries(&self) -> usize {
        self.entries.dirty()
    }
}

impl KeyedStore for CachedStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(known) = self.entries.get(key) {
            return Ok(known.map(<[u8]>::to_vec));
        }
        let value = self.inner.get(key)?;
        self.entries.fill(key, value.as_deref());
        self.make_room()?;
        Ok(value)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.entries.write(key, Some(value));
        self.make_room()
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.entries.write(key, None);
        self.make_room()
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        self.flush(prefix)?;
        self.inner.scan_prefix(prefix, f)
    }

    fn scan_prefix_from(
        &mut self,
        prefix: &[u8],
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.flush(prefix)?;
        self.inner.scan_prefix_from(prefix, from, f)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        self.inner.delete_prefix(prefix)?;
        self.entries.drop_prefix(prefix);
        Ok(())
    }

    /// The inner store's estimate plus the keys and values of the dirty entries (an entry
    /// that overwrites one of the inner store counts twice), without writing anything.
    fn approximate_size(&mut self) -> Result<u64> {
        Ok(self.inner.approximate_size()? + self.entries.dirty_bytes())
    }

    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.flush(&[]).map_err(|e| {
            Error::checkpoint(format!(
                "writing the state cache's dirty entries to the store before the snapshot into {}",
                dir.display()
            ))
            .with_source(e)
        })?;
        self.inner.snapshot_to(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::conformance::{scan_all, scope};
    use crate::state::{MemoryBackend, RocksDbBackend, StateBackend};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// What the cache asked of the inner store.
    #[derive(Default)]
    struct Calls {
        gets: AtomicUsize,
        puts: AtomicUsize,
        batches: AtomicUsize,
        batched_ops: AtomicUsize,
        /// Fail every write batch while set.
        fail_writes: AtomicBool,
    }

    /// A store that counts the calls it gets and forwards them to a memory store.
    struct Counting {
        inner: Box<dyn KeyedStore>,
        calls: Arc<Calls>,
    }

    impl KeyedStore for Counting {
        fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.calls.gets.fetch_add(1, Ordering::Relaxed);
            self.inner.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.calls.puts.fetch_add(1, Ordering::Relaxed);
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<()> {
            self.calls.puts.fetch_add(1, Ordering::Relaxed);
            self.inner.delete(key)
        }
        fn write_batch(&mut self, ops: &[WriteOp<'_>]) -> Result<()> {
            if self.calls.fail_writes.load(Ordering::Relaxed) {
                return Err(Error::external(true, "injected write failure"));
            }
            self.calls.batches.fetch_add(1, Ordering::Relaxed);
            self.calls.batched_ops.fetch_add(ops.len(), Ordering::Relaxed);
            self.inner.write_batch(ops)
        }
        fn scan_prefix(&mut self, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
            self.inner.scan_prefix(prefix, f)
        }
        fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
            self.inner.delete_prefix(prefix)
        }
        fn approximate_size(&mut self) -> Result<u64> {
            self.inner.approximate_size()
        }
        fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
            self.inner.snapshot_to(dir)
        }
    }

    fn counted(budget: usize) -> (CachedStore, Arc<Calls>) {
        let calls = Arc::new(Calls::default());
        let inner = Counting {
            inner: MemoryBackend::new().open_store(&scope(0), None).unwrap(),
            calls: calls.clone(),
        };
        (CachedStore::new(Box::new(inner), budget), calls)
    }

    #[test]
    fn updates_of_a_hot_key_reach_the_inner_store_once_per_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut store, calls) = counted(1 << 20);
        for i in 0..1000u64 {
            let sum = store
                .get(b"account-7")
                .unwrap()
                .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
            store.put(b"account-7", &(sum + i).to_be_bytes()).unwrap();
        }
        assert_eq!(store.get(b"never written").unwrap(), None);
        assert_eq!(store.get(b"never written").unwrap(), None, "absence is remembered");
        assert_eq!(calls.gets.load(Ordering::Relaxed), 2, "one miss per key");
        assert_eq!(calls.batches.load(Ordering::Relaxed), 0);
        store.snapshot_to(&tmp.path().join("1")).unwrap();
        assert_eq!(calls.batches.load(Ordering::Relaxed), 1);
        assert_eq!(calls.batched_ops.load(Ordering::Relaxed), 1, "the last value only");
        assert_eq!(calls.puts.load(Ordering::Relaxed), 0, "no write bypassed the batch");
        let mut restored = MemoryBackend::new()
            .open_store(&scope(0), Some(&tmp.path().join("1")))
            .unwrap();
        let want: u64 = (0..1000).sum();
        assert_eq!(restored.get(b"account-7").unwrap(), Some(want.to_be_bytes().to_vec()));
        // Clean entries stay cached: the next snapshot writes nothing.
        assert_eq!(store.get(b"account-7").unwrap(), Some(want.to_be_bytes().to_vec()));
        store.snapshot_to(&tmp.path().join("2")).unwrap();
        assert_eq!(calls.batches.load(Ordering::Relaxed), 1);
        assert_eq!(calls.gets.load(Ordering::Relaxed), 2);
    }

    /// Writes that are only in the cache when the snapshot is taken are in the snapshot (RocksDB
    /// underneath); writes after it are not.
    #[test]
    fn a_snapshot_holds_the_writes_that_were_only_in_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let rocks = RocksDbBackend::new(tmp.path().join("state")).cache_size(0);
        let mut store = CachedStore::new(rocks.open_store(&scope(0), None).unwrap(), 1 << 20);
        store.put(b"a", b"1").unwrap();
        store.put(b"b", b"2").unwrap();
        store.put(b"c", b"3").unwrap();
        let first = tmp.path().join("snap-1");
        store.snapshot_to(&first).unwrap();
        assert_eq!(store.dirty_entries(), 0);

        store.put(b"a", b"10").unwrap();
        store.delete(b"b").unwrap();
        store.put(b"d", b"4").unwrap();
        assert_eq!(store.dirty_entries(), 3, "the writes are in the cache only");
        let second = tmp.path().join("snap-2");
        store.snapshot_to(&second).unwrap();
        store.put(b"e", b"after").unwrap();
        store.delete(b"c").unwrap();

        let entries = |dir: &Path, subtask: usize| {
            let mut restored = rocks.open_store(&scope(subtask), Some(dir)).unwrap();
            scan_all(restored.as_mut(), b"")
        };
        let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        assert_eq!(entries(&first, 1), vec![kv("a", "1"), kv("b", "2"), kv("c", "3")]);
        assert_eq!(entries(&second, 2), vec![kv("a", "10"), kv("c", "3"), kv("d", "4")]);
        assert_eq!(
            scan_all(&mut store, b""),
            vec![kv("a", "10"), kv("d", "4"), kv("e", "after")],
            "a scan sees the cached writes"
        );
    }

    #[test]
    fn a_failed_write_fails_the_snapshot_and_keeps_the_entries_dirty() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut store, calls) = counted(1 << 20);
        store.put(b"k", b"v").unwrap();
        calls.fail_writes.store(true, Ordering::Relaxed);
        let e = store.snapshot_to(&tmp.path().join("1")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Checkpoint, "{e}");
        assert!(e.to_string().contains("state cache"), "{e}");
        assert_eq!(store.dirty_entries(), 1);
        calls.fail_writes.store(false, Ordering::Relaxed);
        store.snapshot_to(&tmp.path().join("2")).unwrap();
        let mut restored = MemoryBackend::new()
            .open_store(&scope(0), Some(&tmp.path().join("2")))
            .unwrap();
        assert_eq!(restored.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// State many times the budget: the cache stays within it (plus the entry being added),
    /// writes reach the inner store in batches, and every key reads back.
    #[test]
    fn state_larger_than_the_budget_stays_correct_and_bounded() {
        let budget = 16 * 1024;
        let (mut store, calls) = counted(budget);
        let value = |i: u32, round: u32| format!("{i}-{round}-{}", "x".repeat(40)).into_bytes();
        for round in 0..3u32 {
            for i in 0..2000u32 {
                store.put(&i.to_be_bytes(), &value(i, round)).unwrap();
                assert!(store.cached_bytes() <= budget, "{} bytes cached", store.cached_bytes());
            }
            if round == 1 {
                for i in (0..2000u32).step_by(3) {
                    store.delete(&i.to_be_bytes()).unwrap();
                }
            }
        }
        for i in 0..2000u32 {
            assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(value(i, 2)), "key {i}");
        }
        let batches = calls.batches.load(Ordering::Relaxed);
        let ops = calls.batched_ops.load(Ordering::Relaxed);
        assert!(batches > 10 && ops / batches > 5, "{batches} batches of {ops} writes");
        assert_eq!(calls.puts.load(Ordering::Relaxed), 0);
        assert_eq!(scan_all(&mut store, b"").len(), 2000);
    }

    #[test]
    fn delete_prefix_forgets_cached_entries_under_it_only() {
        let (mut store, _) = counted(1 << 20);
        store.put(b"ab1", b"1").unwrap();
        store.put(b"ab2", b"2").unwrap();
        store.put(b"ac", b"3").unwrap();
        store
            .snapshot_to(&tempfile::tempdir().unwrap().path().join("s"))
            .unwrap();
        store.put(b"ab3", b"dirty").unwrap();
        store.delete_prefix(b"ab").unwrap();
        assert_eq!(store.get(b"ab1").unwrap(), None);
        assert_eq!(store.get(b"ab3").unwrap(), None);
        assert_eq!(store.get(b"ac").unwrap(), Some(b"3".to_vec()));
        assert_eq!(scan_all(&mut store, b"a"), vec![(b"ac".to_vec(), b"3".to_vec())]);
    }
}
