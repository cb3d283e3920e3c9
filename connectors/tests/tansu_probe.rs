//! Probe of the test broker's transaction handling (ignored: run by hand).
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;
use weir_connectors::kafka::testing::TestBroker;

fn producer(b: &TestBroker, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b.brokers())
        .set("transactional.id", id)
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

#[test]
#[ignore]
fn abort_then_init_then_commit() {
    let b = TestBroker::start().unwrap();
    let mode = std::env::var("PROBE_MODE").unwrap_or_default();
    let mut bad = 0;
    for round in 0..30 {
        let topic = b.unique_topic("probe");
        b.create_topic(&topic, 3).unwrap();
        let id = format!("{topic}-txn");
        let group: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.brokers())
            .set("group.id", &id)
            .create()
            .unwrap();
        let meta = group.group_metadata().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(1)).unwrap();
        {
            let a = producer(&b, &id);
            a.begin_transaction().unwrap();
            for i in 0..200 {
                a.send(
                    BaseRecord::<(), String>::to(&topic)
                        .payload(&format!("a{i}"))
                        .partition(i % 3),
                )
                .unwrap();
            }
            a.flush(Duration::from_secs(10)).unwrap();
            a.send_offsets_to_transaction(&tpl, &meta, Duration::from_secs(10))
                .unwrap();
            if mode != "drop" {
                a.abort_transaction(Duration::from_secs(10)).unwrap();
            }
        }
        let c = producer(&b, &id);
        c.begin_transaction().unwrap();
        for i in 0..200 {
            c.send(
                BaseRecord::<(), String>::to(&topic)
                    .payload(&format!("c{i}"))
                    .partition(i % 3),
            )
            .unwrap();
        }
        c.send_offsets_to_transaction(&tpl, &meta, Duration::from_secs(10))
            .unwrap();
        c.commit_transaction(Duration::from_secs(10)).unwrap();
        let got = b.read_committed(&topic).unwrap();
        let committed = got.iter().filter(|r| r.payload.as_deref().unwrap()[0] == b'c').count();
        if committed != 200 {
            bad += 1;
            eprintln!("round {round}: {committed} committed visible, {} read", got.len());
        }
    }
    assert_eq!(bad, 0);
}

#[test]
#[ignore]
fn eof_when_assigned_mid_partition() {
    let b = TestBroker::start().unwrap();
    let topic = b.unique_topic("eofprobe");
    b.create_topic(&topic, 1).unwrap();
    let recs: Vec<weir_connectors::kafka::testing::TestRecord> = (0..1500)
        .map(|i| (0, None, format!("r{i}").into_bytes(), None))
        .collect();
    b.produce(&topic, &recs).unwrap();
    for start in [0i64, 1, 350, 700, 1000, 1400, 1499] {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", b.brokers())
            .set("enable.partition.eof", "true")
            .set("group.id", "probe")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start)).unwrap();
        c.assign(&tpl).unwrap();
        let mut n = 0;
        let mut first = None;
        loop {
            match c.poll(Duration::from_secs(5)) {
                Some(Ok(m)) => {
                    use rdkafka::Message;
                    first.get_or_insert(m.offset());
                    n += 1
                }
                Some(Err(e)) => {
                    eprintln!(
                        "start {start}: {e} after {n} records (first {first:?}), position {:?}",
                        c.position()
                    );
                    break;
                }
                None => {
                    eprintln!("start {start}: timeout after {n}");
                    break;
                }
            }
        }
    }
}
