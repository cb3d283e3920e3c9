//! Transactions left by sink subtasks that a start at lower parallelism no longer runs.
//!
//! Transactional ids are `<prefix>-<subtask>`. When a job starts with fewer sink subtasks
//! than an earlier run had, nobody calls `init_transactions` for the ids above the new range:
//! a transaction such a subtask left open would stay open until the broker's transaction
//! timeout (holding back every `read_committed` consumer of its partitions), and a zombie
//! process with such an id could still commit. Subtask 0 therefore fences those ids at every
//! start, as Flink's Kafka sink aborts lingering transactions.
//!
//! Which subtasks ran before is recorded on the broker, so it survives a fresh start and a
//! lost checkpoint: every sink subtask commits its epoch marker (a consumer group named after
//! its transactional id) before it produces anything. Subtask 0 fences `<prefix>-<p>`, then
//! reads that id's marker; while there is one, it goes on with `p + 1`. Fencing comes before
//! the read because a marker read waits for an open transaction that carries marker offsets.
//!
//! # After a crash
//! Fencing is idempotent and changes no marker, so a crash part-way leaves the same ids to
//! fence at the next start. Markers of subtasks above the parallelism are kept (they are the
//! record), so those ids are fenced again at every start at lower parallelism.

use super::marker::EpochMarker;
use crate::kafka::client::{kafka_error, KafkaConnection, REQUEST_TIMEOUT};
use rdkafka::producer::{BaseProducer, Producer};
use weir_engine::Result;

/// Fences the transactional id `<prefix>-<k>` of every sink subtask `k >= parallelism` that
/// ran before (its open transaction is aborted; its older producers can no longer commit).
/// Returns how many ids had run.
///
/// # Errors
/// `External` (retryable) if the broker cannot be reached; `Config` for refused properties.
pub(crate) fn fence_subtasks_above(
    conn: &KafkaConnection,
    topic: &str,
    prefix: &str,
    parallelism: usize,
    sink: &str,
) -> Result<usize> {
    let mut k = parallelism;
    loop {
        let id = format!("{prefix}-{k}");
        fence(conn, &id, sink)?;
        if EpochMarker::new(conn, topic, &id)?.read_if_written()?.is_none() {
            return Ok(k - parallelism);
        }
        tracing::info!(sink, transactional_id = %id, parallelism, "fenced the transactional id of a sink subtask above the parallelism, which an earlier run had");
        k += 1;
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
