//! What the Kafka source and sink share: client configuration, error mapping and topic
//! administration.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;
use weir_engine::connector::{Error, Result};

/// How long metadata and offset look-ups may take before they count as a broker failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the brokers are and which extra librdkafka properties to pass through.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Extra librdkafka properties (security settings, tuning); they override Weir's defaults
    /// except the ones a guarantee depends on, which are refused with a `Config` error.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConnection {
    /// Brokers at `brokers` with no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConnection {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Refuses empty broker lists.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return Err(Error::config(
                "Kafka brokers must not be empty (expected host:port[,host:port...])",
            ));
        }
        Ok(())
    }

    /// A client configuration with the brokers, Weir's `defaults`, then the user's
    /// properties; a user property listed in `guarded` with a different value is refused.
    pub fn client_config(&self, defaults: &[(&str, &str)], guarded: &[(&str, &str)]) -> Result<ClientConfig> {
        self.validate()?;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults.iter().chain(guarded) {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            if let Some((_, need)) = guarded.iter().find(|(g, _)| g == k) {
                if v != need {
                    return Err(Error::config(format!(
                        "Kafka property {k}={v} is not allowed here: Weir's guarantee depends on {k}={need}"
                    )));
                }
            }
            c.set(k, v);
        }
        Ok(c)
    }
}

/// Turns a Kafka client error into Weir's error: configuration problems the user must fix,
/// the rest as retryable broker failures (a restart from the last checkpoint may succeed).
pub fn kafka_error(what: impl Into<String>, e: KafkaError) -> Error {
    let what = what.into();
    let fatal_config = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::InvalidArgument
                | RDKafkaErrorCode::InvalidTransactionTimeout
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
        )
    ) || matches!(e, KafkaError::ClientCreation(_));
    if fatal_config {
        Error::config(format!("{what}: {e}")).with_source(e)
    } else {
        Error::external(true, format!("{what}: {e}")).with_source(e)
    }
}

/// The partition count of `topic`, or a `Config` error naming it if it does not exist.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let md = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(format!("reading metadata of topic {topic}"), e))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| Error::config(format!("Kafka topic {topic} does not exist")))?;
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition || code == RDKafkaErrorCode::UnknownTopic {
            return Err(Error::config(format!("Kafka topic {topic} does not exist")));
        }
        return Err(Error::external(true, format!("metadata of topic {topic}: {code}")));
    }
    if t.partitions().is_empty() {
        return Err(Error::config(format!(
            "Kafka topic {topic} does not exist (no partitions)"
        )));
    }
    Ok(t.partitions().len() as i32)
}

/// A consumer used only for metadata and offset look-ups.
pub fn metadata_consumer(conn: &KafkaConnection) -> Result<BaseConsumer> {
    conn.client_config(&[("enable.auto.commit", "false")], &[])?
        .create()
        .map_err(|e| kafka_error("creating a Kafka metadata client", e))
}

/// An admin client and a runtime to wait for its calls on.
fn admin(conn: &KafkaConnection) -> Result<(AdminClient<DefaultClientContext>, tokio::runtime::Runtime)> {
    let admin = conn
        .client_config(&[], &[])?
        .create()
        .map_err(|e| kafka_error("creating a Kafka admin client", e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime for Kafka admin calls", e))?;
    Ok((admin, rt))
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists already.
/// For examples and tests; production topics are usually created by operators.
pub fn ensure_topic(conn: &KafkaConnection, topic: &str, partitions: i32) -> Result<()> {
    let probe = metadata_consumer(conn)?;
    if partition_count(&probe, topic).is_ok() {
        return Ok(());
    }
    let (admin, rt) = admin(conn)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = rt
        .block_on(admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT))))
        .map_err(|e| kafka_error(format!("creating topic {topic}"), e))?;
    for r in results {
        if let Err((name, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(Error::external(true, format!("creating topic {name}: {code}")));
            }
        }
    }
    // Metadata can lag the creation: wait until the topic is visible.
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match partition_count(&probe, topic) {
            Ok(n) if n >= partitions => return Ok(()),
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => {
                return Err(Error::external(
                    true,
                    format!("topic {topic} has {n} partitions, expected {partitions}"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

impl From<&str> for KafkaConnection {
    fn from(brokers: &str) -> Self {
        KafkaConnection::new(brokers)
    }
}

impl From<String> for KafkaConnection {
    fn from(brokers: String) -> Self {
        KafkaConnection::new(brokers)
    }
}

impl From<&String> for KafkaConnection {
    fn from(brokers: &String) -> Self {
        KafkaConnection::new(brokers.clone())
    }
}

/// Grows `topic` to `total` partitions (no-op if it has that many already) and waits until
/// the new partitions are visible. For tests and operators' tooling.
pub fn add_partitions(conn: &KafkaConnection, topic: &str, total: i32) -> Result<()> {
    let probe = metadata_consumer(conn)?;
    if partition_count(&probe, topic)? >= total {
        return Ok(());
    }
    let (admin, rt) = admin(conn)?;
    let new = rdkafka::admin::NewPartitions::new(topic, total as usize);
    let results = rt
        .block_on(admin.create_partitions([&new], &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT))))
        .map_err(|e| kafka_error(format!("adding partitions to {topic}"), e))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(Error::external(true, format!("adding partitions to {name}: {code}")));
        }
    }
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let n = partition_count(&probe, topic)?;
        if n >= total {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::external(
                true,
                format!("topic {topic} has {n} partitions, expected {total}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
