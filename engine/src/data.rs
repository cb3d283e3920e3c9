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
