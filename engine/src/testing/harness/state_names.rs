//! The names of the keyed states a harnessed function wrote: a store wrapper that notes the
//! state name of every user-state entry written, so that reading a state by a name the
//! function never used is an error rather than an empty state.

use crate::state::backend::EntryVisitor;
use crate::state::layout::TAG_USER;
use crate::state::{KeyGroupRange, KeyedStore};
use crate::Result;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// State names seen, shared between the store wrapper and the harness.
pub(crate) type StateNames = Arc<Mutex<BTreeSet<String>>>;

/// The state name of a user-state entry key (`kg | TAG_USER | len | name | ...`).
fn user_state_name(entry_key: &[u8]) -> Option<&[u8]> {
    if entry_key.len() < 4 || entry_key[2] != TAG_USER {
        return None;
    }
    entry_key.get(4..4 + entry_key[3] as usize)
}

/// Notes `entry_key`'s state name in `names` if it is a user-state entry.
fn note(names: &StateNames, entry_key: &[u8]) {
    if let Some(name) = user_state_name(entry_key) {
        let name = String::from_utf8_lossy(name);
        let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(name.as_ref()) {
            names.insert(name.into_owned());
        }
    }
}

/// Adds the names of the user states `store` holds in `range` (a restored store) to `names`.
pub(crate) fn note_stored(store: &mut dyn KeyedStore, range: KeyGroupRange, names: &StateNames) -> Result<()> {
    for kg in range.start..=range.end {
        let [a, b] = kg.to_be_bytes();
        store.scan_prefix(&[a, b, TAG_USER], &mut |k, _| {
            note(names, k);
            Ok(true)
        })?;
    }
    Ok(())
}

/// A keyed store that notes the state names written to it; everything else goes to the real
/// store unchanged.
pub(crate) struct NotingStore {
    pub(crate) inner: Box<dyn KeyedStore>,
    pub(crate) names: StateNames,
}

impl KeyedStore for NotingStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        note(&self.names, key);
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.inner.delete(key)
    }
    fn scan_prefix(&mut self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.inner.scan_prefix(prefix, f)
    }
    fn scan_prefix_from(&mut self, prefix: &[u8], from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.inner.scan_prefix_from(prefix, from, f)
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
