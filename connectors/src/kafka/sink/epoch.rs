//! An exactly-once epoch's records, each encoded once into one buffer.
//!
//! The writer appends every record to its epoch buffer as it arrives; at the barrier the
//! buffer becomes the epoch's committable without a copy, and the committable is a shared,
//! immutable view of it: the engine's copy of the pending committables for the snapshot
//! shares the buffer, and the transaction that produces the epoch reads the records in place.
//! At a barrier the epoch is therefore held twice (the buffer and the encoded snapshot),
//! where a list of separately allocated records was held twice as objects plus once encoded.
//!
//! # Format
//! Per record: a flags byte (1 partition, 2 key, 4 timestamp), the partition (`i32`) and
//! timestamp (`i64`) when flagged (little-endian), the key when flagged, the value, the header
//! count and each header's name and value; counts and lengths are LEB128 varints, and every
//! byte string is its length followed by its bytes. A buffer restored from a checkpoint is
//! checked record by record.

use super::record::PendingRecord;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weir_engine::connector::{Error, Result};

const HAS_PARTITION: u8 = 1;
const HAS_KEY: u8 = 2;
const HAS_TIMESTAMP: u8 = 4;

/// The records written since the last barrier.
#[derive(Debug, Default)]
pub(crate) struct EpochBuffer {
    count: u64,
    bytes: Vec<u8>,
}

impl EpochBuffer {
    /// Appends one record.
    ///
    /// # Errors
    /// `Data` if a key, value or header is 4 GiB or larger.
    pub(crate) fn push(&mut self, r: &PendingRecord) -> Result<()> {
        let out = &mut self.bytes;
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        let flags = flag(r.partition.is_some(), HAS_PARTITION)
            | flag(r.key.is_some(), HAS_KEY)
            | flag(r.timestamp.is_some(), HAS_TIMESTAMP);
        out.push(flags);
        if let Some(p) = r.partition {
            out.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(ts) = r.timestamp {
            out.extend_from_slice(&ts.to_le_bytes());
        }
        if let Some(k) = &r.key {
            put_bytes(out, k)?;
        }
        put_bytes(out, &r.value)?;
        put_len(out, r.headers.len())?;
        for (name, value) in &r.headers {
            put_bytes(out, name.as_bytes())?;
            put_bytes(out, value)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Whether no record was written since the last barrier.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The epoch's records, leaving the buffer empty (the bytes move, they are not copied).
    pub(crate) fn take(&mut self) -> EpochRecords {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.shrink_to_fit();
        EpochRecords {
            count: std::mem::take(&mut self.count),
            bytes: Arc::new(bytes),
        }
    }

    /// Drops the records written since the last barrier.
    pub(crate) fn clear(&mut self) {
        self.count = 0;
        self.bytes = Vec::new();
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<()> {
    let mut n = u32::try_from(n).map_err(|_| Error::data(format!("a Kafka record part of {n} bytes is too large")))?;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<()> {
    put_len(out, b.len())?;
    out.extend_from_slice(b);
    Ok(())
}

/// An epoch's encoded records: immutable, shared by its clones.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochRecords {
    count: u64,
    bytes: Arc<Vec<u8>>,
}

impl std::fmt::Debug for EpochRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochRecords")
            .field("records", &self.count)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// One record read in place from an epoch buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: &'a [u8],
    pub(crate) headers: Vec<(&'a str, &'a [u8])>,
    pub(crate) timestamp: Option<i64>,
}

impl EpochRecords {
    /// Records in the epoch.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the epoch has no records.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Heap bytes the records hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Whether `self` and `other` are one buffer.
    #[cfg(test)]
    pub(crate) fn shares_bytes_with(&self, other: &EpochRecords) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }

    /// The records, in the order they were written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<RecordView<'_>>> + '_ {
        let mut reader = Reader {
            bytes: &self.bytes,
            pos: 0,
        };
        (0..self.count).map(move |_| reader.record())
    }

    /// Checks that the buffer holds exactly `count` well-formed records.
    fn check(&self) -> Result<()> {
        let mut reader = Reader {
            bytes: &self.bytes,
            pos: 0,
        };
        for _ in 0..self.count {
            reader.record()?;
        }
        if reader.pos != self.bytes.len() {
            return Err(corrupt("bytes after the last record"));
        }
        Ok(())
    }
}

fn corrupt(what: &str) -> Error {
    Error::checkpoint(format!("the Kafka sink's checkpointed epoch is corrupt: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| corrupt("a record is cut short"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len(&mut self) -> Result<usize> {
        let mut n: u64 = 0;
        for shift in (0..35).step_by(7) {
            let [b] = self.array::<1>()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u32::try_from(n)
                    .map(|n| n as usize)
                    .map_err(|_| corrupt("a length is too large"));
            }
        }
        Err(corrupt("a length is too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn record(&mut self) -> Result<RecordView<'a>> {
        let [flags] = self.array::<1>()?;
        if flags & !(HAS_PARTITION | HAS_KEY | HAS_TIMESTAMP) != 0 {
            return Err(corrupt("unknown record flags"));
        }
        let partition = if flags & HAS_PARTITION != 0 {
            Some(i32::from_le_bytes(self.array()?))
        } else {
            None
        };
        let timestamp = if flags & HAS_TIMESTAMP != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let key = if flags & HAS_KEY != 0 {
            Some(self.bytes()?)
        } else {
            None
        };
        let value = self.bytes()?;
        let n = self.len()?;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = std::str::from_utf8(self.bytes()?).map_err(|_| corrupt("a header name is not UTF-8"))?;
            headers.push((name, self.bytes()?));
        }
        Ok(RecordView {
            partition,
            key,
            value,
            headers,
            timestamp,
        })
    }
}

/// Serializes a byte slice as one byte string (not a sequence of numbers).
struct ByteString<'a>(&'a [u8]);

impl Serialize for ByteString<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Deserializes a byte string into an owned buffer (taken over without a copy when the
/// format hands one out).
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<ByteBuf, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl Serialize for EpochRecords {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.count)?;
        t.serialize_element(&ByteString(&self.bytes))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for EpochRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EpochRecords;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a record count and a byte string")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<EpochRecords, A::Error> {
                let count: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let ByteBuf(bytes) = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let records = EpochRecords {
                    count,
                    bytes: Arc::new(bytes),
                };
                records.check().map_err(de::Error::custom)?;
                Ok(records)
            }
        }
        d.deserialize_tuple(2, V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> PendingRecord {
        PendingRecord {
            partition: i.is_multiple_of(2).then_some(i32::from(i)),
            key: i.is_multiple_of(3).then(|| vec![i; 3]),
            value: vec![i; usize::from(i)],
            headers: (0..i % 3).map(|h| (format!("h{h}"), vec![h; 2])).collect(),
            timestamp: (!i.is_multiple_of(4)).then_some(1_000 + i64::from(i)),
        }
    }

    #[test]
    fn records_read_back_as_written_and_survive_a_checkpoint() {
        let written: Vec<PendingRecord> = (0..20).map(record).collect();
        let mut buffer = EpochBuffer::default();
        for r in &written {
            buffer.push(r).unwrap();
        }
        let epoch = buffer.take();
        assert!(buffer.is_empty());
        assert_eq!(epoch.len(), 20);
        let bytes = bincode::serde::encode_to_vec(&epoch, bincode::config::standard()).unwrap();
        let (restored, _): (EpochRecords, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(restored, epoch);
        let json: EpochRecords = serde_json::from_str(&serde_json::to_string(&epoch).unwrap()).unwrap();
        assert_eq!(json, epoch);
        for (view, r) in restored.iter().zip(&written) {
            let view = view.unwrap();
            assert_eq!(view, r.view());
        }
    }

    #[test]
    fn lengths_round_trip_as_varints() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as usize] {
            let mut out = Vec::new();
            put_len(&mut out, n).unwrap();
            let mut r = Reader { bytes: &out, pos: 0 };
            assert_eq!(r.len().unwrap(), n);
            assert_eq!(r.pos, out.len());
        }
        assert!(put_len(&mut Vec::new(), u32::MAX as usize + 1).is_err());
    }

    #[test]
    fn a_damaged_epoch_is_a_checkpoint_error() {
        let mut buffer = EpochBuffer::default();
        buffer.push(&record(5)).unwrap();
        let epoch = buffer.take();
        let cut = EpochRecords {
            count: 1,
            bytes: Arc::new(epoch.bytes[..epoch.bytes.len() - 1].to_vec()),
        };
        let e = cut.iter().next().unwrap().unwrap_err();
        assert_eq!(e.kind(), weir_engine::connector::ErrorKind::Checkpoint, "{e}");
        let miscounted = EpochRecords {
            count: 2,
            bytes: epoch.bytes.clone(),
        };
        let bytes = bincode::serde::encode_to_vec(&miscounted, bincode::config::standard()).unwrap();
        let r: std::result::Result<(EpochRecords, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(r.is_err(), "a record count that does not match the records is refused");
    }
}
