//! A write-back cache of keyed state in front of a [`KeyedStore`](super::KeyedStore): hot
//! entries and the writes not yet applied stay in memory, so that a keyed update that hits the
//! cache costs two map lookups instead of a RocksDB read and write.
//!
//! - `entries`: the cached entries (a hash map for point lookups, an ordered set of their keys
//!   for prefix operations), their byte accounting, the queue of dirty entries (oldest first)
//!   and CLOCK eviction;
//! - `admission`: whether a miss fills an entry (always, unless reads rarely hit: then a sample);
//! - `store`: [`CachedStore`], the `KeyedStore` that wraps another and decides when dirty
//!   entries are written (continuously past a small dirty budget, the rest at a snapshot, those
//!   under the prefix before a scan).
//!
//! The RocksDB backend puts one in front of each store it opens
//! ([`RocksDbBackend::cache_size`](super::RocksDbBackend::cache_size)). The memory backend does
//! not: its store is already an ordered map on the heap, and a cache in front of it would only
//! add a second lookup and a copy.
//!
//! # After a crash
//! The cache adds nothing durable and loses nothing that was durable: keyed state is durable
//! only in checkpoints, and [`snapshot_to`](super::KeyedStore::snapshot_to) writes every dirty
//! entry to the inner store before the inner store takes its snapshot, so a snapshot holds
//! exactly the writes made before the barrier, as without the cache. Entries written back
//! between barriers only reach the inner store's working state, which is no more durable than
//! the cache; the next snapshot includes them because they were written before its barrier.

mod admission;
mod entries;
mod store;

pub use store::CachedStore;
