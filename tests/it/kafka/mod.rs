//! What the Kafka tests share: a stateful pipeline into a Kafka sink, its sequential model,
//! and reading the sink's output back.
#![allow(dead_code)] // not every helper is used by every build of the tests

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use weir::connectors::kafka::sink::{EPOCH_HEADER, SESSION_HEADER, SUBTASK_HEADER};
use weir::connectors::kafka::testing::{ReadRecord, TestBroker};
use weir::connectors::kafka::{Json, KafkaSink};
use weir::engine::sink::Sink;
use weir::engine::source::generator::mix;
use weir::prelude::*;

/// One account's balance after one payment: the pipeline's output record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Posted {
    pub account: u64,
    pub id: u64,
    pub balance: i64,
}

/// Splits of the generated input. An account's payments all come from one split (account
/// ≡ index mod `SPLITS`), so each account sees its payments in index order at any
/// parallelism and the sequential model is exact.
pub const SPLITS: u64 = 4;

/// Payment `i` of the seeded input: `(account, id, cents)`.
pub fn payment(seed: u64, i: u64) -> (u64, u64, i64) {
    let account = i % SPLITS + SPLITS * (mix(seed, i) % 4);
    (account, i, (mix(seed ^ 7, i) % 1000) as i64 - 300)
}

/// Keeps each account's balance in keyed state and emits it after every payment.
#[derive(Clone)]
pub struct Balance;

impl KeyedProcess<u64, (u64, u64, i64)> for Balance {
    type Out = Posted;
    fn process(
        &mut self,
        (account, id, cents): (u64, u64, i64),
        ctx: &mut KeyedContext<'_, u64, Posted>,
    ) -> Result<()> {
        let mut st = ctx.value_state::<i64>("balance");
        let balance = st.get()?.unwrap_or(0) + cents;
        st.set(&balance)?;
        ctx.emit(Posted { account, id, balance });
        Ok(())
    }
}

/// What the pipeline must commit for `events` payments of `seed`: computed sequentially.
pub fn model(seed: u64, events: u64) -> Vec<Posted> {
    let mut balances: BTreeMap<u64, i64> = BTreeMap::new();
    let mut out: Vec<Posted> = (0..events)
        .map(|i| {
            let (account, id, cents) = payment(seed, i);
            let b = balances.entry(account).or_default();
            *b += cents;
            Posted {
                account,
                id,
                balance: *b,
            }
        })
        .collect();
    out.sort();
    out
}

/// A pipeline checkpointing every 40 ms into `dir`, restarting quickly after failures.
pub fn checkpointed(name: &str, dir: &std::path::Path, parallelism: usize) -> Pipeline {
    Pipeline::new(name)
        .parallelism(parallelism)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(40))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 10,
            delay: Duration::from_millis(10),
        })
}

/// A checkpointed pipeline: seeded payments → balance per account → `sink`.
pub fn balance_pipeline<S: Sink<Posted>>(
    name: &str,
    dir: &std::path::Path,
    seed: u64,
    events: u64,
    parallelism: usize,
    sink: S,
) -> Pipeline {
    let p = checkpointed(name, dir, parallelism);
    p.source(
        "payments",
        GeneratorSource::new(move |i| payment(seed, i))
            .bounded(events)
            .splits(SPLITS as usize)
            .rate_per_second(4_000.0),
    )
    .key_by("by-account", |p: &(u64, u64, i64)| p.0)
    .process("balance", Balance)
    .sink("to-kafka", sink);
    p
}

/// An exactly-once sink of `Posted` records into `topic`, keyed by account, each sink
/// subtask writing its own partition.
///
/// One producer per partition is deliberate: tansu 0.6.0 (memory storage) can lose records
/// when two producers append to one partition at the same moment (see
/// `connectors/tests/broker_probe.rs`), which would fail these tests for the broker's sake.
pub fn posted_sink(broker: &TestBroker, topic: &str, prefix: &str) -> KafkaSink<Posted> {
    KafkaSink::exactly_once(broker.brokers(), topic, Json::<Posted>::new())
        .key(|p: &Posted| Some(p.account.to_be_bytes().to_vec()))
        .partition_per_subtask()
        .transactional_id_prefix(prefix)
}

/// Decodes records as `Posted`, sorted.
pub fn decode(records: &[ReadRecord]) -> Vec<Posted> {
    let mut v: Vec<Posted> = records
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).expect("a Posted record"))
        .collect();
    v.sort();
    v
}

/// Which sink subtask, epoch and producer session a record came from.
pub fn provenance(r: &ReadRecord) -> (String, CheckpointId, String) {
    (
        r.header(SUBTASK_HEADER).expect("subtask header"),
        r.header(EPOCH_HEADER)
            .expect("epoch header")
            .parse()
            .expect("numeric epoch"),
        r.header(SESSION_HEADER).expect("session header"),
    )
}

pub use weir::connectors::kafka::audit::split_aborted_copies;

/// Asserts `got` equals `expected`, naming a few differences.
pub fn assert_same(got: &[Posted], expected: &[Posted], ctx: &str) {
    if got != expected {
        let missing: Vec<_> = expected.iter().filter(|e| !got.contains(e)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|g| !expected.contains(g)).take(5).collect();
        panic!(
            "{ctx}: output differs from the model: {} records, {} expected; missing {missing:?}; extra {extra:?}",
            got.len(),
            expected.len()
        );
    }
}

/// Explains a mismatch: whether the records missing from `read_committed` reached the
/// broker at all (and in which sink subtask, epoch and session) or were never produced.
pub fn diagnose(broker: &TestBroker, topic: &str, committed: &[ReadRecord], expected: &[Posted]) -> String {
    let got = decode(committed);
    let missing: Vec<&Posted> = expected.iter().filter(|e| !got.contains(e)).collect();
    let all = broker.read_uncommitted(topic).unwrap_or_default();
    let mut found: BTreeMap<(String, CheckpointId, String), usize> = BTreeMap::new();
    let mut absent = 0;
    for m in &missing {
        match all.iter().find(|r| decode(std::slice::from_ref(r)).first() == Some(*m)) {
            Some(r) => *found.entry(provenance(r)).or_default() += 1,
            None => absent += 1,
        }
    }
    let mut copies: BTreeMap<(String, CheckpointId, String), usize> = BTreeMap::new();
    for r in &all {
        *copies.entry(provenance(r)).or_default() += 1;
    }
    let mut visible: BTreeMap<(String, CheckpointId, String), usize> = BTreeMap::new();
    for r in committed {
        *visible.entry(provenance(r)).or_default() += 1;
    }
    format!(
        "{} missing: {absent} never produced, the rest produced by {found:?}; every copy on the broker {copies:?}; visible to read_committed {visible:?}",
        missing.len()
    )
}
