//! How the records of an edge of the logical graph are distributed over the subtasks of its
//! downstream step.

use crate::data::ErasedBatch;
use crate::Result;
use std::sync::Arc;

/// Splits a batch by key group among the subtasks of a keyed downstream operator.
pub trait KeyPartitioner: Send + Sync {
    /// Splits `batch` into one (possibly empty) batch per downstream subtask, given the
    /// downstream parallelism and the job's number of key groups.
    fn split(
        &self,
        batch: Box<dyn ErasedBatch>,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Result<Vec<Box<dyn ErasedBatch>>>;
}

/// How records of an edge are distributed.
#[derive(Clone)]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i` (same parallelism only).
    Forward,
    /// Whole batches round-robin over downstream subtasks.
    Rebalance,
    /// Every batch to every downstream subtask.
    Broadcast,
    /// By key group of each record's key.
    Hash(Arc<dyn KeyPartitioner>),
}

impl std::fmt::Debug for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Partitioning::Forward => "forward",
            Partitioning::Rebalance => "rebalance",
            Partitioning::Broadcast => "broadcast",
            Partitioning::Hash(_) => "hash",
        })
    }
}
