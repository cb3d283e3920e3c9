//! Reading a sink's output back, for audits and tests: every record of a topic as a
//! `read_committed` consumer sees it, and the copies an aborted transaction left behind on a
//! broker that does not hide them.

use super::client::{kafka_error, partition_count, KafkaConnection, REQUEST_TIMEOUT};
use super::sink::{EPOCH_HEADER, SESSION_HEADER, SUBTASK_HEADER};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_engine::connector::{Error, Result};

/// How long a read waits for more records after every partition reported its end.
const QUIET: Duration = Duration::from_millis(700);

/// Which records a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Committed transactions and non-transactional records only.
    ReadCommitted,
    /// Everything written, including open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Timestamp (ms).
    pub timestamp: Option<i64>,
}

impl ReadRecord {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads every record of `topic` visible at `isolation`, in partition then offset order,
/// until every partition's end (and a short quiet period after it: a broker's end offsets
/// can lag what it has just made readable). For audits and tests of bounded output.
///
/// # Errors
/// `Config` if the topic does not exist; `External` if the broker fails or a partition does
/// not reach its end within a minute (for example, a transaction left open).
pub fn read_topic(conn: &KafkaConnection, topic: &str, isolation: Isolation) -> Result<Vec<ReadRecord>> {
    let consumer: BaseConsumer = conn
        .client_config(
            &[
                ("group.id", "weir-test-reader"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", isolation.as_str()),
            ],
            &[],
        )?
        .create()
        .map_err(|e| kafka_error("creating a test reader", e))?;
    let partitions = partition_count(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = std::collections::BTreeSet::new();
    for p in 0..partitions {
        let (_low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("reading end offsets", e))?;
        if high > 0 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| kafka_error("assigning", e))?;
            pending.insert(p);
        }
    }
    let mut out = Vec::new();
    if pending.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| kafka_error("assigning", e))?;
    // End of partition is not enough: a broker's end offsets can lag what it has just
    // made readable, so reading ends only after a quiet period past every partition's end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_record = Instant::now();
    loop {
        if pending.is_empty() && last_record.elapsed() >= QUIET {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::external(
                true,
                format!("reading {topic}: partitions {pending:?} did not reach their end within 60 s"),
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(kafka_error(format!("reading {topic}"), e)),
            Some(Ok(m)) => {
                last_record = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.map(|v| v.to_vec()).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    payload: m.payload().map(|v| v.to_vec()),
                    headers,
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// Splits records written by Weir's exactly-once sink into the copies that committed and the
/// copies of aborted transactions, for brokers whose `read_committed` consumers still see
/// records of aborted transactions.
///
/// Every record carries its sink subtask, epoch and producer session in headers. A sink
/// subtask produces an epoch again only after the previous attempt's transaction was aborted
/// (a committed epoch is never produced again: the epoch marker commits with it), so of the
/// copies of one (subtask, epoch) exactly the latest session's committed. Records without the
/// headers are kept as committed.
pub fn split_aborted_copies(records: &[ReadRecord]) -> (Vec<ReadRecord>, Vec<ReadRecord>) {
    let tag = |r: &ReadRecord| -> Option<((String, String), String)> {
        Some((
            (r.header(SUBTASK_HEADER)?, r.header(EPOCH_HEADER)?),
            r.header(SESSION_HEADER)?,
        ))
    };
    let mut latest: BTreeMap<(String, String), String> = BTreeMap::new();
    for (key, session) in records.iter().filter_map(tag) {
        let l = latest.entry(key).or_insert_with(|| session.clone());
        if session > *l {
            *l = session;
        }
    }
    records.iter().cloned().partition(|r| match tag(r) {
        Some((key, session)) => latest[&key] == session,
        None => true,
    })
}
