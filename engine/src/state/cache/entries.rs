//! The cache's entries: an ordered map from full state keys to their value (or known absence),
//! the bytes they take counted against a budget, and CLOCK eviction of clean entries.
//!
//! The map is ordered so that the entries under a prefix are found without visiting the others:
//! a scan writes only the dirty entries under its prefix, and `delete_prefix` drops only the
//! entries under its prefix. The clock hand sweeps in key order.

use crate::state::backend::{prefix_successor, WriteOp};
use crate::Result;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Bytes counted per entry on top of its key and value: its share of a B-tree node (key and slot
/// headers, 48 bytes, in nodes about two-thirds full) and the allocator's rounding and headers
/// of the key and value allocations. An estimate: the budget bounds the cache's memory to
/// within a small factor, not to the byte.
pub(super) const ENTRY_OVERHEAD: usize = 96;

/// Dirty entries are written to the inner store in batches of at most about this many bytes of
/// keys and values, so that a flush of a large cache does not build one batch as large as the
/// cache (RocksDB copies a batch into one buffer before applying it).
const FLUSH_CHUNK_BYTES: usize = 4 << 20;

/// What the cache knows of one key.
#[derive(Debug)]
struct Slot {
    /// The value, or `None` for a key known to be absent (deleted, or read and not found).
    value: Option<Vec<u8>>,
    /// Written here and not yet to the inner store.
    dirty: bool,
    /// Read or written since the clock hand last passed it (its second chance).
    referenced: bool,
}

/// The bytes an entry is counted for.
fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// The bounds of the keys starting with `prefix`.
fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = match prefix_successor(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix.to_vec()), end)
}

/// The cached entries of one store, and their accounting.
#[derive(Debug, Default)]
pub(super) struct Entries {
    map: BTreeMap<Box<[u8]>, Slot>,
    /// Counted bytes of every entry ([`cost`]).
    bytes: usize,
    /// Number of dirty entries.
    dirty: usize,
    /// The key the clock hand stopped at: the next sweep starts after it.
    hand: Option<Box<[u8]>>,
}

impl Entries {
    /// Counted bytes of every entry.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of entries not yet written to the inner store.
    #[cfg(test)]
    pub(super) fn dirty(&self) -> usize {
        self.dirty
    }

    /// Key and value bytes of the dirty entries (a visit of every entry).
    pub(super) fn dirty_bytes(&self) -> u64 {
        self.map
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .map(|(k, slot)| (k.len() + slot.value.as_ref().map_or(0, Vec::len)) as u64)
            .sum()
    }

    /// Number of entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
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
            self.bytes -= cost(key, slot.value.as_deref());
            self.bytes += cost(key, value);
            match (&mut slot.value, value) {
                // Reuses the value's allocation: a running aggregate rewrites the same key.
                (Some(old), Some(new)) => {
                    old.clear();
                    old.extend_from_slice(new);
                }
                (old, new) => *old = new.map(<[u8]>::to_vec),
            }
            if dirty && !slot.dirty {
                self.dirty += 1;
            }
            slot.dirty |= dirty;
            slot.referenced = true;
            return;
        }
        self.bytes += cost(key, value);
        self.dirty += usize::from(dirty);
        self.map.insert(
            key.into(),
            Slot {
                value: value.map(<[u8]>::to_vec),
                dirty,
                // A new entry gets no second chance before it was used again: a scan-like pass
                // over many keys then evicts its own entries first.
                referenced: false,
            },
        );
    }

    /// Writes every dirty entry whose key starts with `prefix` with `write`, in key order and in
    /// batches of about [`FLUSH_CHUNK_BYTES`]; each batch's entries are clean once `write`
    /// returned `Ok` for it. Stops at the first error (the entries of that batch stay dirty).
    pub(super) fn flush_prefix(
        &mut self,
        prefix: &[u8],
        write: &mut dyn FnMut(&[WriteOp<'_>]) -> Result<()>,
    ) -> Result<()> {
        if self.dirty == 0 {
            return Ok(());
        }
        let (mut lower, upper) = prefix_bounds(prefix);
        loop {
            let mut ops = Vec::new();
            let mut chunk = 0usize;
            let mut last: Option<&[u8]> = None;
            for (k, slot) in self.map.range::<[u8], _>((as_ref(&lower), as_ref(&upper))) {
                if !slot.dirty {
                    continue;
                }
                if chunk >= FLUSH_CHUNK_BYTES {
                    break;
                }
                chunk += k.len() + slot.value.as_ref().map_or(0, Vec::len);
                ops.push(match &slot.value {
                    Some(v) => WriteOp::Put(k, v),
                    None => WriteOp::Delete(k),
                });
                last = Some(k);
            }
            let Some(last) = last else { return Ok(()) };
            write(&ops)?;
            let last = last.to_vec();
            drop(ops);
            let written = (as_ref(&lower), Bound::Included(last.as_slice()));
            for (_, slot) in self.map.range_mut::<[u8], _>(written) {
                if slot.dirty {
                    slot.dirty = false;
                    self.dirty -= 1;
                }
            }
            if self.dirty == 0 {
                return Ok(());
            }
            lower = Bound::Excluded(last);
        }
    }

    /// Forgets every entry whose key starts with `prefix`, dirty ones included (the caller
    /// deletes the prefix in the inner store).
    pub(super) fn drop_prefix(&mut self, prefix: &[u8]) {
        let (lower, upper) = prefix_bounds(prefix);
        let doomed: Vec<Box<[u8]>> = self
            .map
            .range::<[u8], _>((as_ref(&lower), as_ref(&upper)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if let Some(slot) = self.map.remove(&k) {
                self.bytes -= cost(&k, slot.value.as_deref());
                self.dirty -= usize::from(slot.dirty);
            }
        }
    }

    /// Evicts clean entries until at most `target` bytes are counted, or none is left to evict:
    /// CLOCK in key order, from where the hand stopped last. A referenced entry loses its
    /// reference and is passed over once; dirty entries are never evicted.
    pub(super) fn evict_to(&mut self, target: usize) {
        if self.bytes <= target {
            return;
        }
        let need = self.bytes - target;
        let mut freed = 0usize;
        let hand = self.hand.take();
        // After the hand to the end, then from the start twice (the first pass over an entry may
        // only clear its reference): every entry is visited at least twice. Victims are removed
        // after each sweep, so no sweep meets one again.
        let mut sweeps: Vec<KeyRange<'_>> = Vec::new();
        if let Some(h) = hand.as_deref() {
            sweeps.push((Bound::Excluded(h), Bound::Unbounded));
        }
        sweeps.push((Bound::Unbounded, Bound::Unbounded));
        sweeps.push((Bound::Unbounded, Bound::Unbounded));
        for range in sweeps {
            let mut victims: Vec<Box<[u8]>> = Vec::new();
            for (k, slot) in self.map.range_mut::<[u8], _>(range) {
                if slot.dirty {
                    continue;
                }
                if slot.referenced {
                    slot.referenced = false;
                    continue;
                }
                freed += cost(k, slot.value.as_deref());
                victims.push(k.clone());
                if freed >= need {
                    break;
                }
            }
            for k in &victims {
                if let Some(slot) = self.map.remove(k) {
                    self.bytes -= cost(k, slot.value.as_deref());
                }
            }
            if freed >= need {
                // The last victim is where the hand stopped: the next sweep starts after it.
                self.hand = victims.pop();
                return;
            }
        }
    }
}

/// The bounds of a range of keys.
type KeyRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A bound over an owned key as a bound over a slice.
fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u8) -> Vec<u8> {
        vec![n; 4]
    }

    #[test]
    fn accounting_follows_writes_and_drops() {
        let mut entries = Entries::default();
        entries.fill(&e(1), Some(b"abc"));
        entries.write(&e(2), None);
        assert_eq!(entries.bytes(), 4 + 3 + 4 + 2 * ENTRY_OVERHEAD);
        assert_eq!(entries.dirty(), 1);
        entries.write(&e(1), Some(b"a"));
        assert_eq!(entries.bytes(), 4 + 1 + 4 + 2 * ENTRY_OVERHEAD);
        assert_eq!(entries.dirty(), 2);
        assert_eq!(entries.get(&e(1)), Some(Some(&b"a"[..])));
        assert_eq!(entries.get(&e(2)), Some(None), "a delete is remembered as absence");
        assert_eq!(entries.get(&e(3)), None);
        entries.drop_prefix(&[1]);
        assert_eq!((entries.len(), entries.dirty()), (1, 1));
        assert_eq!(entries.bytes(), 4 + ENTRY_OVERHEAD);
    }

    #[test]
    fn flush_writes_only_dirty_entries_under_the_prefix_then_they_are_clean() {
        let mut entries = Entries::default();
        entries.write(&[1, 1], Some(b"x"));
        entries.fill(&[1, 2], Some(b"clean"));
        entries.write(&[1, 3], None);
        entries.write(&[2, 1], Some(b"y"));
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
    fn a_failed_flush_leaves_its_batch_dirty() {
        let mut entries = Entries::default();
        entries.write(&e(1), Some(b"x"));
        let e1 = entries.flush_prefix(&[], &mut |_| Err(crate::Error::data("disk full")));
        assert!(e1.is_err());
        assert_eq!(entries.dirty(), 1);
    }

    #[test]
    fn large_flushes_are_written_in_chunks() {
        let mut entries = Entries::default();
        let value = vec![7u8; 64 * 1024];
        for i in 0..200u32 {
            entries.write(&i.to_be_bytes(), Some(&value));
        }
        let mut batches = Vec::new();
        let mut keys = Vec::new();
        entries
            .flush_prefix(&[], &mut |ops| {
                batches.push(ops.len());
                keys.extend(ops.iter().map(|op| op.key().to_vec()));
                Ok(())
            })
            .unwrap();
        assert!(batches.len() >= 3, "{batches:?}");
        let expected: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, expected, "every entry once, in key order");
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
            assert_eq!(entries.get(&e(i)).is_some(), kept, "entry {i}");
        }
        // The hand goes on from where it stopped: 6.. are next.
        entries.evict_to(entries.bytes() - one);
        assert!(entries.get(&e(6)).is_none());
        // Everything clean can go; the dirty entry stays.
        entries.evict_to(0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries.get(&e(3)), Some(Some(&b"dirty"[..])));
        assert_eq!(entries.bytes(), cost(&e(3), Some(b"dirty")));
    }
}
