//! Transactions left by sink subtasks that a start at lower parallelism no longer runs.
//!
//! Transactional ids are `<prefix>-<subtask>`. When a job starts with fewer sink subtasks
//! than an earlier run had, nobody calls `init_transactions` for the ids above the new range:
//! a transaction such a subtask left open would stay open until the broker's transaction
//! timeout (holding back every `read_committed` consumer of its partitions), and a zombie
//! process with such an id could still commit. Subtask `j` of `p` therefore fences the ids
//! `k >= p` with `k mod p == j` at every start (beside opening, finished before it commits its
//! first epoch or produces the epochs of such a subtask it takes over after a rescale), as
//! Flink's Kafka sink aborts lingering transactions. Each id has one fencer, the subtask that
//! takes over its restored epochs, so the two never race.
//!
//! Which subtasks ran before is recorded on the broker, so it survives a fresh start and a
//! lost checkpoint: every sink subtask commits its epoch marker (a consumer group named after
//! its transactional id) before it produces anything. Subtask `j` looks for the marker of
//! `<prefix>-<p + j>` (without waiting for open transactions); while there is one, it fences
//! that id and goes on with `p + j + p`.
//!
//! # After a crash
//! Fencing is idempotent and changes no marker, so a crash part-way leaves the same ids to
//! fence at the next start. Markers of subtasks above the parallelism are kept (they are the
//! record), so those ids are fenced again at every start at lower parallelism.

use super::marker::EpochMarker;
use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use rdkafka::producer::{BaseProducer, Producer};
use std::thread::JoinHandle;
use weir_engine::connector::{Error, Result};

/// Fencing that runs beside the writer's start (each id costs a marker read, about 0.1 s),
/// so that opening the sink does not wait for it; the writer waits for it before it commits
/// its first epoch.
#[derive(Debug, Default)]
pub(crate) struct Fencing(Option<JoinHandle<Result<usize>>>);

impl Fencing {
    /// Starts [`fence_subtasks_above`] on a thread of its own.
    ///
    /// # Errors
    /// `Io` if the thread cannot be started.
    pub(crate) fn start(
        conn: KafkaConnection,
        topic: String,
        prefix: String,
        (subtask, parallelism): (usize, usize),
        sink: String,
    ) -> Result<Self> {
        std::thread::Builder::new()
            .name(format!("weir-{sink}-fencing"))
            .spawn(move || fence_subtasks_above(&conn, &topic, &prefix, (subtask, parallelism), &sink))
            .map(|h| Fencing(Some(h)))
            .map_err(|e| Error::io("starting the Kafka sink's fencing of earlier subtasks", e))
    }

    /// Waits until the fencing is done (at once if it was, or never started).
    ///
    /// # Errors
    /// The fencing's error, once.
    pub(crate) fn finish(&mut self) -> Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(h) => h
                .join()
                .map_err(|_| Error::internal("the Kafka sink's fencing of earlier subtasks panicked"))?
                .map(|_| ()),
        }
    }
}

/// Fences the transactional id `<prefix>-<k>` of every sink subtask `k >= parallelism` with
/// `k mod parallelism == subtask` that ran before (its open transaction is aborted; its older
/// producers can no longer commit). Returns how many ids had run.
///
/// # Errors
/// `External` (retryable) if the broker cannot be reached; `Config` for refused properties.
pub(crate) fn fence_subtasks_above(
    conn: &KafkaConnection,
    topic: &str,
    prefix: &str,
    (subtask, parallelism): (usize, usize),
    sink: &str,
) -> Result<usize> {
    let mut k = parallelism + subtask;
    let mut fenced = 0;
    loop {
        let id = format!("{prefix}-{k}");
        if !EpochMarker::was_written(conn, topic, &id)? {
            return Ok(fenced);
        }
        fence(conn, &id, sink)?;
        tracing::info!(sink, transactional_id = %id, parallelism, "fenced the transactional id of a sink subtask above the parallelism, which an earlier run had");
        fenced += 1;
        k += parallelism;
    }
}

/// Fences `id`: `init_transactions` of a new producer aborts the id's open transaction and
/// bumps its epoch.
fn fence(conn: &KafkaConnection, id: &str, sink: &str) -> Result<()> {
    let producer: BaseProducer = conn
        .client_config(&[], &[("transactional.id", id), ("enable.idempotence", "true")])?
        .create()
        .map_err(|e| kafka_error(format!("Kafka sink {sink}: creating a producer to fence {id}"), e))?;
    producer
        .init_transactions(REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(format!("Kafka sink {sink}: fencing transactional id {id}"), e))
}
