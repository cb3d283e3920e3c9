//! Records and batches: what flows between operators.
//!
//! Records travel in batches. Inside a subtask and across channels a batch is type-erased
//! ([`ErasedBatch`]) so that the runtime, exchanges and the barrier aligner are written once for
//! every record type; the typed pipeline API guarantees that each downcast matches.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::hash::Hash;

/// Event time in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The smallest watermark: nothing is known about event time yet.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
/// The largest watermark: the input has ended, every event-time timer may fire.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// A type that can flow through a pipeline: cloneable (for fan-out and broadcast), sendable
/// between subtasks and serializable (state, checkpoints, a later multi-process exchange).
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// A type that can key a stream: its bincode encoding decides its key group and addresses its
/// state, so equal keys must encode to equal bytes.
pub trait Key: Data + Eq + Hash + std::fmt::Debug {}
impl<T: Data + Eq + Hash + std::fmt::Debug> Key for T {}

/// One record: a value and, once assigned, its event-time timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Record<T> {
    /// The user's value.
    pub value: T,
    /// Event time, if the source or a timestamp assigner set one.
    pub timestamp: Option<Timestamp>,
}

impl<T> Record<T> {
    /// A record without a timestamp.
    pub fn new(value: T) -> Self {
        Record { value, timestamp: None }
    }

    /// A record with an event-time timestamp.
    pub fn with_timestamp(value: T, timestamp: Timestamp) -> Self {
        Record {
            value,
            timestamp: Some(timestamp),
        }
    }
}

/// A typed batch of records.
pub type Batch<T> = Vec<Record<T>>;

/// A batch whose record type has been erased for the runtime.
pub trait ErasedBatch: Send {
    /// Number of records in the batch.
    fn len(&self) -> usize;
    /// Whether the batch holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A deep copy (for broadcast and fan-out).
    fn clone_batch(&self) -> Box<dyn ErasedBatch>;
    /// Gives the batch back as `Any` so typed code can downcast it.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    /// The batch's wire form, for a channel to a subtask in another process: the bincode
    /// encoding of its records, read back by the [`BatchCodec`] of the same record type.
    fn encode(&self) -> crate::Result<Vec<u8>>;
}

impl<T: Data> ErasedBatch for Vec<Record<T>> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn clone_batch(&self) -> Box<dyn ErasedBatch> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
    fn encode(&self) -> crate::Result<Vec<u8>> {
        Ok(bincode::serde::encode_to_vec(self, bincode::config::standard())?)
    }
}

/// Reads batches of one record type back from their wire form ([`ErasedBatch::encode`]).
/// Every process of a job builds the same graph from the same program, so the receiving side
/// knows the record type of each channel and keeps its codec.
#[derive(Clone, Copy)]
pub struct BatchCodec {
    type_name: &'static str,
    decode: fn(&[u8]) -> crate::Result<Box<dyn ErasedBatch>>,
}

impl BatchCodec {
    /// The codec of batches of `T`.
    pub fn of<T: Data>() -> Self {
        fn decode<T: Data>(bytes: &[u8]) -> crate::Result<Box<dyn ErasedBatch>> {
            let (batch, read): (Batch<T>, usize) =
                bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| {
                    crate::Error::internal(format!(
                    "a batch of {} from another process does not decode: {e} (do all processes run the same program?)",
                    std::any::type_name::<T>()
                ))
                })?;
            if read != bytes.len() {
                return Err(crate::Error::internal(format!(
                    "a batch of {} from another process has {} trailing bytes (do all processes run the same program?)",
                    std::any::type_name::<T>(),
                    bytes.len() - read
                )));
            }
            Ok(Box::new(batch))
        }
        BatchCodec {
            type_name: std::any::type_name::<T>(),
            decode: decode::<T>,
        }
    }

    /// Decodes one batch.
    pub fn decode(&self, bytes: &[u8]) -> crate::Result<Box<dyn ErasedBatch>> {
        (self.decode)(bytes)
    }

    /// The record type's name (part of a job's graph fingerprint).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl std::fmt::Debug for BatchCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchCodec<{}>", self.type_name)
    }
}

/// Erases a typed batch.
pub fn erase<T: Data>(batch: Batch<T>) -> Box<dyn ErasedBatch> {
    Box::new(batch)
}

/// Recovers the typed batch; a mismatch is a bug in graph construction.
pub fn downcast<T: Data>(batch: Box<dyn ErasedBatch>) -> crate::Result<Batch<T>> {
    batch.into_any().downcast::<Batch<T>>().map(|b| *b).map_err(|_| {
        crate::Error::internal(format!(
            "batch type mismatch: expected records of {}",
            std::any::type_name::<T>()
        ))
    })
}
