//! Typed state handles: `ValueState`, `MapState`, `ListState`, scoped to the current key.
//!
//! # Checkpointing
//! Every write goes to the operator subtask's keyed store at once; a checkpoint captures the
//! store as of the barrier, so after a crash state is exactly what it was at the restored
//! checkpoint, and replay rebuilds the rest.

use super::scope::{decode_state, encode, encode_value, is_live, split_value, StateOps, Ttl};
use crate::data::Data;
use crate::Result;
use std::marker::PhantomData;

/// A single value per key.
pub struct ValueState<'c, V> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) _v: PhantomData<V>,
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
        let (expiry, payload) = split_value(&raw)?;
        if !is_live(expiry, &*self.ops) {
            return Ok(None);
        }
        decode_state(self.name, "value", payload).map(Some)
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
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl)?),
            None => None,
        };
        let bytes = encode_value(value, expiry)?;
        self.ops.put_raw(self.name, &[], &bytes)
    }

    /// Removes the value.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_raw(self.name, &[])
    }
}

/// A map per key. Iteration is in the order of the map keys' bincode encoding.
pub struct MapState<'c, UK, UV> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) ttl: Option<Ttl>,
    pub(crate) _kv: PhantomData<(UK, UV)>,
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
        let (expiry, payload) = split_value(&raw)?;
        if !is_live(expiry, &*self.ops) {
            return Ok(None);
        }
        decode_state(self.name, "map value", payload).map(Some)
    }

    /// Whether `k` is present.
    pub fn contains(&mut self, k: &UK) -> Result<bool> {
        Ok(self.get(k)?.is_some())
    }

    /// Sets `k` to `v`.
    pub fn put(&mut self, k: &UK, v: &UV) -> Result<()> {
        let kb = encode(k)?;
        let expiry = match &self.ttl {
            Some(ttl) => Some(self.ops.expiry_for_write(self.name, ttl)?),
            None => None,
        };
        let bytes = encode_value(v, expiry)?;
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
            let (expiry, payload) = split_value(&v)?;
            if is_live(expiry, &*self.ops) {
                out.push((
                    decode_state(self.name, "map key", &k)?,
                    decode_state(self.name, "map value", payload)?,
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
pub struct ListState<'c, V> {
    pub(crate) ops: &'c mut dyn StateOps,
    pub(crate) name: &'c str,
    pub(crate) _v: PhantomData<V>,
}

impl<V: Data> ListState<'_, V> {
    fn next_seq(&mut self) -> Result<u64> {
        Ok(match self.ops.get_raw(self.name, &[])? {
            Some(raw) if raw.len() == 8 => u64::from_be_bytes(raw[..8].try_into().expect("8 bytes")),
            _ => 0,
        })
    }

    /// Appends `v`.
    pub fn add(&mut self, v: &V) -> Result<()> {
        let seq = self.next_seq()?;
        self.ops
            .put_raw(self.name, &(seq + 1).to_be_bytes(), &encode_value(v, None)?)?;
        self.ops.put_raw(self.name, &[], &(seq + 1).to_be_bytes())
    }

    /// Every element, in insertion order.
    pub fn get(&mut self) -> Result<Vec<V>> {
        let mut raw = Vec::new();
        self.ops.scan_raw(self.name, &mut |k, v| {
            if !k.is_empty() {
                raw.push(v.to_vec());
            }
            Ok(true)
        })?;
        raw.iter()
            .map(|v| split_value(v).and_then(|(_, p)| decode_state(self.name, "list element", p)))
            .collect()
    }

    /// Replaces the list with `values`.
    pub fn update(&mut self, values: &[V]) -> Result<()> {
        self.clear()?;
        for v in values {
            self.add(v)?;
        }
        Ok(())
    }

    /// Whether the list is empty.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.next_seq()? == 0)
    }

    /// Removes every element.
    pub fn clear(&mut self) -> Result<()> {
        self.ops.delete_all_raw(self.name)
    }
}
