//! Hash partitioning by key group for keyed exchanges.

use crate::data::{downcast, erase, Data, ErasedBatch, Key, Record};
use crate::graph::partitioning::KeyPartitioner;
use crate::operator::keyed_process::KeyFn;
use crate::state::key_group::{key_group_of, subtask_for_key_group};
use crate::Result;

/// Sends each record to the subtask owning its key's key group.
pub(crate) struct HashPartitioner<K, T> {
    pub(crate) key_fn: KeyFn<K, T>,
}

impl<K: Key, T: Data> KeyPartitioner for HashPartitioner<K, T> {
    fn split(
        &self,
        batch: Box<dyn ErasedBatch>,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Result<Vec<Box<dyn ErasedBatch>>> {
        let batch = downcast::<T>(batch)?;
        let mut parts: Vec<Vec<Record<T>>> = (0..parallelism).map(|_| Vec::new()).collect();
        let mut buf = Vec::with_capacity(64);
        for r in batch {
            buf.clear();
            bincode::serde::encode_into_std_write((self.key_fn)(&r.value), &mut buf, bincode::config::standard())?;
            let kg = key_group_of(&buf, max_parallelism);
            parts[subtask_for_key_group(kg, max_parallelism, parallelism)].push(r);
        }
        Ok(parts.into_iter().map(erase).collect())
    }
}
