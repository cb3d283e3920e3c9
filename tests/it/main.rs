//! Weir's integration tests, as one test binary (RocksDB and librdkafka are linked once).
//!
//! Each module is one area of the public API; `common`, `etcd` and `kafka` hold shared helpers
//! (the Kafka tests start their own tansu broker, or use `WEIR_KAFKA_BROKERS`; the HA tests start
//! their own etcd). Tests that need a process of their own (a `kill -9`, an abort at a fail
//! point, an exit on a cancellation timeout) re-run this binary filtered to one test, in a child
//! process. Fail points belong to each job (`Pipeline::fail_points`), so tests run in parallel.

mod common;
mod etcd;
mod kafka;

mod async_io;
mod broadcast_evolution;
mod broadcast_state;
mod checkpoints;
mod cli;
mod cli_job;
mod cluster;
mod cluster_savepoints;
mod exactly_once;
mod file_sink;
mod generator_splits;
mod graceful_stop;
mod ha;
mod harness;
mod harness_two_input;
mod joins;
mod kafka_exactly_once;
mod kafka_sink;
mod kafka_source;
mod list_ttl;
mod metrics;
mod nexmark;
mod nexmark_models;
mod nexmark_suite;
mod object_storage;
mod operator_state;
mod operators;
mod payments;
mod process_kill;
mod recovery_analysis;
mod recovery_audit;
mod recovery_phases;
mod replication;
mod rescale;
mod runtime;
mod savepoints;
mod side_outputs;
mod smoke;
mod state_evolution;
mod status_page;
mod typed_positions;
mod watermark_recovery;
mod window_triggers;
mod windows;
