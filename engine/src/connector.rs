//! The contract between the engine and connectors: everything a source or sink
//! implementation outside the engine may use, and nothing of the runtime.
//!
//! A connector sees records and their timestamps, checkpoint ids, errors, the source and sink
//! traits with the context the engine hands them (including the attempt's [`Cancellation`]),
//! and the fail points its tests arm. Crates under `connectors/` import the engine only
//! through this module; CI rejects any other `weir_engine::` path there
//! (`.ci/check-boundaries`), so the runtime can change (threads today, processes and sockets
//! in a cluster) without touching a connector.

pub use crate::cancellation::Cancellation;
pub use crate::data::{Data, Record, Timestamp};
pub use crate::error::{Error, ErrorKind, Reason, Result};
pub use crate::fail;
pub use crate::message::CheckpointId;
pub use crate::metrics::{ConsumerLag, OperatorMetrics};
pub use crate::sink::{Sink, SinkContext, SinkWriter};
pub use crate::source::{
    AssignedSplit, ReadStatus, Source, SourceReader, SourceWatermark, SplitId, SplitPosition, SubtaskInfo,
};
#[cfg(feature = "testing")]
pub use crate::testing::WatchedServer;
