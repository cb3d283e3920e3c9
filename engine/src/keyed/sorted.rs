//! `SortedMapState`: a map per key that iterates in key order and scans ranges, for buffers
//! keyed by timestamp or sequence number (joins, event-time sorting).
//!
//! It is a state of its own next to [`MapState`](super::MapState) rather than a new encoding
//! of it: map keys are written with the order-preserving [`SortKey`] encoding instead of
//! bincode, so existing `MapState` entries in checkpoints keep their encoding and stay
//! readable, and only key types with a meaningful order can be used.
//!
//! Declared with a [`SortedMapStateDescriptor`](super::SortedMapStateDescriptor)
//! (`ctx.state(&DESC)`), its values carry their schema format and evolve as other declared
//! states do; opened by name (`ctx.sorted_map_state("name")`), they are written unversioned
//! with bincode, as before descriptors.
//!
//! # Checkpointing
//! As every keyed state: writes go to the subtask's keyed store at once, a checkpoint captures
//! the store as of the barrier. Entries live under the key group of the record's key, so they
//! move with it when a job is restored at another parallelism.

use super::context::KeyedContext;
use super::schema::{decode_header, StateSchema};
use super::scope::{is_live, StateOps, Ttl, NS_TTL};
use super::sort_key::{decode_sort_key, encode_sort_key, SortKey};
use super::timers::TimeDomain;
use crate::data::Data;
use crate::Result;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

/// A map per key ordered by its keys (see the [module docs](self)): `entries` and `range`
/// return entries in ascending key order, and `range`/`remove_range` seek to the start of the
/// range instead of reading the whole map.
pub struct SortedMapState<'c, UK, UV> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) schema: StateSchema<UV>,
    pub(crate) _k: PhantomData<fn() -> UK>,
}

impl<K, O: Data> KeyedContext<'_, K, O> {
    /// The sorted map state `name` of the current key, values written unversioned with
    /// bincode; prefer [`state`](Self::state) with a
    /// [`SortedMapStateDescriptor`](super::SortedMapStateDescriptor) for a state whose value
    /// type may change.
    pub fn sorted_map_state<'s, UK: SortKey, UV: Data>(&'s mut self, name: &'s str) -> SortedMapState<'s, UK, UV> {
        SortedMapState {
            ops: &mut self.scope,
            name,
            ttl: None,
            schema: StateSchema::unversioned(),
            _k: PhantomData,
        }
    }
}

/// Where a scan stops: before the first suffix above `end` (inclusive) or at `end` (exclusive).
enum End {
    Unbounded,
    Included(Vec<u8>),
    Excluded(Vec<u8>),
}

impl End {
    fn admits(&self, suffix: &[u8]) -> bool {
        match self {
            End::Unbounded => true,
            End::Included(e) => suffix <= e.as_slice(),
            End::Excluded(e) => suffix < e.as_slice(),
        }
    }
}

impl<UK: SortKey, UV: Data> SortedMapState<'_, UK, UV> {
    /// Entries written through this handle expire after `ttl`; reads skip expired entries.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The value under `k`, if present and not expired.
    pub fn get(&mut self, k: &UK) -> Result<Option<UV>> {
        let Some(raw) = self.ops.get_raw(self.name, &encode_sort_key(k))? else {
            return Ok(None);
        };
        let (header, payload) = decode_header(&raw)?;
        if !is_live(header.expiry, &*self.ops) {
            return Ok(None);
        }
        self.decode(header.format, payload).map(Some)
    }

    /// Whether `k` is present.
    pub fn contains(&mut self, k: &UK) -> Result<bool> {
        Ok(self.get(k)?.is_some())
    }

    /// Sets `k` to `v`.
    pub fn put(&mut self, k: &UK, v: &UV) -> Result<()> {
        let expiry = match &self.ttl {
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl, NS_TTL)?),
            None => None,
        };
        let bytes = self.schema.encode(v, expiry)?;
        self.ops.put_raw(self.name, &encode_sort_key(k), &bytes)
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &UK) -> Result<()> {
        self.ops.delete_raw(self.name, &encode_sort_key(k))
    }

    /// Every live entry, in ascending key order.
    pub fn entries(&mut self) -> Result<Vec<(UK, UV)>> {
        self.range(..)
    }

    /// Every live entry, in ascending key order, as an iterator.
    pub fn iter(&mut self) -> Result<std::vec::IntoIter<(UK, UV)>> {
        Ok(self.entries()?.into_iter())
    }

    /// Every live key, in ascending order.
    pub fn keys(&mut self) -> Result<Vec<UK>> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }

    /// The live entries whose keys lie in `range` (`lo..hi`, `lo..=hi`, `lo..`, `..hi`, `..`),
    /// in ascending key order.
    pub fn range(&mut self, range: impl RangeBounds<UK>) -> Result<Vec<(UK, UV)>> {
        let mut out = Vec::new();
        for (k, v) in self.raw_range(&range, usize::MAX)? {
            let (header, payload) = decode_header(&v)?;
            if is_live(header.expiry, &*self.ops) {
                out.push((decode_sort_key(self.name, &k)?, self.decode(header.format, payload)?));
            }
        }
        Ok(out)
    }

    /// The live entry with the smallest key (reads from the start up to the first live one).
    pub fn first(&mut self) -> Result<Option<(UK, UV)>> {
        let (event_time, processing_time) = (
            self.ops.now(TimeDomain::EventTime),
            self.ops.now(TimeDomain::ProcessingTime),
        );
        let mut found = None;
        self.ops.scan_raw(self.name, &mut |k, v| {
            let (header, _) = decode_header(v)?;
            let live = match header.expiry {
                None => true,
                Some((TimeDomain::EventTime, at)) => at > event_time,
                Some((TimeDomain::ProcessingTime, at)) => at > processing_time,
            };
            if live {
                found = Some((k.to_vec(), v.to_vec()));
            }
            Ok(!live)
        })?;
        let Some((k, v)) = found else {
            return Ok(None);
        };
        let (header, payload) = decode_header(&v)?;
        Ok(Some((
            decode_sort_key(self.name, &k)?,
            self.decode(header.format, payload)?,
        )))
    }

    /// The live entry with the largest key (reads the whole map of the current key).
    pub fn last(&mut self) -> Result<Option<(UK, UV)>> {
        Ok(self.entries()?.pop())
    }

    /// Removes every entry whose key lies in `range` (for example `..=watermark` for a buffer
    /// keyed by timestamp) and returns how many it removed.
    pub fn remove_range(&mut self, range: impl RangeBounds<UK>) -> Result<usize> {
        let doomed = self.raw_range(&range, usize::MAX)?;
        for (k, _) in &doomed {
            self.ops.delete_raw(self.name, k)?;
        }
        Ok(doomed.len())
    }

    /// Whether the map has no live entry.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.first()?.is_none())
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_all_raw(self.name)
    }

    /// Decodes a value written in `format` (through the schema's migrations).
    fn decode(&self, format: super::schema::Format, payload: &[u8]) -> Result<UV> {
        self.schema.decode(self.name, "sorted map value", format, payload)
    }

    /// Up to `limit` raw `(encoded key, value)` entries in `range`, expired ones included.
    fn raw_range(&mut self, range: &impl RangeBounds<UK>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (from, skip_equal) = match range.start_bound() {
            Bound::Unbounded => (Vec::new(), None),
            Bound::Included(k) => (encode_sort_key(k), None),
            Bound::Excluded(k) => {
                let e = encode_sort_key(k);
                (e.clone(), Some(e))
            }
        };
        let end = match range.end_bound() {
            Bound::Unbounded => End::Unbounded,
            Bound::Included(k) => End::Included(encode_sort_key(k)),
            Bound::Excluded(k) => End::Excluded(encode_sort_key(k)),
        };
        let mut out = Vec::new();
        self.ops.scan_raw_from(self.name, &from, &mut |k, v| {
            if skip_equal.as_deref() == Some(k) {
                return Ok(true);
            }
            if !end.admits(k) {
                return Ok(false);
            }
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }
}
