//! One subtask's state held in memory: a hash map from state key to value for point
//! operations, and the same keys in an ordered set for prefix scans and snapshots.
//!
//! - `get` and the `put` of an existing key are one hash lookup; the ordered set is touched
//!   only when a key is added or removed, and by prefix operations.
//! - Keys are shared (`Arc<[u8]>`) between the map and the ordered set: one allocation per key.
//! - A snapshot writes the entries in key order, in the encoding of the ordered map this store
//!   replaced, so snapshots written before and after read the same.

use super::snapshot_file::{save, SNAPSHOT_FILE};
use crate::state::backend::{EntryVisitor, KeyedStore};
use crate::Result;
use bincode::enc::Encoder;
use bincode::error::EncodeError;
use bincode::Encode;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A state key, shared between the hash map and the ordered set.
type Key = Arc<[u8]>;

/// One subtask's state held in memory.
#[derive(Debug)]
pub(super) struct MemoryStore {
    /// Every entry, for point operations. foldhash: state keys are short byte strings chosen by
    /// the job, hashed once per operation; the seed is random per process.
    values: HashMap<Key, Vec<u8>, foldhash::fast::RandomState>,
    /// The keys of `values`, in order.
    order: BTreeSet<Key>,
    /// Sum of key and value lengths of all entries.
    size: u64,
}

impl MemoryStore {
    /// A store holding the entries of `map`.
    pub(super) fn of(map: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let mut store = MemoryStore {
            values: HashMap::with_capacity_and_hasher(map.len(), Default::default()),
            order: BTreeSet::new(),
            size: 0,
        };
        for (k, v) in map {
            store.insert_new(Arc::from(k), v);
        }
        store
    }

    fn insert_new(&mut self, key: Key, value: Vec<u8>) {
        self.size += (key.len() + value.len()) as u64;
        self.order.insert(key.clone());
        self.values.insert(key, value);
    }

    /// Keys from `start` on that start with `prefix`, in order.
    fn keys_from<'a>(&'a self, prefix: &'a [u8], start: &'a [u8]) -> impl Iterator<Item = &'a Key> + 'a {
        self.order
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(move |k| k.starts_with(prefix))
    }

    /// Calls `f` on the entries from `start` on whose key starts with `prefix`, in order, until
    /// it returns `false`.
    fn scan(&self, prefix: &[u8], start: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        for key in self.keys_from(prefix, start) {
            if !f(key, &self.values[key])? {
                break;
            }
        }
        Ok(())
    }
}

impl KeyedStore for MemoryStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.values.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(v) = self.values.get_mut(key) {
            self.size = self.size - v.len() as u64 + value.len() as u64;
            v.clear();
            v.extend_from_slice(value);
        } else {
            self.insert_new(Arc::from(key), value.to_vec());
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if let Some((k, v)) = self.values.remove_entry(key) {
            self.order.remove(&k);
            self.size -= (k.len() + v.len()) as u64;
        }
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.scan(prefix, prefix, f)
    }

    fn scan_prefix_from(&mut self, prefix: &[u8], from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.scan(prefix, from.max(prefix), f)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        let keys: Vec<Key> = self.keys_from(prefix, prefix).cloned().collect();
        for k in keys {
            self.delete(&k)?;
        }
        Ok(())
    }

    fn approximate_size(&mut self) -> Result<u64> {
        Ok(self.size)
    }

    fn snapshot_to(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        save(&InKeyOrder(self), dir).map_err(|e| e.context(format!("writing memory snapshot to {}", dir.display())))?;
        Ok(vec![PathBuf::from(SNAPSHOT_FILE)])
    }
}

/// A store's entries in key order, encoded as `BTreeMap<Vec<u8>, Vec<u8>>` encodes: the count,
/// then each key and value.
struct InKeyOrder<'a>(&'a MemoryStore);

impl Encode for InKeyOrder<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> std::result::Result<(), EncodeError> {
        (self.0.order.len() as u64).encode(encoder)?;
        for key in &self.0.order {
            key[..].encode(encoder)?;
            self.0.values[key][..].encode(encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_as_the_ordered_map_does() {
        let mut map = BTreeMap::new();
        for i in 0u32..300 {
            let key = format!("k{}", i * 7919 % 300).into_bytes();
            map.insert(key, vec![i as u8; (i % 5) as usize]);
        }
        map.insert(Vec::new(), b"empty key".to_vec());
        let store = MemoryStore::of(map.clone());
        let config = bincode::config::standard();
        assert_eq!(
            bincode::encode_to_vec(InKeyOrder(&store), config).unwrap(),
            bincode::encode_to_vec(&map, config).unwrap()
        );
    }
}
