//! The cache's entries: a hash map from full state keys to their value (or known absence), an
//! ordered set of the same keys for prefix operations, the bytes they take counted against a
//! budget, a queue of dirty entries in the order they became dirty, and CLOCK eviction of clean
//! entries.
//!
//! - A hit is one hash lookup; the ordered set is touched only when an entry is added or
//!   removed, and by prefix operations (`flush_prefix`, `drop_prefix`).
//! - Dirty entries are written back oldest-dirty first ([`Entries::write_back`]), so the dirty
//!   set can be kept small between snapshots while a key rewritten often stays dirty (and is
//!   written once) for as long as the dirty budget allows.
//! - Eviction is CLOCK over a FIFO ring of keys: amortized O(1) per evicted entry.
//!
//! Keys are shared (`Arc<[u8]>`) between the map, the ordered set and the two queues, so an
//! entry costs one key allocation. The queues may hold stale keys (of entries dropped by
//! `drop_prefix`, or written back by a prefix flush); they are skipped when met and compacted
//! when they outnumber the entries.

use crate::state::backend::{prefix_successor, WriteOp};
use crate::Result;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

/// Bytes counted per entry on top of its key and value: its hash-map bucket (key pointer and
/// slot, about 48 bytes at a load factor between 1/2 and 7/8), its share of a B-tree node, its
/// places in the clock ring and the dirty queue, and the allocator's headers and rounding of
/// the key and value allocations. An estimate: the budget bounds the cache's memory to within a
/// small factor, not to the byte.
pub(super) const ENTRY_OVERHEAD: usize = 176;

/// Dirty entries are written to the inner store in batches of at most about this many bytes of
/// keys and values, so that a write-back of many entries does not build one batch as large as
/// the cache (RocksDB copies a batch into one buffer before applying it).
const FLUSH_CHUNK_BYTES: usize = 4 << 20;

/// A queue is compacted when it holds more than twice its live items plus this many.
const QUEUE_SLACK: usize = 1024;

/// A cached key, shared by the map, the ordered set and the queues.
type Key = Arc<[u8]>;

/// What the cache knows of one key.
#[derive(Debug)]
struct Slot {
    /// The value, or `None` for a key known to be absent (deleted, or read and not found).
    value: Option<Vec<u8>>,
    /// Written here and not yet to the inner store.
    dirty: bool,
    /// Read or written since the clock hand last passed it (its second chance).
    referenced: bool,
    /// The key is in the dirty queue (at least once); set while the entry is dirty or until the
    /// queue reaches an entry that a prefix flush wrote back.
    queued: bool,
}

/// The bytes an entry is counted for.
fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// The bounds of the keys starting with `prefix`.
fn prefix_bounds(prefix: &[u8]) -> (Bound<&[u8]>, Bound<Vec<u8>>) {
    let end = match prefix_successor(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix), end)
}

/// A bound over an owned key as a bound over a slice.
fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The cached entries of one store, and their accounting.
#[derive(Debug, Default)]
pub(super) struct Entries {
    /// foldhash: state keys are short byte strings, hashed once per cache operation.
    map: HashMap<Key, Slot, foldhash::fast::RandomState>,
    /// The keys of `map`, in order.
    order: BTreeSet<Key>,
    /// The clock ring: every key of `map` at least once, in the order the hand visits them.
    clock: VecDeque<Key>,
    /// Keys in the order their entries became dirty (the oldest first); see [`Slot::queued`].
    dirty_queue: VecDeque<Key>,
    /// Counted bytes of every entry ([`cost`]).
    bytes: usize,
    /// Number of dirty entries.
    dirty: usize,
    /// Counted bytes of the dirty entries.
    dirty_bytes: usize,
}

impl Entries {
    /// Counted bytes of every entry.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counted bytes of the dirty entries.
    pub(super) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// Number of entries not yet written to the inner store.
    #[cfg(test)]
    pub(super) fn dirty(&self) -> usize {
        self.dirty
    }

    /// Key and value bytes of the dirty entries.
    pub(super) fn dirty_data_bytes(&self) -> u64 {
        (self.dirty_bytes - self.dirty * ENTRY_OVERHEAD) as u64
    }

    /// Number of entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache knows `key` (without marking it referenced).
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// What the cache knows of `key`: `None` when nothing (a miss), `Some(None)` when it is known
    /// to be absent. Marks the entry referenced.
    pub(super) fn get(&mut self, key: &[u8]) -> Option<Option<&[u8]>> {
        let slot = self.map.get_mut(key)?;
        slot.referenced = true;
        Some(slot.value.as_deref())
    }

    /// Remembers what the inner store holds under `key` (after a miss): a clean entry.
    pub(super) fn fill(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.set(key, value, false);
    }

    /// Sets `key` to `value` (`None`: deleted), not yet written to the inner store.
    pub(super) fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.set(key, value, true);
    }

    fn set(&mut self, key: &[u8], value: Option<&[u8]>, dirty: bool) {
        if let Some(slot) = self.map.get_mut(key) {
            let (old, new) = (cost(key, slot.value.as_deref()), cost(key, value));
            self.bytes = self.bytes - old + new;
            match (&mut slot.value, value) {
                // Reuses the value's allocation: a running aggregate rewrites the same key.
                (Some(old), Some(new)) => {
                    old.clear();
                    old.extend_from_slice(new);
                }
                (old, new) => *old = new.map(<[u8]>::to_vec),
            }
            slot.referenced = true;
            if slot.dirty {
                self.dirty_bytes = self.dirty_bytes - old + new;
            } else if dirty {
                slot.dirty = true;
                self.dirty += 1;
                self.dirty_bytes += new;
                if !slot.queued {
                    slot.queued = true;
                    // The key's allocation is shared: find it through the ordered set.
                    let shared = self
                        .order
                        .get(key)
                        .expect("every cached key is in the ordered set")
                        .clone();
                    self.dirty_queue.push_back(shared);
                }
            }
            return;
        }
        let shared: Key = Arc::from(key);
        let c = cost(key, value);
        self.bytes += c;
        if dirty {
            self.dirty += 1;
            self.dirty_bytes += c;
            self.dirty_queue.push_back(shared.clone());
        }
        self.order.insert(shared.clone());
        self.clock.push_back(shared.clone());
        self.map.insert(
            shared,
            Slot {
                value: value.map(<[u8]>::to_vec),
                dirty,
                // A new entry gets no second chance before it was used again: a scan-like pass
                // over many keys then evicts its own entries first.
                referenced: false,
                queued: dirty,
            },
        );
        self.compact_queues();
    }

    /// Marks the entry of `key` clean (it was written to the inner store).
    fn mark_clean(&mut self, key: &[u8]) {
        if let Some(slot) = self.map.get_mut(key) {
            if slot.dirty {
                slot.dirty = false;
                self.dirty -= 1;
                self.dirty_bytes -= cost(key, slot.value.as_deref());
            }
        }
    }

    /// Writes dirty entries with `write`, the oldest-dirty first, until at most `target` counted
    /// bytes are dirty, in batches of about [`FLUSH_CHUNK_BYTES`]; a batch holds a key at most
    /// once, and its entries are clean once `write` returned `Ok` for it. Stops at the first error
    /// (the entries of that batch stay dirty and first in the queue). `write_back(0, ..)` writes
    /// every dirty entry.
    pub(super) fn write_back(
        &mut self,
        target: usize,
        write: &mut dyn FnMut(&[WriteOp<'_>]) -> Result<()>,
    ) -> Result<()> {
        while self.dirty_bytes > target {
            // Take the oldest dirty keys: each live dirty entry is queued at most once as
            // honoured (its `queued` flag is cleared when taken), so a batch has no duplicate.
            let mut taken: Vec<Key> = Vec::new();
            let (mut chunk, mut freed) = (0usize, 0usize);
            while self.dirty_bytes - freed > target && chunk < FLUSH_CHUNK_BYTES {
                let Some(key) = self.dirty_queue.pop_front() else { break };
                let Some(slot) = self.map.get_mut(&*key) else { continue };
                if !slot.queued {
                    continue;
                }
                slot.queued = false;
                if !slot.dirty {
                    continue;
                }
                let c = cost(&key, slot.value.as_deref());
                freed += c;
                chunk += c - ENTRY_OVERHEAD;
                taken.push(key);
            }
            if taken.is_empty() {
                return Ok(());
            }
            let result = {
                let ops: Vec<WriteOp<'_>> = taken
                    .iter()
                    .map(|k| match &self.map[&**k].value {
                        Some(v) => WriteOp::Put(k, v),
                        None => WriteOp::Delete(k),
                    })
                    .collect();
                write(&ops)
            };
            if let Err(e) = result {
                // Back to the front of the queue, in their order: still the oldest dirty.
                for key in taken.into_iter().rev() {
                    if let Some(slot) = self.map.get_mut(&*key) {
                        slot.queued = true;
                    }
                    self.dirty_queue.push_front(key);
                }
                return Err(e);
            }
            for key in &taken {
                self.mark_clean(key);
            }
        }
        Ok(())
    }

    /// Writes every dirty entry whose key starts with `prefix` with `write`, in key order and in
    /// batches of about [`FLUSH_CHUNK_BYTES`]; each batch's entries are clean once `write`
    /// returned `Ok` for it. Stops at the first error (the entries of that batch stay dirty).
    /// The written entries stay in the dirty queue until it reaches them (and skips them).
    pub(super) fn flush_prefix(
        &mut self,
        prefix: &[u8],
        write: &mut dyn FnMut(&[WriteOp<'_>]) -> Result<()>,
    ) -> Result<()> {
        if self.dirty == 0 {
            return Ok(());
        }
        if prefix.is_empty() {
            return self.write_back(0, write);
        }
        let (lower, upper) = prefix_bounds(prefix);
        let keys: Vec<Key> = self
            .order
            .range::<[u8], _>((lower, as_ref(&upper)))
            .filter(|k| self.map[&***k].dirty)
            .cloned()
            .collect();
        let mut start = 0;
        while start < keys.len() {
            let mut end = start;
            let mut chunk = 0usize;
            while end < keys.len() && chunk < FLUSH_CHUNK_BYTES {
                chunk += cost(&keys[end], self.map[&*keys[end]].value.as_deref()) - ENTRY_OVERHEAD;
                end += 1;
            }
            let ops: Vec<WriteOp<'_>> = keys[start..end]
                .iter()
                .map(|k| match &self.map[&**k].value {
                    Some(v) => WriteOp::Put(k, v),
                    None => WriteOp::Delete(k),
                })
                .collect();
            write(&ops)?;
            drop(ops);
            for key in &keys[start..end] {
                self.mark_clean(key);
            }
            start = end;
        }
        Ok(())
    }

    /// Forgets every entry whose key starts with `prefix`, dirty ones included (the caller
    /// deletes the prefix in the inner store).
    pub(super) fn drop_prefix(&mut self, prefix: &[u8]) {
        let (lower, upper) = prefix_bounds(prefix);
        let doomed: Vec<Key> = self.order.range::<[u8], _>((lower, as_ref(&upper))).cloned().collect();
        for k in doomed {
            self.remove(&k);
        }
        self.compact_queues();
    }

    /// Removes the entry of `key` from the map and the ordered set (the queues skip it).
    fn remove(&mut self, key: &[u8]) {
        if let Some(slot) = self.map.remove(key) {
            let c = cost(key, slot.value.as_deref());
            self.bytes -= c;
            if slot.dirty {
                self.dirty -= 1;
                self.dirty_bytes -= c;
            }
            self.order.remove(key);
        }
    }

    /// Rebuilds a queue that holds more than twice as many keys as it should (stale keys of
    /// dropped entries, or a key queued again after it was dropped and added back).
    fn compact_queues(&mut self) {
        if self.clock.len() > 2 * self.map.len() + QUEUE_SLACK {
            let mut seen: HashSet<Key> = HashSet::with_capacity(self.map.len());
            let map = &self.map;
            self.clock.retain(|k| map.contains_key(&**k) && seen.insert(k.clone()));
        }
        if self.dirty_queue.len() > 2 * self.dirty + QUEUE_SLACK {
            // Keep the first item of each queued entry (its oldest place), drop the others.
            let mut seen: HashSet<Key> = HashSet::with_capacity(self.dirty);
            let map = &self.map;
            self.dirty_queue
                .retain(|k| map.get(&**k).is_some_and(|s| s.queued) && seen.insert(k.clone()));
        }
    }

    /// Evicts clean entries until at most `target` bytes are counted, or none is left to evict:
    /// CLOCK over the ring of keys. A referenced entry loses its reference and goes to the back
    /// of the ring once; dirty entries are never evicted (they go to the back too).
    pub(super) fn evict_to(&mut self, target: usize) {
        // Each entry is passed over at most twice per call (once to clear its reference, once
        // more when it is dirty): stop when the hand went round twice without finding room.
        let mut steps = 2 * self.clock.len() + 1;
        while self.bytes > target && steps > 0 {
            steps -= 1;
            let Some(key) = self.clock.pop_front() else { return };
            let Some(slot) = self.map.get_mut(&*key) else { continue };
            if slot.dirty || slot.referenced {
                slot.referenced = false;
                self.clock.push_back(key);
                continue;
            }
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u8) -> Vec<u8> {
        vec![n; 4]
    }

    type Batches = Vec<Vec<(Vec<u8>, Option<Vec<u8>>)>>;

    fn record(seen: &mut Batches) -> impl FnMut(&[WriteOp<'_>]) -> Result<()> + '_ {
        move |ops| {
            seen.push(
                ops.iter()
                    .map(|op| match *op {
                        WriteOp::Put(k, v) => (k.to_vec(), Some(v.to_vec())),
                        WriteOp::Delete(k) => (k.to_vec(), None),
                    })
                    .collect(),
            );
            Ok(())
        }
    }

    #[test]
    fn accounting_follows_writes_and_drops() {
        let mut entries = Entries::default();
        entries.fill(&e(1), Some(b"abc"));
        entries.write(&e(2), None);
        assert_eq!(entries.bytes(), 4 + 3 + 4 + 2 * ENTRY_OVERHEAD);
        assert_eq!(entries.dirty(), 1);
        assert_eq!(entries.dirty_bytes(), 4 + ENTRY_OVERHEAD);
        entries.write(&e(1), Some(b"a"));
        assert_eq!(entries.bytes(), 4 + 1 + 4 + 2 * ENTRY_OVERHEAD);
        assert_eq!(entries.dirty(), 2);
        assert_eq!(entries.dirty_data_bytes(), 4 + 1 + 4);
        assert_eq!(entries.get(&e(1)), Some(Some(&b"a"[..])));
        assert_eq!(entries.get(&e(2)), Some(None), "a delete is remembered as absence");
        assert_eq!(entries.get(&e(3)), None);
        entries.drop_prefix(&[1]);
        assert_eq!((entries.len(), entries.dirty()), (1, 1));
        assert_eq!(entries.bytes(), 4 + ENTRY_OVERHEAD);
        assert_eq!(entries.dirty_bytes(), 4 + ENTRY_OVERHEAD);
    }

    #[test]
    fn flush_writes_only_dirty_entries_under_the_prefix_then_they_are_clean() {
        let mut entries = Entries::default();
        entries.write(&[1, 3], None);
        entries.write(&[1, 1], Some(b"x"));
        entries.fill(&[1, 2], Some(b"clean"));
        entries.write(&[2, 1], Some(b"y"));
        let mut seen = Batches::new();
        entries.flush_prefix(&[1], &mut record(&mut seen)).unwrap();
        assert_eq!(
            seen,
            vec![vec![(vec![1, 1], Some(b"x".to_vec())), (vec![1, 3], None)]],
            "one batch, in key order"
        );
        assert_eq!(entries.dirty(), 1, "[2, 1] is outside the prefix");
        seen.clear();
        entries.flush_prefix(&[], &mut record(&mut seen)).unwrap();
        assert_eq!(seen, vec![vec![(vec![2, 1], Some(b"y".to_vec()))]]);
        assert_eq!(entries.dirty(), 0);
        assert_eq!(entries.len(), 4, "flushed entries stay cached");
    }

    #[test]
    fn write_back_takes_the_oldest_dirty_first_and_keeps_the_newest() {
        let mut entries = Entries::default();
        for i in [5u8, 1, 4, 2, 3] {
            entries.write(&e(i), Some(b"v"));
        }
        // Rewriting a dirty entry keeps its place: it became dirty first.
        entries.write(&e(5), Some(b"w"));
        let one = cost(&e(0), Some(b"v"));
        let mut seen = Batches::new();
        entries.write_back(2 * one, &mut record(&mut seen)).unwrap();
        let keys: Vec<Vec<u8>> = seen.concat().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![e(5), e(1), e(4)]);
        assert_eq!(seen[0][0].1.as_deref(), Some(&b"w"[..]), "the last value");
        assert_eq!(entries.dirty(), 2);
        // Written back, then dirty again: queued again, behind the others.
        entries.write(&e(5), Some(b"x"));
        seen.clear();
        entries.write_back(0, &mut record(&mut seen)).unwrap();
        let keys: Vec<Vec<u8>> = seen.concat().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![e(2), e(3), e(5)]);
        assert_eq!((entries.dirty(), entries.dirty_bytes()), (0, 0));
        assert_eq!(entries.len(), 5);
    }

    #[test]
    fn a_key_is_written_once_per_batch_after_a_prefix_flush_a_drop_and_a_rewrite() {
        let mut entries = Entries::default();
        entries.write(&[1, 1], Some(b"a"));
        let mut seen = Batches::new();
        // Written by a scan's flush, dirty again: still queued once.
        entries.flush_prefix(&[1], &mut record(&mut seen)).unwrap();
        entries.write(&[1, 1], Some(b"b"));
        // Dropped while dirty, then written again: a new entry, queued anew.
        entries.write(&[2, 1], Some(b"c"));
        entries.drop_prefix(&[2]);
        entries.write(&[2, 1], Some(b"d"));
        seen.clear();
        entries.write_back(0, &mut record(&mut seen)).unwrap();
        assert_eq!(
            seen,
            vec![vec![
                (vec![1, 1], Some(b"b".to_vec())),
                (vec![2, 1], Some(b"d".to_vec()))
            ]]
        );
        assert_eq!(entries.dirty(), 0);
    }

    #[test]
    fn a_failed_write_back_leaves_its_batch_dirty_and_first() {
        let mut entries = Entries::default();
        entries.write(&e(1), Some(b"x"));
        entries.write(&e(2), Some(b"y"));
        let e1 = entries.write_back(0, &mut |_| Err(crate::Error::data("disk full")));
        assert!(e1.is_err());
        assert_eq!(entries.dirty(), 2);
        entries.write(&e(3), Some(b"z"));
        let mut seen = Batches::new();
        entries.write_back(0, &mut record(&mut seen)).unwrap();
        let keys: Vec<Vec<u8>> = seen.concat().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![e(1), e(2), e(3)]);
    }

    #[test]
    fn large_write_backs_are_written_in_chunks() {
        let mut entries = Entries::default();
        let value = vec![7u8; 64 * 1024];
        for i in 0..200u32 {
            entries.write(&i.to_be_bytes(), Some(&value));
        }
        let mut batches = Vec::new();
        let mut keys = Vec::new();
        entries
            .write_back(0, &mut |ops| {
                batches.push(ops.len());
                keys.extend(ops.iter().map(|op| op.key().to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(batches.len() >= 3, "{batches:?}");
        let expected: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, expected, "every entry once, oldest first");
        assert_eq!(entries.dirty(), 0);
    }

    #[test]
    fn eviction_spares_dirty_and_recently_used_entries() {
        let mut entries = Entries::default();
        for i in 0..10u8 {
            entries.fill(&e(i), Some(b"v"));
        }
        entries.write(&e(3), Some(b"dirty"));
        // Used after being filled: a second chance.
        entries.get(&e(5)).unwrap();
        let one = cost(&e(0), Some(b"v"));
        entries.evict_to(entries.bytes() - 4 * one);
        assert_eq!(entries.len(), 6);
        for (i, kept) in [(0, false), (1, false), (2, false), (3, true), (4, false), (5, true)] {
            assert_eq!(entries.contains(&e(i)), kept, "entry {i}");
        }
        // The hand goes on from where it stopped: 6 is next.
        entries.evict_to(entries.bytes() - one);
        assert!(!entries.contains(&e(6)));
        // Everything clean can go; the dirty entry stays.
        entries.evict_to(0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries.get(&e(3)), Some(Some(&b"dirty"[..])));
        assert_eq!(entries.bytes(), cost(&e(3), Some(b"dirty")));
    }

    #[test]
    fn queues_stay_bounded_when_entries_are_dropped_and_added_back() {
        let mut entries = Entries::default();
        for round in 0..50u32 {
            for i in 0..100u32 {
                entries.write(&[&[9u8][..], &i.to_be_bytes()].concat(), Some(&round.to_be_bytes()));
            }
            entries.drop_prefix(&[9]);
        }
        assert_eq!((entries.len(), entries.dirty()), (0, 0));
        assert!(entries.clock.len() <= QUEUE_SLACK + 100, "{}", entries.clock.len());
        assert!(
            entries.dirty_queue.len() <= QUEUE_SLACK + 100,
            "{}",
            entries.dirty_queue.len()
        );
    }
}
