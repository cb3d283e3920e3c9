//! Weir's connectors: a replayable Kafka source and a Kafka sink that is exactly-once across
//! every crash window, both on rdkafka's public API.
//!
//! See [`kafka`] for the guarantees and how each holds after a crash.

pub mod kafka;
