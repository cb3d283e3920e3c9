//! How keyed state is laid out as bytes in a [`KeyedStore`](super::KeyedStore).
//!
//! Every entry's key starts with its key group (2 bytes, big-endian) so that a key-group range
//! can be scanned, extracted and restored elsewhere; then a namespace tag, the state name, the
//! length-prefixed encoded user key, and for map state the encoded map key:
//!
//! ```text
//! kg:u16 | tag:u8 | name_len:u8 | name | key_len:u32 | key | [map key]
//! ```
//!
//! Timers use the tag [`TAG_TIMER`]: `kg | tag | domain | time:i64 (order-preserving) | key | ns`.
//!
//! The event time of the operator subtask that owned the key group at the last snapshot (its
//! watermark, see `keyed::event_time`) is one entry per key group under [`TAG_WATERMARK`]:
//! `kg | tag`.

use super::key_group::KeyGroup;

/// Tag of user state entries (value, map and list state).
pub const TAG_USER: u8 = 1;
/// Tag of timer entries.
pub const TAG_TIMER: u8 = 2;
/// Tag of the one entry per key group that holds the owning subtask's watermark.
pub const TAG_WATERMARK: u8 = 3;

/// Appends an i64 so that byte order equals numeric order.
pub fn put_ordered_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
}

/// Reads an i64 written by [`put_ordered_i64`].
pub fn get_ordered_i64(bytes: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

/// The prefix shared by all entries of state `name` for one key.
pub fn user_state_prefix(kg: KeyGroup, name: &str, key: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 + name.len() + key.len() + 16);
    write_user_state_prefix(&mut buf, kg, name, key);
    buf
}

/// Writes [`user_state_prefix`] into `buf` (cleared first), reusing its allocation.
pub fn write_user_state_prefix(buf: &mut Vec<u8>, kg: KeyGroup, name: &str, key: &[u8]) {
    assert!(name.len() <= u8::MAX as usize, "state names are at most 255 bytes");
    buf.clear();
    buf.extend_from_slice(&kg.to_be_bytes());
    buf.push(TAG_USER);
    buf.push(name.len() as u8);
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
    buf.extend_from_slice(key);
}

/// The key of key group `kg`'s watermark entry.
pub fn watermark_key(kg: KeyGroup) -> [u8; 3] {
    let [a, b] = kg.to_be_bytes();
    [a, b, TAG_WATERMARK]
}

/// The first two bytes of every entry of key group `kg`.
pub fn key_group_prefix(kg: KeyGroup) -> [u8; 2] {
    kg.to_be_bytes()
}

/// The key group an entry belongs to.
pub fn key_group_of_entry(entry_key: &[u8]) -> KeyGroup {
    u16::from_be_bytes([entry_key[0], entry_key[1]])
}
