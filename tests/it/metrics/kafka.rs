//! The Kafka source's metrics, read from this process's own `/metrics` endpoint: consumer lag
//! per partition (the partition's high watermark minus the next offset to hand out) and
//! records sent to the dead-letter topic.

use std::net::SocketAddr;
use weir::connectors::kafka::testing::{TestBroker, TestRecord};
use weir::connectors::kafka::{BadRecordPolicy, Json, KafkaSource};
use weir::engine::metrics::{serve, OperatorMetrics};
use weir::prelude::*;

fn broker() -> TestBroker {
    TestBroker::start().expect("a Kafka-protocol broker (tansu or WEIR_KAFKA_BROKERS)")
}

/// Serves this process's metrics (once per process) and returns the exposition.
fn scrape() -> String {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let served = serve(addr).unwrap();
    ureq::get(format!("http://{served}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The value of the series whose line starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Partition 0's high watermark, as the broker reports it.
fn high_watermark(b: &TestBroker, topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", b.brokers())
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::fetch_watermarks(&consumer, topic, 0, std::time::Duration::from_secs(10))
        .unwrap()
        .1
}

fn payload(i: u64) -> Vec<u8> {
    serde_json::to_vec(&i).unwrap()
}

#[test]
fn the_kafka_source_exports_its_lag_per_partition() {
    scrape(); // the process exports from now on
    let b = broker();
    let topic = b.unique_topic("lag");
    b.create_topic(&topic, 1).unwrap();
    // One record per produce call: tansu reports a high watermark of one past the last
    // batch's first offset, which is the record count only when every batch has one record.
    const PRODUCED: usize = 20;
    for i in 0..PRODUCED as u64 {
        b.produce(&topic, &[(0, None, payload(i), None)]).unwrap();
    }
    let src = KafkaSource::new(b.connection(), [topic.as_str()], Json::<u64>::new())
        .discovery_interval(None)
        .read_uncommitted();
    let splits = src.splits().unwrap();
    let mut reader = src
        .create_reader(
            splits
                .iter()
                .map(|s| AssignedSplit {
                    offset: Some(0),
                    ..AssignedSplit::fresh(s.clone())
                })
                .collect(),
            SubtaskInfo {
                index: 0,
                parallelism: 1,
                restored: true,
            },
        )
        .unwrap();
    reader.attach_metrics(&OperatorMetrics::new("kafka-lag", "requests", 0));
    let series = format!(
        r#"weir_kafka_consumer_lag_records{{job="kafka-lag",step="requests",subtask="0",topic="{topic}",partition="0"}}"#
    );
    // A record at a time: the gauge appears once the high watermark is known, set by the
    // latest poll, so it shows the records not handed out yet.
    let mut got = Vec::new();
    let lag = loop {
        assert!(got.len() < PRODUCED, "the lag never appeared while reading");
        reader.poll(&mut got, 1).unwrap();
        if let Some(v) = value(&scrape(), &series) {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let high = high_watermark(&b, &topic);
    assert_eq!(high, PRODUCED as i64, "the broker's high watermark");
    assert_eq!(
        lag,
        (PRODUCED - got.len()) as f64,
        "high watermark {high}, {} handed out",
        got.len()
    );
    assert!(lag > 0.0);
}

#[test]
fn dead_letters_are_exported_per_source_subtask() {
    scrape();
    let b = broker();
    let topic = b.unique_topic("dlq-metrics-src");
    let dlq = b.unique_topic("dlq-metrics");
    b.create_topic(&topic, 1).unwrap();
    b.create_topic(&dlq, 1).unwrap();
    let mut records: Vec<TestRecord> = (0..20).map(|i| (0, None, payload(i), None)).collect();
    for i in 0..3 {
        records.insert(i * 5 + 1, (0, None, format!("not json {i}").into_bytes(), None));
    }
    b.produce(&topic, &records).unwrap();
    let src = KafkaSource::new(b.connection(), [topic.as_str()], Json::<u64>::new())
        .bounded()
        .bad_records(BadRecordPolicy::DeadLetter { topic: dlq });
    let p = Pipeline::new("kafka-dead-letters");
    let out = CollectSink::new();
    p.source("requests", src).sink("out", out.clone());
    let report = p.run().unwrap();
    assert_eq!(out.records().len(), 20);
    assert_eq!(
        report.operator("requests").unwrap().counters.get("dead_letters"),
        Some(&3)
    );
    let text = scrape();
    assert_eq!(
        value(
            &text,
            r#"weir_dead_letters_total{job="kafka-dead-letters",step="requests",subtask="0"}"#
        ),
        Some(3.0),
        "{text}"
    );
}
