//! Kafka connectors on rdkafka's public API.
//!
//! - [`KafkaSource`]: partitions assigned to subtasks by the engine (no consumer-group
//!   rebalancing), every partition's next offset kept in checkpoints, `read_committed` by
//!   default, per-partition watermarks, new partitions discovered while running, bad records
//!   handled by a [`BadRecordPolicy`].
//! - [`KafkaSink`]: at-least-once (idempotent producer, flushed at every checkpoint) or
//!   exactly-once (each checkpoint's records are written ahead into the checkpoint, produced
//!   after it completes in one transaction that also commits an "epoch done" marker; see
//!   [`sink`] for why this holds in every crash window).

pub mod audit;
pub mod client;
mod delivery;
pub mod format;
pub mod sink;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{ensure_topic, KafkaConnection};
pub use format::{Bincode, Json, KafkaDeserializer, KafkaMessage, KafkaSerializer, Nullable};
pub use sink::{DeliveryGuarantee, KafkaSink};
pub use source::{BadRecordPolicy, KafkaSource, SourceCounters, StartPosition};
