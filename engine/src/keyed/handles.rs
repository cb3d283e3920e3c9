//! Typed state handles: `ValueState`, `MapState`, `ListState`, scoped to the current key.
//!
//! # Checkpointing
//! Every write goes to the operator subtask's keyed store at once; a checkpoint captures the
//! store as of the barrier, so after a crash state is exactly what it was at the restored
//! checkpoint, and replay rebuilds the rest. Each value carries its expiry and the schema
//! format it was written with (see [`schema`](super::schema)), so a restored job reads older
//! values through the migrations of its descriptors.

use super::schema::{decode_header, StateSchema};
use super::scope::{encode, is_live, StateOps, Ttl, NS_TTL, NS_TTL_LIST};
use crate::data::Data;
use crate::Result;

/// A single value per key.
pub struct ValueState<'c, V> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) schema: StateSchema<V>,
}

impl<V: Data> ValueState<'_, V> {
    /// Entries written through this handle expire after `ttl`; reads skip expired entries.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The value, if set and not expired.
    pub fn get(&mut self) -> Result<Option<V>> {
        let Some(raw) = self.ops.get_raw(self.name, &[])? else {
            return Ok(None);
        };
        let (header, payload) = decode_header(&raw)?;
        if !is_live(header.expiry, &*self.ops) {
            return Ok(None);
        }
        self.schema.decode(self.name, "value", header.format, payload).map(Some)
    }

    /// The value, or `V::default()`.
    pub fn get_or_default(&mut self) -> Result<V>
    where
        V: Default,
    {
        Ok(self.get()?.unwrap_or_default())
    }

    /// Sets the value.
    pub fn set(&mut self, value: &V) -> Result<()> {
        let expiry = match &self.ttl {
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl, NS_TTL)?),
            None => None,
        };
        let bytes = self.schema.encode(value, expiry)?;
        self.ops.put_raw(self.name, &[], &bytes)
    }

    /// Removes the value.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_raw(self.name, &[])
    }
}

/// A map per key. Iteration is in the order of the map keys' bincode encoding. Map keys are
/// always bincode (they address entries); the schema versions and migrates the values.
pub struct MapState<'c, UK, UV> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) schema: StateSchema<UV>,
    pub(crate) _k: std::marker::PhantomData<UK>,
}

impl<UK: Data, UV: Data> MapState<'_, UK, UV> {
    /// Entries written through this handle expire after `ttl`.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The value under `k`, if present and not expired.
    pub fn get(&mut self, k: &UK) -> Result<Option<UV>> {
        let kb = encode(k)?;
        let Some(raw) = self.ops.get_raw(self.name, &kb)? else {
            return Ok(None);
        };
        let (header, payload) = decode_header(&raw)?;
        if !is_live(header.expiry, &*self.ops) {
            return Ok(None);
        }
        self.schema
            .decode(self.name, "map value", header.format, payload)
            .map(Some)
    }

    /// Whether `k` is present.
    pub fn contains(&mut self, k: &UK) -> Result<bool> {
        Ok(self.get(k)?.is_some())
    }

    /// Sets `k` to `v`.
    pub fn put(&mut self, k: &UK, v: &UV) -> Result<()> {
        let kb = encode(k)?;
        let expiry = match &self.ttl {
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl, NS_TTL)?),
            None => None,
        };
        let bytes = self.schema.encode(v, expiry)?;
        self.ops.put_raw(self.name, &kb, &bytes)
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &UK) -> Result<()> {
        let kb = encode(k)?;
        self.ops.delete_raw(self.name, &kb)
    }

    /// Every live entry.
    pub fn entries(&mut self) -> Result<Vec<(UK, UV)>> {
        let mut raw = Vec::new();
        self.ops.scan_raw(self.name, &mut |k, v| {
            raw.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let (header, payload) = decode_header(&v)?;
            if is_live(header.expiry, &*self.ops) {
                out.push((
                    super::scope::decode_state(self.name, "map key", &k)?,
                    self.schema.decode(self.name, "map value", header.format, payload)?,
                ));
            }
        }
        Ok(out)
    }

    /// Every live key.
    pub fn keys(&mut self) -> Result<Vec<UK>> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }

    /// Whether the map has no live entry.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.entries()?.is_empty())
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_all_raw(self.name)
    }
}

/// A list per key; `add` is O(1): elements are separate entries after a counter.
///
/// With a TTL ([`with_ttl`](Self::with_ttl)) every element expires on its own, `ttl` after
/// the write that added it (as Flink's list-state TTL): reads skip expired elements, and a
/// clean-up timer per expiry deletes them from the store. The expiry is stored with each
/// element, so a restored or rescaled job expires exactly the elements the failed one would
/// have (event time: at the same watermark).
pub struct ListState<'c, V> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) schema: StateSchema<V>,
}

impl<V: Data> ListState<'_, V> {
    /// Elements added through this handle expire `ttl` after they were added; reads skip
    /// expired elements.
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    fn next_seq(&mut self) -> Result<u64> {
        Ok(match self.ops.get_raw(self.name, &[])? {
            Some(raw) if raw.len() == 8 => u64::from_be_bytes(raw[..8].try_into().expect("8 bytes")),
            _ => 0,
        })
    }

    /// Appends `v`.
    pub fn add(&mut self, v: &V) -> Result<()> {
        let seq = self.next_seq()?;
        let expiry = match &self.ttl {
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl, NS_TTL_LIST)?),
            None => None,
        };
        let bytes = self.schema.encode(v, expiry)?;
        self.ops.put_raw(self.name, &(seq + 1).to_be_bytes(), &bytes)?;
        self.ops.put_raw(self.name, &[], &(seq + 1).to_be_bytes())
    }

    /// Every live element, in insertion order.
    ///
    /// An empty list costs one point read, not a scan: elements are written only after the
    /// counter (`add`) and the counter is deleted only with every element (`clear`, the TTL
    /// clean-up of a list whose elements all expired), so a list without a counter has none.
    pub fn get(&mut self) -> Result<Vec<V>> {
        if self.next_seq()? == 0 {
            return Ok(Vec::new());
        }
        let mut raw = Vec::new();
        self.ops.scan_raw(self.name, &mut |k, v| {
            if !k.is_empty() {
                raw.push(v.to_vec());
            }
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for v in raw {
            let (header, payload) = decode_header(&v)?;
            if is_live(header.expiry, &*self.ops) {
                out.push(self.schema.decode(self.name, "list element", header.format, payload)?);
            }
        }
        Ok(out)
    }

    /// Replaces the list with `values` (each expiring `ttl` from now, with a TTL).
    pub fn update(&mut self, values: &[V]) -> Result<()> {
        self.clear()?;
        for v in values {
            self.add(v)?;
        }
        Ok(())
    }

    /// Whether the list has no live element.
    pub fn is_empty(&mut self) -> Result<bool> {
        if self.next_seq()? == 0 {
            return Ok(true);
        }
        if self.ttl.is_none() {
            return Ok(false);
        }
        let mut live = false;
        let mut expiries = Vec::new();
        self.ops.scan_raw(self.name, &mut |k, v| {
            if !k.is_empty() {
                expiries.push(decode_header(v)?.0.expiry);
            }
            Ok(true)
        })?;
        for e in expiries {
            live |= is_live(e, &*self.ops);
        }
        Ok(!live)
    }

    /// Removes every element.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_all_raw(self.name)
    }
}
