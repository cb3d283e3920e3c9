//! The Kafka sink against a real Kafka-protocol broker (tansu on loopback, or the cluster in
//! `WEIR_KAFKA_BROKERS`): exactly-once output in every crash window, a fenced zombie,
//! at-least-once mode, and configuration errors.
//!
//! Output is read back with a `read_committed` consumer and compared with a sequential model.
//! tansu shows records of aborted transactions to `read_committed` consumers; the tests whose
//! window aborts data (a crash inside the transaction, a zombie's open transaction) assert the
//! exact output directly on a broker that filters them, and on tansu assert what the protocol
//! did instead: the aborted copy is there, the epoch was produced again in full by a later
//! session, and without the aborted copies the output is exact.

use crate::kafka;

use kafka::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;
use weir::connectors::kafka::sink::{committed_epoch, FAIL_AFTER_TXN_COMMIT, FAIL_BEFORE_TXN_COMMIT, FAIL_MID_EPOCH};
use weir::connectors::kafka::testing::TestBroker;
use weir::connectors::kafka::{Json, KafkaSink};
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::prelude::*;

const EVENTS: u64 = 3_000;

struct Outcome {
    report: JobReport,
    raw: Vec<weir::connectors::kafka::testing::ReadRecord>,
}

/// Runs the balance pipeline into a fresh topic with `failures` armed.
fn run_exactly_once(
    broker: &TestBroker,
    seed: u64,
    parallelism: usize,
    failures: &[(&str, u64, FailAction)],
) -> (Outcome, String, String) {
    let topic = broker.unique_topic("eo-out");
    broker.create_topic(&topic, 3).unwrap();
    let prefix = format!("{topic}-txn");
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    for (p, n, a) in failures {
        points.arm(p, *n, *a);
    }
    let sink = posted_sink(broker, &topic, &prefix);
    let report = balance_pipeline("kafka-eo", dir.path(), seed, EVENTS, parallelism, sink)
        .fail_points(points.clone())
        .run()
        .unwrap_or_else(|e| panic!("failures {failures:?}: job failed: {e}"));
    let unfired: Vec<_> = failures.iter().filter(|(p, _, _)| points.is_armed(p)).collect();
    assert!(
        unfired.is_empty(),
        "p{parallelism}: fail points {unfired:?} never triggered"
    );
    let raw = broker.read_committed(&topic).unwrap();
    (Outcome { report, raw }, topic, prefix)
}

#[test]
fn exactly_once_in_every_window_that_aborts_no_data() {
    let broker = TestBroker::start().unwrap();
    type Plan = Vec<(&'static str, u64, FailAction)>;
    let windows: Vec<(&str, Plan)> = vec![
        ("processing", vec![(fail::PROCESS_RECORD, 5, FailAction::Panic)]),
        (
            "before the checkpoint completes (snapshot)",
            vec![(fail::SNAPSHOT_SYNC, 2, FailAction::Panic)],
        ),
        ("after pre-commit", vec![(fail::AFTER_PRE_COMMIT, 2, FailAction::Panic)]),
        (
            "checkpoint complete, before any commit",
            vec![(fail::AFTER_METADATA, 2, FailAction::Panic)],
        ),
        (
            "in the sink's commit, before the transaction",
            vec![(fail::DURING_COMMIT, 2, FailAction::Error)],
        ),
        (
            "transaction committed, before the sink noticed",
            vec![(FAIL_AFTER_TXN_COMMIT, 2, FailAction::Panic)],
        ),
        (
            "during the restore after a failure",
            vec![
                (fail::AFTER_METADATA, 2, FailAction::Error),
                (fail::DURING_RESTORE, 2, FailAction::Error),
            ],
        ),
    ];
    let expected = model(1, EVENTS);
    for (what, failures) in windows {
        for parallelism in [1, 2] {
            let (o, topic, prefix) = run_exactly_once(&broker, 1, parallelism, &failures);
            let ctx = format!("{what}, p{parallelism}, restarts {}", o.report.restarts);
            assert!(o.report.restarts >= 1, "{ctx}: the failure must have happened");
            let got = decode(&o.raw);
            assert_eq!(got.len(), expected.len(), "{ctx}: record count");
            assert!(got == expected, "{ctx}: committed output differs from the model");
            // Every subtask's marker names the last epoch it produced.
            for s in 0..parallelism {
                let last = o
                    .raw
                    .iter()
                    .map(provenance)
                    .filter(|(sub, _, _)| *sub == s.to_string())
                    .map(|(_, e, _)| e)
                    .max()
                    .unwrap();
                let marker = committed_epoch(broker.brokers(), &topic, &format!("{prefix}-{s}")).unwrap();
                assert_eq!(marker, last, "{ctx}: marker of subtask {s}");
            }
        }
    }
}

#[test]
fn a_crash_inside_the_transaction_aborts_it_and_the_epoch_is_produced_again_in_full() {
    let broker = TestBroker::start().unwrap();
    let expected = model(2, EVENTS);
    for point in [FAIL_MID_EPOCH, FAIL_BEFORE_TXN_COMMIT] {
        for action in [FailAction::Panic, FailAction::Error] {
            let (o, topic, prefix) = run_exactly_once(&broker, 2, 2, &[(point, 2, action)]);
            let ctx = format!("{point} {action:?}, restarts {}", o.report.restarts);
            assert!(o.report.restarts >= 1, "{ctx}: the failure must have happened");
            // End to end, where the broker filters aborted transactions.
            if broker.filters_aborted() {
                assert_same(&decode(&o.raw), &expected, &ctx);
            }
            // The protocol, on any broker. Everything ever written, aborted or not: the
            // crashed transaction's records reached the broker, and a later session produced
            // the same epoch again in full.
            let all = broker.read_uncommitted(&topic).unwrap();
            let (redone, aborted) = split_aborted_copies(&all);
            assert!(
                !aborted.is_empty(),
                "{ctx}: the crashed transaction left no records on the broker"
            );
            for r in &aborted {
                let (s, e, session) = provenance(r);
                let redo: Vec<_> = redone
                    .iter()
                    .filter(|c| {
                        let (cs, ce, _) = provenance(c);
                        cs == s && ce == e
                    })
                    .collect();
                assert!(
                    !redo.is_empty() && redo.iter().all(|c| provenance(c).2 > session),
                    "{ctx}: epoch {e} redone later"
                );
                let in_aborted = aborted.iter().filter(|a| a.payload == r.payload).count();
                let in_redo = redo.iter().filter(|c| c.payload == r.payload).count();
                assert_eq!(in_aborted, in_redo, "{ctx}: epoch {e} produced again in full");
            }
            // What read_committed shows is the redone copies, plus (on a broker that does not
            // filter aborted transactions) some aborted ones: never anything else.
            let (committed, _) = split_aborted_copies(&o.raw);
            assert_same(&decode(&committed), &expected, &ctx);
            assert_same(&decode(&redone), &expected, &ctx);
            // Each subtask's marker was committed once per epoch, ending at its last epoch.
            for s in 0..2 {
                let last = redone
                    .iter()
                    .map(provenance)
                    .filter(|(sub, _, _)| *sub == s.to_string())
                    .map(|(_, e, _)| e)
                    .max()
                    .unwrap();
                let marker = committed_epoch(broker.brokers(), &topic, &format!("{prefix}-{s}")).unwrap();
                assert_eq!(marker, last, "{ctx}: marker of subtask {s}");
            }
        }
    }
}

fn zombie(broker: &TestBroker, txn_id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("transactional.id", txn_id)
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

#[test]
fn a_zombie_producer_of_an_earlier_attempt_is_fenced() {
    let broker = TestBroker::start().unwrap();
    let expected = model(3, EVENTS);
    for with_open_data in [false, true] {
        let topic = broker.unique_topic("zombie-out");
        broker.create_topic(&topic, 3).unwrap();
        let prefix = format!("{topic}-txn");
        // A producer of an earlier attempt, still alive, inside a transaction.
        let z = zombie(&broker, &format!("{prefix}-0"));
        z.begin_transaction().unwrap();
        let junk = serde_json::to_vec(&Posted {
            account: 999_999,
            id: 0,
            balance: 0,
        })
        .unwrap();
        if with_open_data {
            z.send(BaseRecord::<(), Vec<u8>>::to(&topic).payload(&junk)).unwrap();
            z.flush(Duration::from_secs(30)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        balance_pipeline(
            "kafka-zombie",
            dir.path(),
            3,
            EVENTS,
            2,
            posted_sink(&broker, &topic, &prefix),
        )
        .run()
        .unwrap();
        // The zombie wakes up and tries to finish its transaction.
        let _ = z.send(BaseRecord::<(), Vec<u8>>::to(&topic).payload(&junk));
        let _ = z.flush(Duration::from_secs(10));
        let committed = z.commit_transaction(Duration::from_secs(30));
        assert!(committed.is_err(), "a fenced zombie must not commit");
        let raw = broker.read_committed(&topic).unwrap();
        let zombie_records = raw.iter().filter(|r| r.header(EPOCH_HEADER_NAME).is_none()).count();
        let ours: Vec<_> = raw
            .iter()
            .filter(|r| r.header(EPOCH_HEADER_NAME).is_some())
            .cloned()
            .collect();
        assert!(
            decode(&ours) == expected,
            "open data {with_open_data}: output differs from the model ({} records of {}, {} zombie)",
            ours.len(),
            expected.len(),
            zombie_records
        );
        if broker.filters_aborted() || !with_open_data {
            assert_eq!(
                zombie_records, 0,
                "open data {with_open_data}: the zombie's records are visible"
            );
        } else {
            // tansu shows the aborted transaction's record; it was aborted (commit failed above).
            assert_eq!(zombie_records, 1);
        }
    }
}

const EPOCH_HEADER_NAME: &str = weir::connectors::kafka::sink::EPOCH_HEADER;

#[test]
fn a_start_at_lower_parallelism_aborts_and_fences_the_transactions_of_the_higher_one() {
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("rescale-out");
    broker.create_topic(&topic, 3).unwrap();
    let prefix = format!("{topic}-txn");
    // Run 1 at parallelism 3.
    let dir = tempfile::tempdir().unwrap();
    balance_pipeline(
        "kafka-rescale",
        dir.path(),
        8,
        300,
        3,
        posted_sink(&broker, &topic, &prefix),
    )
    .run()
    .unwrap();
    // Its sink subtask 2 is still alive (a zombie) inside a transaction with data in partition
    // 0, which read_committed consumers cannot pass until the transaction ends.
    let z = zombie(&broker, &format!("{prefix}-2"));
    z.begin_transaction().unwrap();
    let junk = serde_json::to_vec(&Posted {
        account: 999_999,
        id: 0,
        balance: 0,
    })
    .unwrap();
    z.send(BaseRecord::<(), Vec<u8>>::to(&topic).partition(0).payload(&junk))
        .unwrap();
    z.flush(Duration::from_secs(30)).unwrap();
    // Run 2: a fresh start at parallelism 2 (subtask 0 writes partition 0 behind the zombie),
    // explicitly fresh: the markers of run 1 are evidence of an earlier run.
    let dir = tempfile::tempdir().unwrap();
    balance_pipeline(
        "kafka-rescale",
        dir.path(),
        9,
        300,
        2,
        posted_sink(&broker, &topic, &prefix),
    )
    .restore_mode(RestoreMode::Fresh)
    .run()
    .unwrap();
    let raw = broker.read_committed(&topic).unwrap();
    let ours: Vec<_> = raw
        .iter()
        .filter(|r| r.header(EPOCH_HEADER_NAME).is_some())
        .cloned()
        .collect();
    let mut expected = model(8, 300);
    expected.extend(model(9, 300));
    expected.sort();
    assert_same(
        &decode(&ours),
        &expected,
        "read_committed after the start at parallelism 2 (a transaction of subtask 2 left open?)",
    );
    // The zombie of subtask 2 was fenced: it can no longer commit.
    let _ = z.send(BaseRecord::<(), Vec<u8>>::to(&topic).partition(0).payload(&junk));
    let _ = z.flush(Duration::from_secs(10));
    assert!(
        z.commit_transaction(Duration::from_secs(30)).is_err(),
        "the zombie of subtask 2 must be fenced"
    );
}

/// A job at parallelism 3 cancelled after checkpoints and restored at 2: sink subtask 0 takes
/// over subtask 2, whose restored epochs are produced under subtask 2's transactional id and
/// checked against its marker (skipped if it committed them before the cancel), so the output
/// holds every record once.
#[test]
fn a_restore_at_lower_parallelism_produces_the_epochs_of_removed_subtasks_once() {
    crate::common::trace_if_asked();
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("rescale-eo");
    broker.create_topic(&topic, 3).unwrap();
    let prefix = format!("{topic}-txn");
    let dir = tempfile::tempdir().unwrap();
    let job = |parallelism: usize, rate: f64| {
        let p = checkpointed("kafka-rescale-eo", dir.path(), parallelism);
        p.source(
            "payments",
            GeneratorSource::new(|i| payment(4, i))
                .bounded(EVENTS)
                .splits(SPLITS as usize)
                .rate_per_second(rate),
        )
        .key_by("by-account", |p: &(u64, u64, i64)| p.0)
        .process("balance", Balance)
        .sink("to-kafka", posted_sink(&broker, &topic, &prefix));
        p
    };
    let handle = job(3, 500.0).start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = handle.progress();
        if p.source_records >= EVENTS / 3 && p.last_checkpoint.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.cancel();
    assert!(handle.join().unwrap().cancelled, "cancelled before the input ended");
    let report = job(1, 100_000.0).run().unwrap();
    assert!(report.restored_from.is_some());
    let raw = broker.read_committed(&topic).unwrap();
    // On a broker that shows aborted copies (a transaction the cancel cut short), only the
    // latest session's copy of each epoch committed.
    let (committed, _) = split_aborted_copies(&raw);
    assert_same(&decode(&committed), &model(4, EVENTS), "3 -> 2");
    if broker.filters_aborted() {
        assert_same(&decode(&raw), &model(4, EVENTS), "3 -> 2, read_committed");
    }
    // Subtask 2's marker names the last epoch produced under its id.
    let last = committed
        .iter()
        .map(provenance)
        .filter(|(sub, _, _)| sub == "2")
        .map(|(_, e, _)| e)
        .max()
        .expect("subtask 2 produced epochs");
    assert_eq!(
        committed_epoch(broker.brokers(), &topic, &format!("{prefix}-2")).unwrap(),
        last
    );
}

/// The exactly-once sink restored through every ordered pair of parallelisms among 1 to 4: the
/// job is cancelled after a checkpoint at each parallelism of 1 -> 2 -> 1 -> 3 -> 1 -> 4 -> 2 ->
/// 3 -> 2 -> 4 -> 3 -> 4 and finishes at 1. Each restore commits the restored epochs of every old subtask (under the old
/// subtask's transactional id when it is gone), so the output holds every record once.
#[test]
fn the_sink_is_restored_through_every_parallelism_transition() {
    crate::common::trace_if_asked();
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("rescale-seq");
    // One partition per sink subtask at the highest parallelism: the test broker (tansu 0.6.0)
    // can lose appends, or leave a partition's last stable offset behind, when two producers
    // write one partition at the same moment (`connectors/tests/broker_probe.rs`); with 3
    // partitions subtasks 0 and 3 of 4 shared one, and so did subtask 0 of 2 and the fencing
    // of id 3 at the final start.
    broker.create_topic(&topic, 4).unwrap();
    let prefix = format!("{topic}-txn");
    let dir = tempfile::tempdir().unwrap();
    let job = |parallelism: usize, rate: f64| {
        let p = checkpointed("kafka-rescale-seq", dir.path(), parallelism);
        p.source(
            "payments",
            GeneratorSource::new(|i| payment(5, i))
                .bounded(EVENTS)
                .splits(SPLITS as usize)
                .rate_per_second(rate),
        )
        .key_by("by-account", |p: &(u64, u64, i64)| p.0)
        .process("balance", Balance)
        .sink("to-kafka", posted_sink(&broker, &topic, &prefix));
        p
    };
    let mut after = 0;
    // Every ordered pair among 1-4: 1->2->1->3->1->4->2->3->2->4->3->4, and the final run
    // is 4 -> 1.
    for parallelism in [1, 2, 1, 3, 1, 4, 2, 3, 2, 4, 3, 4] {
        let handle = job(parallelism, 200.0).start().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while handle
            .progress()
            .last_checkpoint
            .is_none_or(|(id, _)| id.get() <= after)
        {
            assert!(std::time::Instant::now() < deadline, "p{parallelism}: no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.cancel();
        let report = handle.join().unwrap();
        assert!(report.cancelled, "p{parallelism}: cancelled before the input ended");
        after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
    }
    let report = job(2, 100_000.0).run().unwrap();
    assert!(report.restored_from.is_some());
    let raw = broker.read_committed(&topic).unwrap();
    let (committed, _) = split_aborted_copies(&raw);
    let expected = model(5, EVENTS);
    if decode(&committed) != expected {
        eprintln!("{}", diagnose(&broker, &topic, &committed, &expected));
    }
    assert_same(
        &decode(&committed),
        &expected,
        "1 -> 2 -> 1 -> 3 -> 1 -> 4 -> 2 -> 3 -> 2 -> 4 -> 3 -> 4 -> 1",
    );
    if broker.filters_aborted() {
        assert_same(&decode(&raw), &model(5, EVENTS), "read_committed");
    }
}

#[test]
fn a_fresh_start_over_the_markers_of_an_earlier_run_needs_restore_mode_fresh() {
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("fresh-out");
    broker.create_topic(&topic, 2).unwrap();
    let prefix = format!("{topic}-txn");
    let first = tempfile::tempdir().unwrap();
    balance_pipeline(
        "kafka-fresh",
        first.path(),
        4,
        1_000,
        1,
        posted_sink(&broker, &topic, &prefix),
    )
    .run()
    .unwrap();
    let marker = committed_epoch(broker.brokers(), &topic, &format!("{prefix}-0")).unwrap();
    assert!(marker > CheckpointId::new(0));
    // Empty checkpoint storage (an unmounted volume, a wrong path) while the sink's marker
    // shows committed epochs: the job has run before; starting from scratch would produce
    // everything again, so it is refused and the marker is left as it was.
    let empty = tempfile::tempdir().unwrap();
    let err = balance_pipeline(
        "kafka-fresh",
        empty.path(),
        4,
        1_000,
        1,
        posted_sink(&broker, &topic, &prefix),
    )
    .restart_strategy(RestartStrategy::None)
    .run()
    .unwrap_err();
    let refused = Refused {
        broker: &broker,
        topic: &topic,
        prefix: &prefix,
        marker,
    };
    refused.check(&err, Reason::EarlierRunFound, "RestoreMode::Fresh", (4, 1_000));
    // The explicit fresh start numbers its checkpoints from 1 again, below the first run's
    // markers, and must still be visible in full.
    let fresh = tempfile::tempdir().unwrap();
    balance_pipeline(
        "kafka-fresh",
        fresh.path(),
        4,
        1_000,
        1,
        posted_sink(&broker, &topic, &prefix),
    )
    .restore_mode(RestoreMode::Fresh)
    .run()
    .unwrap();
    let mut twice = model(4, 1_000);
    twice.extend(model(4, 1_000));
    twice.sort();
    assert!(decode(&broker.read_committed(&topic).unwrap()) == twice);
}

/// The newest `_metadata` is lost, so the newest complete checkpoint looks incomplete; the
/// sink's marker shows it committed that epoch: restoring the older checkpoint would produce
/// the epochs after it again, so the start is refused and the marker left alone.
#[test]
fn a_marker_above_the_restored_checkpoint_stops_the_start() {
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("ahead-out");
    broker.create_topic(&topic, 2).unwrap();
    let prefix = format!("{topic}-txn");
    let dir = tempfile::tempdir().unwrap();
    // One second of input at the generator's rate: several checkpoints complete even when the
    // sink takes long to start (with less input, the final checkpoint can be the only one).
    balance_pipeline(
        "kafka-ahead",
        dir.path(),
        5,
        4_000,
        1,
        posted_sink(&broker, &topic, &prefix),
    )
    .run()
    .unwrap();
    let marker = committed_epoch(broker.brokers(), &topic, &format!("{prefix}-0")).unwrap();
    let chk = dir.path().join("checkpoints");
    let mut complete: Vec<CheckpointId> = std::fs::read_dir(&chk)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    complete.sort();
    assert!(
        complete.iter().any(|&id| id < marker),
        "an older checkpoint: {complete:?}, marker {marker}"
    );
    for id in complete.iter().filter(|&&id| id >= marker) {
        std::fs::remove_file(chk.join(format!("chk-{id}")).join("_metadata")).unwrap();
    }
    let err = balance_pipeline(
        "kafka-ahead",
        dir.path(),
        5,
        4_000,
        1,
        posted_sink(&broker, &topic, &prefix),
    )
    .restart_strategy(RestartStrategy::None)
    .run()
    .unwrap_err();
    let refused = Refused {
        broker: &broker,
        topic: &topic,
        prefix: &prefix,
        marker,
    };
    refused.check(
        &err,
        Reason::CommittedOutputAhead,
        "fallback_to_older_checkpoint_reproducing_output",
        (5, 4_000),
    );
}

/// A start refused because of the sink's marker: what must hold afterwards.
struct Refused<'a> {
    broker: &'a TestBroker,
    topic: &'a str,
    prefix: &'a str,
    /// The marker the first run left.
    marker: CheckpointId,
}

impl Refused<'_> {
    /// The error is a `Config` error for `reason` that names the marker, its checkpoint and
    /// `how_to_proceed`; the marker is unchanged and the topic holds the first run's output
    /// (the model of `seed` and `events`) exactly once.
    fn check(&self, err: &Error, reason: Reason, how_to_proceed: &str, (seed, events): (u64, u64)) {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert_eq!(err.reason(), Some(reason), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("marker") && msg.contains(&format!("checkpoint {}", self.marker)),
            "{msg}"
        );
        assert!(msg.contains(how_to_proceed), "{msg}");
        assert_eq!(
            committed_epoch(self.broker.brokers(), self.topic, &format!("{}-0", self.prefix)).unwrap(),
            self.marker
        );
        let mut once = model(seed, events);
        once.sort();
        assert!(
            decode(&self.broker.read_committed(self.topic).unwrap()) == once,
            "nothing produced twice"
        );
    }
}

#[test]
fn at_least_once_mode_loses_nothing_under_failures() {
    let broker = TestBroker::start().unwrap();
    let expected = model(5, EVENTS);
    for failures in [vec![], vec![(fail::AFTER_METADATA, 2, FailAction::Panic)]] {
        let topic = broker.unique_topic("alo-out");
        broker.create_topic(&topic, 3).unwrap();
        let points = FailPoints::new();
        for (p, n, a) in &failures {
            points.arm(p, *n, *a);
        }
        let dir = tempfile::tempdir().unwrap();
        let sink = KafkaSink::at_least_once(broker.brokers(), &topic, Json::<Posted>::new()).partition_per_subtask();
        let report = balance_pipeline("kafka-alo", dir.path(), 5, EVENTS, 2, sink)
            .fail_points(points)
            .run()
            .unwrap();
        let got = decode(&broker.read_committed(&topic).unwrap());
        let mut distinct = got.clone();
        distinct.dedup();
        assert!(
            distinct == expected,
            "failures {failures:?}: a record is missing ({} distinct of {} read, {} expected)",
            distinct.len(),
            got.len(),
            expected.len()
        );
        if failures.is_empty() {
            assert!(got == expected, "no failure, no duplicate");
        } else {
            assert!(report.restarts >= 1);
        }
    }
}

#[test]
fn keys_partitions_and_headers_are_carried() {
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("shape-out");
    broker.create_topic(&topic, 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::exactly_once(broker.brokers(), &topic, Json::<Posted>::new())
        .transactional_id_prefix(format!("{topic}-txn"))
        .key(|p: &Posted| Some(p.account.to_be_bytes().to_vec()))
        .partitioner(|p: &Posted, n| (p.account % n as u64) as i32)
        .headers(|p: &Posted| vec![("account".to_string(), p.account.to_string().into_bytes())]);
    // One subtask: every partition has one producer (see `posted_sink`).
    balance_pipeline("kafka-shape", dir.path(), 6, 500, 1, sink)
        .run()
        .unwrap();
    let raw = broker.read_committed(&topic).unwrap();
    assert_eq!(raw.len(), 500);
    for r in &raw {
        let p: Posted = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        assert_eq!(r.partition as u64, p.account % 4, "partitioner");
        assert_eq!(r.key.as_deref(), Some(&p.account.to_be_bytes()[..]), "key");
        assert_eq!(r.header("account"), Some(p.account.to_string()), "user header");
    }
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let broker = TestBroker::start().unwrap();
    let topic = broker.unique_topic("cfg-out");
    broker.create_topic(&topic, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |sink: KafkaSink<Posted>| {
        balance_pipeline("kafka-cfg", dir.path(), 7, 100, 1, sink)
            .checkpoint_interval(Duration::from_secs(1))
            .restart_strategy(RestartStrategy::None)
            .run()
            .unwrap_err()
    };
    let e = run(posted_sink(&broker, &topic, "cfg").transaction_timeout(Duration::from_secs(10)));
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("transaction timeout"), "{e}");
    let e = run(posted_sink(&broker, "no-such-topic-anywhere", "cfg"));
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = run(KafkaSink::exactly_once("", &topic, Json::<Posted>::new()));
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}
