//! Kafka connector throughput against a Kafka-protocol broker on loopback (tansu, started
//! here, or the cluster in `WEIR_KAFKA_BROKERS`):
//!
//! - **sink**: a generator of 100-byte JSON records → `KafkaSink`, at-least-once (idempotent
//!   producer, flushed at every checkpoint) and exactly-once (each checkpoint's records
//!   produced in one transaction after it completes), checkpoints every second, one
//!   partition per sink subtask;
//! - **source**: a bounded `KafkaSource` read (read_committed) of what the sink wrote, into a
//!   discarding sink.
//!
//! Events/s are the records over the whole job's wall time (start, every checkpoint and the
//! final commit included), median of the runs. The overhead of exactly-once is its events/s
//! lost against at-least-once in the same run order (the two alternate).
//!
//! `cargo bench --bench kafka`. Knobs: `WEIR_BENCH_KAFKA_EVENTS` (default 300,000),
//! `WEIR_BENCH_RUNS` (default 3), `WEIR_BENCH_PARALLELISM` (comma list, default 1,2).

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use weir::connectors::kafka::testing::TestBroker;
use weir::connectors::kafka::{Json, KafkaSink, KafkaSource};
use weir::engine::source::generator::mix;
use weir::prelude::*;
use weir_examples::nexmark::harness::{env_or, median};

/// A payment-sized record: about 100 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    id: u64,
    account: u64,
    cents: i64,
    note: String,
}

fn event(i: u64) -> Event {
    Event {
        id: i,
        account: mix(1, i) % 100_000,
        cents: (mix(2, i) % 100_000) as i64,
        note: format!("{:016x}{:016x}", mix(3, i), mix(4, i)),
    }
}

/// Writes `events` records into a new topic; returns events/s and the topic.
fn sink_run(broker: &TestBroker, events: u64, parallelism: usize, exactly_once: bool) -> (f64, String) {
    let topic = broker.unique_topic(if exactly_once { "bench-eo" } else { "bench-alo" });
    broker.create_topic(&topic, parallelism as i32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("kafka-sink-bench")
        .parallelism(parallelism)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_secs(1));
    let sink = if exactly_once {
        KafkaSink::exactly_once(broker.brokers(), &topic, Json::<Event>::new()).transactional_id_prefix(topic.clone())
    } else {
        KafkaSink::at_least_once(broker.brokers(), &topic, Json::<Event>::new())
    }
    .partition_per_subtask();
    p.source(
        "events",
        GeneratorSource::new(event).bounded(events).splits(parallelism),
    )
    .sink("to-kafka", sink);
    let started = Instant::now();
    p.run().expect("the sink job succeeds");
    (events as f64 / started.elapsed().as_secs_f64(), topic)
}

/// Reads `topic` to its end; returns events/s.
fn source_run(broker: &TestBroker, topic: &str, events: u64, parallelism: usize) -> f64 {
    let p = Pipeline::new("kafka-source-bench").parallelism(parallelism);
    p.source(
        "from-kafka",
        KafkaSource::new(broker.connection(), [topic], Json::<Event>::new()).bounded(),
    )
    .sink("discard", DiscardSink::new());
    let started = Instant::now();
    let report = p.run().expect("the source job succeeds");
    let read = report.operator("from-kafka").map(|o| o.records_out).unwrap_or(0);
    assert_eq!(read, events, "the source read every record once");
    events as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let events = env_or("WEIR_BENCH_KAFKA_EVENTS", 300_000);
    let runs = env_or("WEIR_BENCH_RUNS", 3).max(1);
    let parallelisms: Vec<usize> = std::env::var("WEIR_BENCH_PARALLELISM")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let broker = TestBroker::start().expect("a Kafka-protocol broker: run `bash .ci/setup` or set WEIR_KAFKA_BROKERS");
    println!(
        "Kafka connectors on {} ({}), {events} records of ~100 bytes, median of {runs} runs",
        broker.brokers(),
        if broker.filters_aborted() {
            "WEIR_KAFKA_BROKERS"
        } else {
            "tansu on loopback"
        }
    );
    println!(
        "{:<12} {:>11} {:>16} {:>16} {:>16} {:>10}",
        "parallelism", "", "at-least-once", "exactly-once", "source read", "EO cost"
    );
    for &p in &parallelisms {
        let (mut alo, mut eo, mut read) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            // Alternate which mode goes first, so drift hits both alike.
            let order = if r % 2 == 0 { [false, true] } else { [true, false] };
            for exactly_once in order {
                let (rate, topic) = sink_run(&broker, events, p, exactly_once);
                if exactly_once {
                    eo.push(rate);
                    read.push(source_run(&broker, &topic, events, p));
                } else {
                    alo.push(rate);
                }
            }
        }
        let (alo, eo, read) = (median(alo), median(eo), median(read));
        println!(
            "{:<12} {:>11} {:>16} {:>16} {:>16} {:>9.1}%",
            p,
            "events/s",
            format!("{alo:.0}"),
            format!("{eo:.0}"),
            format!("{read:.0}"),
            (1.0 - eo / alo) * 100.0
        );
    }
}
