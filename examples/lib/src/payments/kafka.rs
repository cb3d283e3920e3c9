//! The payment job against Kafka (`--kafka <brokers>`): the seeded requests are loaded into an
//! input topic by a Weir job of their own, the payment job reads them with the Kafka source
//! (per-partition watermarks, read_committed) and commits every output through the
//! exactly-once Kafka sink, and the audit reads the outputs back from their topics.
//!
//! Topics are `<prefix>.requests` (the input, partitioned by customer so each customer's
//! requests keep their order) and `<prefix>.<output>` for decisions, refunds, fraud-alerts,
//! settlements and late. A new prefix per run keeps runs apart.

use super::domain::{CustomerId, PaymentEvent};
use super::generator::Workload;
use super::pipeline::OUT_OF_ORDERNESS;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use weir_connectors::kafka::audit::{read_topic, split_aborted_copies, Isolation};
use weir_connectors::kafka::{ensure_topic, Json, KafkaConnection, KafkaSink, KafkaSource};
use weir_engine::data::Data;
use weir_engine::prelude::*;

/// The input topic's suffix.
pub const REQUESTS: &str = "requests";
/// Partitions of the input topic.
pub const INPUT_PARTITIONS: i32 = 4;

/// Where the job's topics are.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic name prefix.
    pub prefix: String,
}

impl KafkaSettings {
    /// The topic of `name` (`requests` or an output directory's name).
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn conn(&self) -> KafkaConnection {
        KafkaConnection::new(self.brokers.clone())
    }

    /// The requests, read with per-partition watermarks from their event times. No idleness:
    /// a partition that is merely slow must hold event time back, or its requests turn late.
    pub fn source(&self) -> KafkaSource<PaymentEvent> {
        KafkaSource::new(self.conn(), [self.topic(REQUESTS)], Json::<PaymentEvent>::new())
            .bounded()
            .timestamps(|e: &PaymentEvent| e.event_time())
            .watermarks(OUT_OF_ORDERNESS, None)
    }

    /// An exactly-once sink into the topic of `output`, each sink subtask writing its own
    /// partition (the topics have one per subtask).
    pub fn sink<T: Data + Serialize>(&self, output: &str) -> KafkaSink<T> {
        KafkaSink::exactly_once(self.conn(), self.topic(output), Json::<T>::new())
            .partition_per_subtask()
            .transactional_id_prefix(format!("{}.{output}", self.prefix))
    }

    /// Creates the input topic and every output topic (one partition per subtask).
    pub fn create_topics(&self, outputs: &[&str], parallelism: usize) -> anyhow::Result<()> {
        ensure_topic(&self.conn(), &self.topic(REQUESTS), INPUT_PARTITIONS)
            .with_context(|| format!("creating topic {}", self.topic(REQUESTS)))?;
        for o in outputs {
            ensure_topic(&self.conn(), &self.topic(o), parallelism as i32)
                .with_context(|| format!("creating topic {}", self.topic(o)))?;
        }
        Ok(())
    }

    /// Loads the workload's requests into the input topic with a Weir job (generator →
    /// exactly-once Kafka sink), unless the topic already holds them. Returns how many
    /// requests the topic holds.
    pub fn load_requests(&self, workload: &Workload, scratch: &Path) -> anyhow::Result<u64> {
        let topic = self.topic(REQUESTS);
        let present = read_topic(&self.conn(), &topic, Isolation::ReadCommitted)?.len() as u64;
        if present > 0 {
            anyhow::ensure!(
                present == workload.events,
                "{topic} already holds {present} requests, not the {} of this workload; use another --kafka-topics",
                workload.events
            );
            return Ok(present);
        }
        // One subtask: the generator's order is every customer's arrival order.
        let p = Pipeline::new("payments-loader")
            .checkpoint_storage(scratch.join("loader-checkpoints"))
            .checkpoint_interval(Duration::from_millis(500));
        p.source("generate", workload.source(None)).sink(
            "load",
            KafkaSink::exactly_once(self.conn(), topic.clone(), Json::<PaymentEvent>::new())
                .transactional_id_prefix(format!("{}.loader", self.prefix))
                .key(|e: &PaymentEvent| Some(e.customer().to_be_bytes().to_vec()))
                .partitioner(|e: &PaymentEvent, n| partition_of(e.customer(), n)),
        );
        let report = p.run().context("loading the requests into Kafka")?;
        let loaded = report.operator("load").map(|o| o.records_in).unwrap_or(0);
        anyhow::ensure!(
            loaded == workload.events,
            "loaded {loaded} requests, expected {}",
            workload.events
        );
        Ok(loaded)
    }

    /// The committed records of output `name`, as JSON lines, and how many copies of aborted
    /// transactions were left out (a broker whose read_committed consumers still see aborted
    /// transactions shows them; the exactly-once sink's epoch headers identify them).
    pub fn committed_lines(&self, name: &str) -> anyhow::Result<(Vec<String>, usize)> {
        let topic = self.topic(name);
        let records =
            read_topic(&self.conn(), &topic, Isolation::ReadCommitted).with_context(|| format!("reading {topic}"))?;
        let (committed, aborted) = split_aborted_copies(&records);
        let lines = committed
            .into_iter()
            .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
            .collect();
        Ok((lines, aborted.len()))
    }
}

/// The input partition of a customer's requests.
fn partition_of(customer: CustomerId, partitions: i32) -> i32 {
    (customer % partitions as u32) as i32
}

/// The output topics as the audit reads them, counting the aborted copies it left out.
pub struct KafkaOutput<'a> {
    pub settings: &'a KafkaSettings,
    pub aborted_copies: std::cell::Cell<usize>,
}

impl super::audit::CommittedOutput for KafkaOutput<'_> {
    fn lines(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let (lines, aborted) = self.settings.committed_lines(name)?;
        self.aborted_copies.set(self.aborted_copies.get() + aborted);
        Ok(lines)
    }
}
