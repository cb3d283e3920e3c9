//! How much memory an exactly-once epoch holds at its barrier.
//!
//! At barrier `n` the engine's sink operator appends the writer's committable to its pending
//! list, clones that list into the operator's snapshot state and encodes the state: the
//! epoch's records are held as the pending committable, as the clone, and as the encoded
//! snapshot at the same moment. The heap bytes of each are counted from the structures
//! (allocator overhead left out, so the figures are lower bounds).

use super::epoch::EpochBuffer;
use super::record::RecordShape;
use super::KafkaCommittable;
use crate::kafka::format::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weir_engine::connector::Record;

/// Heap bytes a committable holds.
fn heap_bytes(c: &KafkaCommittable) -> usize {
    c.records.capacity()
}

/// Heap bytes `clone` holds that `original` does not share.
fn extra_bytes(clone: &KafkaCommittable, original: &KafkaCommittable) -> usize {
    if clone.records.shares_bytes_with(&original.records) {
        0
    } else {
        heap_bytes(clone)
    }
}

/// A typical output record: a small JSON document keyed by account.
#[derive(Serialize, Deserialize)]
struct Posted {
    account: u64,
    id: u64,
    balance: i64,
}

fn shape() -> RecordShape<Posted> {
    RecordShape {
        serializer: Arc::new(Json::<Posted>::new()),
        key: Some(Arc::new(|p: &Posted| Some(p.account.to_be_bytes().to_vec()))),
        partitioner: None,
        headers: None,
        partitions: 3,
        fixed_partition: Some(0),
        epoch_headers: Some(("0".into(), "session".into())),
    }
}

/// The writer's side of an epoch: records written, then pre-committed at the barrier.
fn write_epoch(shape: &RecordShape<Posted>, n: u64) -> EpochBuffer {
    let mut buffer = EpochBuffer::default();
    for i in 0..n {
        let r = Record {
            value: Posted {
                account: i % 97,
                id: i,
                balance: (i as i64) * 13 - 5_000,
            },
            timestamp: Some(1_700_000_000_000 + i as i64),
        };
        buffer.push(&shape.encode(&r).unwrap()).unwrap();
    }
    buffer
}

fn pre_commit(buffer: &mut EpochBuffer) -> KafkaCommittable {
    KafkaCommittable { records: buffer.take() }
}

#[test]
fn an_epoch_is_held_at_most_about_twice_at_its_barrier() {
    const N: u64 = 20_000;
    let shape = shape();
    let mut buffer = write_epoch(&shape, N);
    // The barrier, as the engine's sink operator runs it.
    let committable = pre_commit(&mut buffer);
    let pending = vec![(7u64, committable)];
    let state = (7u64, pending.clone());
    let snapshot = bincode::serde::encode_to_vec(&state, bincode::config::standard()).unwrap();
    let held = heap_bytes(&pending[0].1);
    let copied = extra_bytes(&state.1[0].1, &pending[0].1);
    let encoded = snapshot.len();
    let at_barrier = held + copied + encoded;
    eprintln!(
        "{N} records: pending epoch {held} B, its copy for the snapshot {copied} B, snapshot {encoded} B: \
         {at_barrier} B at the barrier ({:.2}x the snapshot)",
        at_barrier as f64 / encoded as f64
    );
    assert!(
        at_barrier * 10 <= encoded * 22,
        "the barrier holds {at_barrier} B for a {encoded} B snapshot: more than the pending epoch plus its encoding"
    );
}
