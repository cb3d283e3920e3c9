//! The state of the current key as seen by typed handles: raw access scoped to one key,
//! value encoding with optional expiry, and TTL bookkeeping.

use super::schema::{Format, StateSchema};
use super::timers::{TimeDomain, TimerEntry, TimerService};
use crate::data::Timestamp;
use crate::state::backend::EntryVisitor;
use crate::state::layout::write_user_state_prefix;
use crate::state::{KeyGroup, KeyedStore};
use crate::{Error, Result};
use std::time::Duration;

/// Timer namespace of timers registered by user functions.
pub(crate) const NS_USER: u8 = 0;
/// Timer namespace of TTL clean-up timers of value and map state (followed by the state name).
pub(crate) const NS_TTL: u8 = 1;
/// Timer namespace of TTL clean-up timers of list state (followed by the state name): the
/// clean-up keeps the list's element counter.
pub(crate) const NS_TTL_LIST: u8 = 2;

/// Time to live of a state entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// How long an entry lives after its last write.
    pub duration: Duration,
    /// The clock: event time (deterministic under replay; measured from the record's
    /// timestamp, expired once the watermark passes) or processing time (the wall clock).
    pub domain: TimeDomain,
}

impl Ttl {
    /// Entries expire `d` of event time after the timestamp of the record that wrote them,
    /// once the watermark passes that point. Replays expire exactly the same entries.
    pub const fn event_time(d: Duration) -> Self {
        Ttl {
            duration: d,
            domain: TimeDomain::EventTime,
        }
    }

    /// Entries expire `d` of wall-clock time after they were written.
    pub const fn processing_time(d: Duration) -> Self {
        Ttl {
            duration: d,
            domain: TimeDomain::ProcessingTime,
        }
    }
}

/// Raw, key-scoped state operations; implemented by the runtime's per-key scope.
pub(crate) trait StateOps {
    fn get_raw(&mut self, name: &str, suffix: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put_raw(&mut self, name: &str, suffix: &[u8], value: &[u8]) -> Result<()>;
    fn delete_raw(&mut self, name: &str, suffix: &[u8]) -> Result<()>;
    /// Visits `(suffix, value)` of every entry of `name` for the current key, in suffix order.
    fn scan_raw(&mut self, name: &str, f: &mut EntryVisitor<'_>) -> Result<()>;
    /// [`scan_raw`](Self::scan_raw) from the first suffix at or after `from`.
    fn scan_raw_from(&mut self, name: &str, from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()>;
    fn delete_all_raw(&mut self, name: &str) -> Result<()>;
    /// Current time in `domain` (watermark or wall clock).
    fn now(&self, domain: TimeDomain) -> Timestamp;
    /// The expiry of an entry written now with `ttl`; registers its clean-up timer in
    /// namespace `ns` ([`NS_TTL`] or [`NS_TTL_LIST`]).
    fn expiry_for_write(&mut self, name: &str, ttl: &Ttl, ns: u8) -> Result<Expiry>;
}

/// The current key's slice of a keyed store.
pub(crate) struct KeyScope<'a> {
    pub(crate) store: &'a mut dyn KeyedStore,
    pub(crate) timers: &'a mut TimerService,
    pub(crate) key_group: KeyGroup,
    pub(crate) key: &'a [u8],
    pub(crate) watermark: Timestamp,
    pub(crate) now_ms: u64,
    /// Event time of the record (or timer) being processed.
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) buf: &'a mut Vec<u8>,
}

impl KeyScope<'_> {
    /// Writes the store key of entry `suffix` of state `name` into the scratch buffer.
    fn write_entry_key(&mut self, name: &str, suffix: &[u8]) {
        write_user_state_prefix(self.buf, self.key_group, name, self.key);
        self.buf.extend_from_slice(suffix);
    }

    /// Registers a timer for the current key in namespace `ns`.
    pub(crate) fn register_timer(&mut self, domain: TimeDomain, time: Timestamp, ns: Vec<u8>) -> Result<()> {
        let t = TimerEntry {
            time,
            key_group: self.key_group,
            key: self.key.to_vec(),
            namespace: ns,
        };
        self.timers.register(self.store, domain, t)
    }

    /// Deletes a timer of the current key in namespace `ns`.
    pub(crate) fn delete_timer(&mut self, domain: TimeDomain, time: Timestamp, ns: Vec<u8>) -> Result<()> {
        let t = TimerEntry {
            time,
            key_group: self.key_group,
            key: self.key.to_vec(),
            namespace: ns,
        };
        self.timers.delete(self.store, domain, &t)
    }
}

impl StateOps for KeyScope<'_> {
    fn get_raw(&mut self, name: &str, suffix: &[u8]) -> Result<Option<Vec<u8>>> {
        self.write_entry_key(name, suffix);
        self.store.get(self.buf)
    }

    fn put_raw(&mut self, name: &str, suffix: &[u8], value: &[u8]) -> Result<()> {
        self.write_entry_key(name, suffix);
        self.store.put(self.buf, value)
    }

    fn delete_raw(&mut self, name: &str, suffix: &[u8]) -> Result<()> {
        self.write_entry_key(name, suffix);
        self.store.delete(self.buf)
    }

    fn scan_raw(&mut self, name: &str, f: &mut EntryVisitor<'_>) -> Result<()> {
        self.write_entry_key(name, &[]);
        let n = self.buf.len();
        self.store.scan_prefix(self.buf, &mut |k, v| f(&k[n..], v))
    }

    fn scan_raw_from(&mut self, name: &str, from: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        self.write_entry_key(name, &[]);
        let n = self.buf.len();
        let start = [self.buf.as_slice(), from].concat();
        self.store.scan_prefix_from(self.buf, &start, &mut |k, v| f(&k[n..], v))
    }

    fn delete_all_raw(&mut self, name: &str) -> Result<()> {
        self.write_entry_key(name, &[]);
        self.store.delete_prefix(self.buf)
    }

    fn now(&self, domain: TimeDomain) -> Timestamp {
        match domain {
            TimeDomain::EventTime => self.watermark,
            TimeDomain::ProcessingTime => self.now_ms as Timestamp,
        }
    }

    fn expiry_for_write(&mut self, name: &str, ttl: &Ttl, ns: u8) -> Result<Expiry> {
        let base = match ttl.domain {
            TimeDomain::EventTime => self.timestamp.ok_or_else(|| {
                Error::data(format!(
                    "state \"{name}\" has an event-time TTL but the current record has no timestamp; assign timestamps upstream"
                ))
            })?,
            TimeDomain::ProcessingTime => self.now_ms as Timestamp,
        };
        let expiry = base.saturating_add(ttl.duration.as_millis() as Timestamp);
        let mut namespace = vec![ns];
        namespace.extend_from_slice(name.as_bytes());
        self.register_timer(ttl.domain, clean_up_time(expiry, ttl), namespace)?;
        Ok((ttl.domain, expiry))
    }
}

/// How many clean-up slots a TTL is cut into (see [`clean_up_time`]).
const CLEAN_UP_SLOTS_PER_TTL: i64 = 4;

/// When the clean-up timer of an entry expiring at `expiry` fires: at the end of its slot, a
/// quarter of the TTL. The writes to one key's state within a slot share one timer, and one
/// scan of the state when it fires, instead of one of each per write: a map written often (an
/// idempotency key map) would otherwise scan all its entries once per write. An expired entry
/// is never read (reads check its expiry); it only stays stored up to a quarter of the TTL
/// longer.
pub(crate) fn clean_up_time(expiry: Timestamp, ttl: &Ttl) -> Timestamp {
    let slot = (ttl.duration.as_millis() as i64 / CLEAN_UP_SLOTS_PER_TTL).max(1);
    match expiry.rem_euclid(slot) {
        0 => expiry,
        r => expiry.saturating_add(slot - r),
    }
}

/// An entry's expiry: the clock and the time at which it expires.
pub(crate) type Expiry = (TimeDomain, Timestamp);

/// Encodes a value of a state opened by name: the unversioned header (`[0]`, or `[1|2]
/// expiry:i64` for an entry that expires in event or processing time) and the bincode payload.
#[cfg(test)]
pub(crate) fn encode_value<V: crate::data::Data>(v: &V, expiry: Option<Expiry>) -> Result<Vec<u8>> {
    StateSchema::<V>::unversioned().encode(v, expiry)
}

/// Whether an entry with `expiry` is still visible at the scope's current times.
pub(crate) fn is_live(expiry: Option<Expiry>, ops: &dyn StateOps) -> bool {
    match expiry {
        None => true,
        Some((domain, at)) => at > ops.now(domain),
    }
}

/// Decodes a payload with bincode.
pub(crate) fn decode<V: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<V> {
    let (v, _) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    Ok(v)
}

/// Decodes an unversioned payload of state `name` as `V`, all of it: a payload that does not
/// decode, or decodes with bytes left over, was written as another type (the state's type
/// changed since the checkpoint this job restored), and is a configuration error naming the
/// state.
pub(crate) fn decode_state<V: crate::data::Data>(name: &str, what: &str, bytes: &[u8]) -> Result<V> {
    StateSchema::<V>::unversioned().decode(name, what, Format::UNVERSIONED, bytes)
}

/// Encodes with bincode.
pub(crate) fn encode<V: serde::Serialize>(v: &V) -> Result<Vec<u8>> {
    Ok(bincode::serde::encode_to_vec(v, bincode::config::standard())?)
}
