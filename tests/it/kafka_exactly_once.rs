//! End to end through Kafka: an input topic → a pipeline with keyed state → an output topic
//! through the exactly-once sink, with a failure injected in every window of the protocol.
//! The output, read with `read_committed`, must equal a sequential model of the input: none
//! missing, none twice. Runs against tansu on loopback, or the cluster in `WEIR_KAFKA_BROKERS`
//! (where the windows that abort a transaction with data are asserted end to end too).

use crate::common;
use crate::kafka;

use kafka::*;
use std::time::Duration;
use weir::connectors::kafka::sink::{FAIL_AFTER_TXN_COMMIT, FAIL_BEFORE_TXN_COMMIT, FAIL_MID_EPOCH};
use weir::connectors::kafka::testing::{TestBroker, TestRecord};
use weir::connectors::kafka::{Json, KafkaSource};
use weir::engine::fail::{self, FailAction, FailPoints};

const EVENTS: u64 = 6_000;
const PARTITIONS: i32 = 4;

/// Produces the seeded payments into a new input topic: an account's payments all go to one
/// partition, in order, so the sequential model is exact at any parallelism.
fn input_topic(broker: &TestBroker, seed: u64) -> String {
    let topic = broker.unique_topic("payments-in");
    broker.create_topic(&topic, PARTITIONS).unwrap();
    let records: Vec<TestRecord> = (0..EVENTS)
        .map(|i| {
            let p = payment(seed, i);
            (
                (p.0 % PARTITIONS as u64) as i32,
                Some(p.0.to_be_bytes().to_vec()),
                serde_json::to_vec(&p).unwrap(),
                None,
            )
        })
        .collect();
    broker.produce(&topic, &records).unwrap();
    topic
}

/// Runs Kafka → balance per account → Kafka with `failures` armed; returns the restarts and
/// everything a `read_committed` consumer sees in the output topic.
fn run(
    broker: &TestBroker,
    input: &str,
    parallelism: usize,
    failures: &[(&str, u64, FailAction)],
) -> (u32, Vec<weir::connectors::kafka::testing::ReadRecord>, String) {
    let output = broker.unique_topic("balances-out");
    broker.create_topic(&output, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    for (p, n, a) in failures {
        points.arm(p, *n, *a);
    }
    let p = checkpointed("kafka-to-kafka", dir.path(), parallelism).fail_points(points.clone());
    p.source(
        "payments",
        KafkaSource::new(broker.connection(), [input], Json::<(u64, u64, i64)>::new()).bounded(),
    )
    // Paces the job so that it spans several checkpoints.
    .map("pace", |p: (u64, u64, i64)| {
        if p.1.is_multiple_of(6) {
            std::thread::sleep(Duration::from_millis(1));
        }
        p
    })
    .key_by("by-account", |p: &(u64, u64, i64)| p.0)
    .process("balance", Balance)
    .sink("to-kafka", posted_sink(broker, &output, &format!("{output}-txn")));
    let report = p
        .run()
        .unwrap_or_else(|e| panic!("p{parallelism} failures {failures:?}: job failed: {e}"));
    let unfired: Vec<_> = failures.iter().filter(|(p, _, _)| points.is_armed(p)).collect();
    assert!(
        unfired.is_empty(),
        "p{parallelism}: fail points {unfired:?} never triggered"
    );
    (report.restarts, broker.read_committed(&output).unwrap(), output)
}

#[test]
fn kafka_to_kafka_is_exactly_once_under_a_failure_in_every_window() {
    let broker = TestBroker::start().unwrap();
    let input = input_topic(&broker, 11);
    let expected = model(11, EVENTS);
    type Plan = Vec<(&'static str, u64, FailAction)>;
    let windows: Vec<(&str, Plan, bool)> = vec![
        ("no failure", vec![], false),
        (
            "while processing",
            vec![(fail::PROCESS_RECORD, 4, FailAction::Panic)],
            false,
        ),
        (
            "before the checkpoint completes",
            vec![(fail::SNAPSHOT_SYNC, 3, FailAction::Panic)],
            false,
        ),
        (
            "after the sink pre-committed",
            vec![(fail::AFTER_PRE_COMMIT, 3, FailAction::Panic)],
            false,
        ),
        (
            "checkpoint complete, before the commit",
            vec![(fail::AFTER_METADATA, 2, FailAction::Panic)],
            false,
        ),
        (
            "in the commit, before the transaction",
            vec![(fail::DURING_COMMIT, 2, FailAction::Error)],
            false,
        ),
        (
            "in the middle of producing the epoch",
            vec![(FAIL_MID_EPOCH, 2, FailAction::Panic)],
            true,
        ),
        (
            "everything sent, before commit_transaction",
            vec![(FAIL_BEFORE_TXN_COMMIT, 2, FailAction::Panic)],
            true,
        ),
        (
            "after commit_transaction, before the sink noticed",
            vec![(FAIL_AFTER_TXN_COMMIT, 2, FailAction::Panic)],
            false,
        ),
        (
            "during the restore after a failure",
            vec![
                (fail::AFTER_METADATA, 2, FailAction::Panic),
                (fail::DURING_RESTORE, 2, FailAction::Error),
            ],
            false,
        ),
    ];
    common::trace_if_asked();
    // WEIR_KAFKA_WINDOW=<text> runs only the windows whose description contains it.
    let only = std::env::var("WEIR_KAFKA_WINDOW").unwrap_or_default();
    for (what, failures, aborts_data) in windows.into_iter().filter(|w| w.0.contains(only.as_str())) {
        let (restarts, raw, output) = run(&broker, &input, 2, &failures);
        let ctx = format!("{what}: restarts {restarts}");
        assert_eq!(restarts > 0, !failures.is_empty(), "{ctx}");
        if !aborts_data || broker.filters_aborted() {
            // End to end: exactly the model, as read_committed shows it.
            if decode(&raw) != expected {
                eprintln!("{ctx}: {}", diagnose(&broker, &output, &raw, &expected));
            }
            assert_same(&decode(&raw), &expected, &ctx);
        } else {
            // tansu shows the aborted transaction's records; without them the output is
            // exact (tests/kafka_sink.rs proves those are the aborted copies).
            let (committed, _) = split_aborted_copies(&raw);
            assert_same(&decode(&committed), &expected, &ctx);
        }
    }
}
