//! [`CachedStore`]: a [`KeyedStore`] that keeps hot entries, and writes not yet applied, in
//! memory in front of another store.

use super::admission::Admission;
use super::entries::Entries;
use crate::state::backend::{EntryVisitor, KeyedStore, WriteOp};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The share of the budget that dirty entries may take (1/16): what a snapshot may have to
/// write at its barrier. Past it, the oldest-dirty half is written back.
const DIRTY_SHARE: usize = 16;

/// A write-back cache in front of a keyed store.
///
/// Reads are answered from the cache when it knows the key (its value, or that it is absent);
/// a miss reads the inner store and remembers the answer, unless the recent reads hit so rarely
/// that the cache only samples misses (see `admission`). Puts and deletes change only the cache
/// and mark the entry dirty, except, while sampling, those of keys the cache does not hold,
/// which go to the inner store directly. Dirty entries are written to the inner store with
/// [`KeyedStore::write_batch`] (in batches of a few MiB):
/// - continuously, as records are processed: when the dirty entries take more than 1/16 of the
///   budget, the oldest-dirty ones are written until they take half of that, so a key
///   rewritten often is written about once per such period and the dirty set stays small;
/// - all of them (at most 1/16 of the budget) before [`snapshot_to`](KeyedStore::snapshot_to)
///   delegates;
/// - those under the prefix, in key order, before a scan, so that the inner store's scan sees
///   them.
///
/// Clean entries are evicted (CLOCK) when the cache's bytes exceed its budget.
/// `delete_prefix` deletes in the inner store and forgets the cached entries under the prefix,
/// dirty ones included.
///
/// # After a crash
/// Nothing is durable before `snapshot_to`, with or without the cache: the inner store is not
/// durable either (RocksDB runs without its write-ahead log and its working directory is
/// deleted on the next open), and an entry written back between snapshots is only in the inner
/// store's working state. A snapshot holds exactly the writes made before it, as the inner
/// store's would: `snapshot_to` first writes every entry still dirty, then the inner store takes
/// its snapshot, which therefore sees every earlier write (whether written back earlier, at the
/// barrier, or directly) and none made after it. A failed write leaves the entries dirty, and
/// the snapshot fails.
pub struct CachedStore {
    inner: Box<dyn KeyedStore>,
    entries: Entries,
    admission: Admission,
    /// The most bytes the entries are counted for before clean ones are evicted.
    budget: usize,
    /// The most bytes the dirty entries are counted for before the oldest are written back.
    dirty_budget: usize,
}

impl CachedStore {
    /// A cache of at most about `budget` bytes (keys, values and a per-entry overhead) in front
    /// of `inner`. A budget smaller than one entry still works: every write then goes to `inner`
    /// at once.
    pub fn new(inner: Box<dyn KeyedStore>, budget: usize) -> Self {
        CachedStore {
            inner,
            entries: Entries::default(),
            admission: Admission::default(),
            budget,
            dirty_budget: budget / DIRTY_SHARE,
        }
    }

    /// Writes the dirty entries under `prefix` (all of them for an empty prefix) to the inner
    /// store.
    fn flush(&mut self, prefix: &[u8]) -> Result<()> {
        let inner = &mut self.inner;
        self.entries
            .flush_prefix(prefix, &mut |ops: &[WriteOp<'_>]| inner.write_batch(ops))
    }

    /// Keeps the cache within its budgets: past the dirty budget, writes the oldest-dirty
    /// entries back until they take half of it; past the budget, evicts clean entries.
    fn make_room(&mut self) -> Result<()> {
        if self.entries.dirty_bytes() > self.dirty_budget {
            let inner = &mut self.inner;
            self.entries
                .write_back(self.dirty_budget / 2, &mut |ops: &[WriteOp<'_>]| inner.write_batch(ops))?;
        }
        if self.entries.bytes() > self.budget {
            self.entries.evict_to(self.budget);
        }
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

    /// Counted bytes of the entries not yet written to the inner store.
    #[cfg(test)]
    pub(super) fn dirty_bytes(&self) -> usize {
        self.entries.dirty_bytes()
    }
}

impl KeyedStore for CachedStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(known) = self.entries.get(key) {
            let value = known.map(<[u8]>::to_vec);
            self.admission.hit();
            return Ok(value);
        }
        let value = self.inner.get(key)?;
        if self.admission.miss() {
            self.entries.fill(key, value.as_deref());
            self.make_room()?;
        }
        Ok(value)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.admission.sampling() && !self.entries.contains(key) {
            return self.inner.put(key, value);
        }
        self.entries.write(key, Some(value));
        self.make_room()
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if self.admission.sampling() && !self.entries.contains(key) {
            return self.inner.delete(key);
        }
        self.entries.write(key, None);
        self.make_room()
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.flush(prefix)?;
        self.inner.scan_prefix(prefix, f)
    }

    fn scan_prefix_from(&mut self, prefix: &[u8], from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
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
        Ok(self.inner.approximate_size()? + self.entries.dirty_data_bytes())
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
        fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
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
        assert!(batches > 10 && ops / batches >= 2, "{batches} batches of {ops} writes");
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

    /// The restored content of a snapshot taken by a store over the memory backend.
    fn restored(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut restored = MemoryBackend::new().open_store(&scope(0), Some(dir)).unwrap();
        scan_all(restored.as_mut(), b"")
    }

    /// Writes past the dirty budget are written back as records come, oldest first, so the
    /// dirty set never exceeds 1/16 of the budget; a snapshot right after a write-back holds
    /// every write before it (written back or still dirty), and none after it.
    #[test]
    fn continuous_write_back_bounds_the_dirty_set_and_snapshots_stay_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let budget = 64 * 1024;
        let (mut store, calls) = counted(budget);
        let mut model = std::collections::BTreeMap::new();
        for i in 0..600u32 {
            let key = (i % 150).to_be_bytes();
            let value = format!("{i}-{}", "v".repeat(i as usize % 20)).into_bytes();
            store.put(&key, &value).unwrap();
            model.insert(key.to_vec(), value);
            assert!(
                store.dirty_bytes() <= budget / DIRTY_SHARE,
                "{} dirty bytes",
                store.dirty_bytes()
            );
        }
        let before = calls.batches.load(Ordering::Relaxed);
        assert!(before > 5, "written back continuously: {before} batches");
        assert!(store.dirty_entries() > 0, "the last slice is still dirty");
        // A write-back just happened: the snapshot follows it directly.
        let mut n = 1000u32;
        while calls.batches.load(Ordering::Relaxed) == before {
            let key = 7u32.to_be_bytes();
            store.put(&key, b"last before the barrier").unwrap();
            model.insert(key.to_vec(), b"last before the barrier".to_vec());
            // A new key put then deleted: a dirty delete, which is written back too.
            store.put(&n.to_be_bytes(), b"filler").unwrap();
            store.delete(&n.to_be_bytes()).unwrap();
            n += 1;
            assert!(n < 2000, "no write-back");
        }
        store.snapshot_to(&tmp.path().join("1")).unwrap();
        assert_eq!(store.dirty_entries(), 0);
        store.put(&7u32.to_be_bytes(), b"after the barrier").unwrap();
        store.put(&2000u32.to_be_bytes(), b"after").unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        assert_eq!(restored(&tmp.path().join("1")), want);
    }

    /// A delete written back, then a put of the same key: the snapshot has the put; a delete
    /// written back and not followed by a put: the snapshot has no entry.
    #[test]
    fn deletes_written_back_then_put_again_are_in_the_snapshot_as_the_last_write() {
        let tmp = tempfile::tempdir().unwrap();
        // 4 KiB: every few writes go back.
        let (mut store, calls) = counted(4 * 1024);
        for i in 0..20u32 {
            store.put(&i.to_be_bytes(), b"first").unwrap();
        }
        store.snapshot_to(&tmp.path().join("1")).unwrap();
        let before = calls.batches.load(Ordering::Relaxed);
        for i in 0..20u32 {
            store.delete(&i.to_be_bytes()).unwrap();
        }
        assert!(
            calls.batches.load(Ordering::Relaxed) > before,
            "deletes were written back"
        );
        for i in (0..20u32).step_by(2) {
            assert_eq!(store.get(&i.to_be_bytes()).unwrap(), None);
            store.put(&i.to_be_bytes(), b"again").unwrap();
        }
        store.snapshot_to(&tmp.path().join("2")).unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = (0..20u32)
            .step_by(2)
            .map(|i| (i.to_be_bytes().to_vec(), b"again".to_vec()))
            .collect();
        assert_eq!(restored(&tmp.path().join("2")), want);
        assert_eq!(restored(&tmp.path().join("1")).len(), 20);
    }

    /// Reads of keys far more numerous than the cache holds: misses stop filling (one in a
    /// sample does), writes of keys it does not hold go to the inner store directly, and
    /// everything reads back and is in the snapshot.
    #[test]
    fn state_far_larger_than_the_cache_bypasses_it_and_stays_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut store, calls) = counted(8 * 1024);
        let keys = 20_000u32;
        for round in 0..3u32 {
            for i in 0..keys {
                // The running-sum pattern: read, then write the key.
                let key = ((i as u64 * 7919) % keys as u64).to_be_bytes();
                let sum = store
                    .get(&key)
                    .unwrap()
                    .map_or(0, |v| u32::from_be_bytes(v.try_into().unwrap()));
                store.put(&key, &(sum + round + 1).to_be_bytes()).unwrap();
                assert!(store.cached_bytes() <= 8 * 1024);
            }
        }
        let direct = calls.puts.load(Ordering::Relaxed);
        assert!(
            direct > (keys as usize) * 3 / 2,
            "{direct} writes went to the store directly"
        );
        store.snapshot_to(&tmp.path().join("1")).unwrap();
        let got = restored(&tmp.path().join("1"));
        assert_eq!(got.len(), keys as usize);
        assert!(
            got.iter().all(|(_, v)| v[..] == 6u32.to_be_bytes()),
            "every key summed 1 + 2 + 3"
        );
    }
}
