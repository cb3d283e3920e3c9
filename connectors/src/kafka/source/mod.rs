//! The Kafka source (being written: the types below are its public shape).

/// Where a fresh start (no checkpoint) begins reading each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record.
    Earliest,
    /// After the newest record at start.
    Latest,
    /// The first record with a timestamp at or after this one (ms since the Unix epoch).
    Timestamp(i64),
    /// The consumer group's committed offsets; partitions without one start at `fallback`.
    GroupOffsets {
        /// Where partitions without a committed offset start.
        fallback: Box<StartPosition>,
    },
}

/// What happens to a record the deserializer rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecordPolicy {
    /// Fail the job (without restarting: the same record would fail again).
    Fail,
    /// Skip it and count it.
    Skip,
    /// Send it to this dead-letter topic and count it.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
}

/// Reads Kafka topics (being written).
#[derive(Debug)]
pub struct KafkaSource<T>(std::marker::PhantomData<T>);
