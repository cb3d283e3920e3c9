//! Keyed state: backends, the byte layout, key groups and the typed handles user functions see.

pub mod backend;
pub mod cache;
#[cfg(test)]
mod conformance;
pub(crate) mod framed;
pub mod key_group;
pub mod layout;
pub mod memory;
pub mod memtable_at_barrier;
pub mod rescale;
#[cfg(test)]
mod rescale_conformance;
pub mod rocks;

pub use backend::{BackendOverrides, KeyedRestore, KeyedStore, SnapshotPart, StateBackend, StoreScope, WriteOp};
pub use cache::CachedStore;
pub use key_group::{key_group_for, key_group_of, KeyGroup, KeyGroupRange};
pub use memory::MemoryBackend;
pub use memtable_at_barrier::MemtableAtBarrier;
pub use rocks::RocksDbBackend;
