//! A Kafka-protocol broker for tests and examples: an external cluster named by
//! `WEIR_KAFKA_BROKERS`, or a tansu broker started on loopback and stopped on drop.
//!
//! tansu (a Kafka-compatible broker, installed by `.ci/setup` from PyPI) supports
//! transactions, fencing, `read_committed` holding back open transactions and transactional
//! offset commits, but its `read_committed` consumers still see records of *aborted*
//! transactions. [`TestBroker::filters_aborted`] tells tests which of the two they have.

use super::audit::read_topic;
pub use super::audit::{split_aborted_copies, Isolation, ReadRecord};
use super::client::{ensure_topic, kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use super::delivery::{send_waiting, DeliveryTracker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_engine::connector::{Error, Result, WatchedServer};

/// Names an external Kafka cluster to test against instead of a local tansu.
pub const BROKERS_ENV: &str = "WEIR_KAFKA_BROKERS";
/// Path of the tansu binary, if it is not on `PATH`.
pub const TANSU_ENV: &str = "WEIR_TANSU";

static TOPIC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A record to produce in a test: `(partition, key, value, timestamp ms)`.
pub type TestRecord = (i32, Option<Vec<u8>>, Vec<u8>, Option<i64>);

/// A running broker (or a handle on an external one).
pub struct TestBroker {
    conn: KafkaConnection,
    child: Option<WatchedServer>,
    log: Option<PathBuf>,
}

impl std::fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBroker")
            .field("brokers", &self.conn.brokers)
            .field("tansu", &self.child.is_some())
            .finish()
    }
}

impl TestBroker {
    /// `WEIR_KAFKA_BROKERS` if set, otherwise a new tansu broker on a free loopback port.
    ///
    /// # Errors
    /// `Config` if neither is available (with how to install tansu).
    pub fn start() -> Result<Self> {
        if let Ok(b) = std::env::var(BROKERS_ENV) {
            if !b.trim().is_empty() {
                return Ok(TestBroker {
                    conn: KafkaConnection::new(b),
                    child: None,
                    log: None,
                });
            }
        }
        Self::start_tansu()
    }

    /// A new tansu broker with in-memory storage on a free loopback port.
    pub fn start_tansu() -> Result<Self> {
        let bin = find_tansu()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free port for the test broker", e))?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("weir-tansu-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).map_err(|e| Error::io("creating the test broker's log", e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("creating the test broker's log", e))?;
        // A watchdog shell runs tansu in its own process group and ends it when this process
        // is gone, even if it died without running destructors (an abort, a kill -9).
        let mut command = WatchedServer::command("weir-test-broker", &bin);
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(out)
            .stderr(err);
        let child =
            WatchedServer::spawn(command).map_err(|e| Error::io(format!("starting tansu ({})", bin.display()), e))?;
        let broker = TestBroker {
            conn: KafkaConnection::new(format!("127.0.0.1:{port}")),
            child: Some(child),
            log: Some(log),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::external(
                    true,
                    format!("tansu did not listen on port {port} within 20 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.conn.brokers
    }

    /// A connection to this broker.
    pub fn connection(&self) -> KafkaConnection {
        self.conn.clone()
    }

    /// Whether `read_committed` consumers are spared records of aborted transactions (an
    /// external Kafka cluster: yes; tansu: no).
    pub fn filters_aborted(&self) -> bool {
        self.child.is_none()
    }

    /// Where the local broker logs, if this is one.
    pub fn log_path(&self) -> Option<&PathBuf> {
        self.log.as_ref()
    }

    /// A topic name no other test (or earlier run against the same cluster) uses.
    pub fn unique_topic(&self, prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            TOPIC_COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        )
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        ensure_topic(&self.conn, topic, partitions)
    }

    /// Produces `(partition, key, value, timestamp)` records, non-transactionally, and waits
    /// until every one is acknowledged.
    pub fn produce(&self, topic: &str, records: &[TestRecord]) -> Result<()> {
        let producer: BaseProducer<DeliveryTracker> = self
            .conn
            .client_config(&[("enable.idempotence", "true"), ("linger.ms", "5")], &[])?
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| kafka_error("creating a test producer", e))?;
        for (p, k, v, ts) in records {
            let mut r = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic).partition(*p).payload(v);
            if let Some(k) = k {
                r = r.key(k);
            }
            if let Some(ts) = ts {
                r = r.timestamp(*ts);
            }
            send_waiting(&producer, r, None, None).map_err(|e| kafka_error("producing a test record", e))?;
        }
        producer
            .flush(REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("flushing test records", e))?;
        match producer.context().take_failures() {
            None => Ok(()),
            Some((n, first)) => Err(Error::external(
                true,
                format!("{n} test records not delivered: {first}"),
            )),
        }
    }

    /// Every record of `topic` visible to a `read_committed` consumer, in partition then
    /// offset order. Reads until every partition's end; on tansu that includes records of
    /// aborted transactions (see [`TestBroker::filters_aborted`]).
    pub fn read_committed(&self, topic: &str) -> Result<Vec<ReadRecord>> {
        self.read(topic, Isolation::ReadCommitted)
    }

    /// Every record of `topic`, including those of open and aborted transactions.
    pub fn read_uncommitted(&self, topic: &str) -> Result<Vec<ReadRecord>> {
        self.read(topic, Isolation::ReadUncommitted)
    }

    fn read(&self, topic: &str, isolation: Isolation) -> Result<Vec<ReadRecord>> {
        read_topic(&self.conn, topic, isolation)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // The watchdog and tansu go first, then the log.
        drop(self.child.take());
        if let Some(log) = self.log.take() {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// `WEIR_TANSU`, then `tansu` on `PATH`, then `~/.local/bin/tansu`.
fn find_tansu() -> Result<PathBuf> {
    if let Ok(p) = std::env::var(TANSU_ENV) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/tansu"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::config(format!(
            "no Kafka-protocol broker for tests: set {BROKERS_ENV}=host:port for a Kafka cluster, \
             or install tansu with `bash .ci/setup` (from PyPI) or point {TANSU_ENV} at its binary"
        ))
    })
}
