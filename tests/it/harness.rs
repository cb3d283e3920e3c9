//! The test harness (`weir::engine::testing::harness`): a keyed function's timers, state and
//! side outputs fed by hand, snapshot and restore (after a "crash" and into another
//! parallelism), clear errors on misuse, stateless and window steps, and one comparison with
//! the same function in a pipeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir::engine::keyed::TimeDomain;
use weir::engine::state::key_group::subtask_for_key_group;
use weir::engine::state::key_group_for;
use weir::engine::testing::harness::{HarnessBuilder, HarnessSnapshot, KeyedHarness, OneInputHarness, RegisteredTimer};
use weir::prelude::*;

/// Debits below `-LIMIT` are sent for review.
const LIMIT: i64 = 100;
/// A movement is held this long (event time) before it is released.
const HOLD_MS: i64 = 1_000;
/// With idle alerts: an account without movement this long (processing time) gets one.
const IDLE_MS: u64 = 60_000;

const REVIEW: OutputTag<(u64, i64)> = OutputTag::new("review");

/// What [`Holds`] emits: `(account, what, amount)`.
type Event = (u64, String, i64);

/// Per account: the balance (value state `balance`), each movement held by its timestamp
/// until `HOLD_MS` of event time passed (map state `holds`, released by an event-time timer),
/// and a journal of movements (list state `journal`). Emits the balance after each movement,
/// each release, and large debits to `REVIEW`; with `idle_alerts`, a processing-time timer
/// emits an alert for an account without movement for `IDLE_MS`.
#[derive(Clone)]
struct Holds {
    idle_alerts: bool,
}

impl KeyedProcess<u64, i64> for Holds {
    type Out = Event;

    fn process(&mut self, amount: i64, ctx: &mut KeyedContext<'_, u64, Event>) -> Result<()> {
        let account = *ctx.key();
        let ts = ctx
            .timestamp()
            .ok_or_else(|| Error::data("movement without timestamp"))?;
        let mut balance = ctx.value_state::<i64>("balance");
        let b = balance.get()?.unwrap_or(0) + amount;
        balance.set(&b)?;
        ctx.list_state::<i64>("journal").add(&amount)?;
        let mut holds = ctx.map_state::<i64, i64>("holds");
        let held = holds.get(&ts)?.unwrap_or(0);
        holds.put(&ts, &(held + amount))?;
        ctx.register_event_time_timer(ts + HOLD_MS)?;
        if amount < -LIMIT {
            ctx.output(&REVIEW, (account, amount))?;
        }
        if self.idle_alerts {
            let now = ctx.current_processing_time() as i64;
            let mut due = ctx.value_state::<i64>("idle-timer");
            if let Some(old) = due.get()? {
                ctx.delete_processing_time_timer(old)?;
            }
            ctx.value_state::<i64>("idle-timer").set(&(now + IDLE_MS as i64))?;
            ctx.register_processing_time_timer(now + IDLE_MS as i64)?;
        }
        ctx.emit((account, "balance".into(), b));
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, Event>) -> Result<()> {
        let account = *ctx.key();
        match timer.domain {
            TimeDomain::EventTime => {
                let at = timer.time - HOLD_MS;
                let mut holds = ctx.map_state::<i64, i64>("holds");
                if let Some(amount) = holds.get(&at)? {
                    holds.remove(&at)?;
                    ctx.emit((account, "released".into(), amount));
                }
            }
            TimeDomain::ProcessingTime => {
                ctx.value_state::<i64>("idle-timer").clear()?;
                let b = ctx.value_state::<i64>("balance").get()?.unwrap_or(0);
                ctx.emit((account, "idle".into(), b));
            }
        }
        Ok(())
    }
}

/// The movements of the tests: `(account, amount, timestamp)`, timestamps ascending.
fn movements(n: i64) -> Vec<(u64, i64, Timestamp)> {
    (0..n)
        .map(|i| {
            let amount = if i % 7 == 3 { -150 - i } else { (i % 11) * 10 - 40 };
            ((i as u64 * 7) % 10, amount, i * 100)
        })
        .collect()
}

/// Feeds `records` to `h`, with a watermark `timestamp - 500` after each (bounded lateness).
fn feed(h: &mut KeyedHarness<u64, i64, Holds>, records: &[(u64, i64, Timestamp)]) {
    for &(account, amount, ts) in records {
        h.process_element(&account, amount, ts).unwrap();
        h.process_watermark((ts - 500).max(h.current_watermark())).unwrap();
    }
}

fn values<T: Clone>(records: &[Record<T>]) -> Vec<T> {
    records.iter().map(|r| r.value.clone()).collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn timers_state_and_side_outputs_of_a_keyed_function() {
    let mut h = HarnessBuilder::new()
        .step("holds")
        .processing_time(1_000)
        .keyed(Holds { idle_alerts: true })
        .unwrap();
    h.process_element(&1, 50, 10).unwrap();
    h.process_element(&1, -200, 20).unwrap();
    h.process_element(&2, 30, 20).unwrap();

    // Main output with the records' timestamps; the large debit went to the side output.
    let out = h.take_output();
    assert_eq!(
        out,
        vec![
            Record::with_timestamp((1, "balance".to_string(), 50), 10),
            Record::with_timestamp((1, "balance".to_string(), -150), 20),
            Record::with_timestamp((2, "balance".to_string(), 30), 20),
        ]
    );
    assert_eq!(
        h.side_output(&REVIEW).unwrap(),
        vec![Record::with_timestamp((1, -200), 20)]
    );

    // State as the function reads it.
    assert_eq!(h.value_state::<i64>(&1, "balance").unwrap(), Some(-150));
    assert_eq!(h.value_state::<i64>(&3, "balance").unwrap(), None);
    assert_eq!(
        h.map_state::<i64, i64>(&1, "holds").unwrap(),
        vec![(10, 50), (20, -200)]
    );
    assert_eq!(h.list_state::<i64>(&1, "journal").unwrap(), vec![50, -200]);
    assert_eq!(h.state_names(), vec!["balance", "holds", "idle-timer", "journal"]);

    // Timers: one event-time timer per movement; one processing-time timer per account,
    // re-armed by each movement at processing time 1000 + IDLE_MS.
    let idle_at = 1_000 + IDLE_MS as i64;
    assert_eq!(
        h.registered_timers().unwrap(),
        vec![
            RegisteredTimer {
                key: 1,
                time: 1_010,
                domain: TimeDomain::EventTime
            },
            RegisteredTimer {
                key: 1,
                time: 1_020,
                domain: TimeDomain::EventTime
            },
            RegisteredTimer {
                key: 2,
                time: 1_020,
                domain: TimeDomain::EventTime
            },
            RegisteredTimer {
                key: 1,
                time: idle_at,
                domain: TimeDomain::ProcessingTime
            },
            RegisteredTimer {
                key: 2,
                time: idle_at,
                domain: TimeDomain::ProcessingTime
            },
        ]
    );

    // A watermark fires the event-time timers due at it, earliest first, at their time, and
    // is forwarded after them.
    h.process_watermark(1_010).unwrap();
    assert_eq!(
        h.take_output(),
        vec![Record::with_timestamp((1, "released".to_string(), 50), 1_010)]
    );
    h.process_watermark(1_020).unwrap();
    assert_eq!(
        sorted(values(&h.take_output())),
        vec![(1, "released".to_string(), -200), (2, "released".to_string(), 30)]
    );
    assert_eq!(h.emitted_watermarks(), &[1_010, 1_020]);
    assert_eq!(h.map_state::<i64, i64>(&1, "holds").unwrap(), vec![]);
    // The same watermark again changes nothing.
    h.process_watermark(1_020).unwrap();
    assert_eq!(h.emitted_watermarks(), &[1_010, 1_020]);

    // Processing time fires the idle timers due at it, and only those.
    h.set_processing_time(idle_at as u64 - 1).unwrap();
    assert!(h.output().is_empty());
    h.set_processing_time(idle_at as u64).unwrap();
    assert_eq!(
        sorted(values(&h.take_output())),
        vec![(1, "idle".to_string(), -150), (2, "idle".to_string(), 30)]
    );
    assert_eq!(h.num_timers().unwrap(), 0);
    assert_eq!(
        h.value_state::<i64>(&1, "idle-timer").unwrap(),
        None,
        "cleared by the timer"
    );
}

#[test]
fn misuse_is_a_config_error_naming_the_step() {
    let mut h = HarnessBuilder::new()
        .step("holds")
        .keyed(Holds { idle_alerts: false })
        .unwrap();
    h.process_element(&1, 50, 10).unwrap();
    h.process_watermark(100).unwrap();
    h.set_processing_time(5_000).unwrap();
    let config = |e: Error, says: &str| {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(
            e.to_string().contains("\"holds\"") && e.to_string().contains(says),
            "{e}"
        );
    };
    config(
        h.process_watermark(99).unwrap_err(),
        "watermark 99 is behind the step's watermark 100",
    );
    config(
        h.set_processing_time(4_999).unwrap_err(),
        "processing time 4999 is before the current 5000",
    );
    config(
        h.value_state::<i64>(&1, "balanse").unwrap_err(),
        "no state named \"balanse\"",
    );
    config(
        h.value_state::<i64>(&1, "holds").unwrap_err(),
        "holds map or list entries",
    );
    // `balance` holds an i64: read as a string it does not decode.
    let e = h.value_state::<String>(&1, "balance").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("state \"balance\""), "{e}");

    // A subtask refuses keys a pipeline would route elsewhere.
    let mut half = HarnessBuilder::new()
        .step("holds")
        .subtask(0, 2)
        .keyed(Holds { idle_alerts: false })
        .unwrap();
    let foreign = (0u64..).find(|k| key_group_for(k, 128).unwrap() >= 64).unwrap();
    config(
        half.process_element(&foreign, 1, 1).unwrap_err(),
        "which subtask 0 of 2 does not own",
    );
    config(
        HarnessBuilder::new()
            .step("holds")
            .subtask(2, 2)
            .keyed(Holds { idle_alerts: false })
            .err()
            .unwrap(),
        "subtask 2 of parallelism 2",
    );

    // Snapshots that do not fit the restore.
    let snap = half.snapshot().unwrap();
    config(
        HarnessBuilder::new()
            .step("holds")
            .max_parallelism(64)
            .restore_from(&snap)
            .keyed(Holds { idle_alerts: false })
            .err()
            .unwrap(),
        "max parallelism 128, the harness 64",
    );
    config(
        HarnessBuilder::new()
            .step("holds")
            .restore_from(&snap)
            .keyed(Holds { idle_alerts: false })
            .err()
            .unwrap(),
        "takes key groups of subtask 1 of 2, whose snapshot was not given",
    );
    config(
        HarnessBuilder::new()
            .step("holds")
            .subtask(0, 2)
            .rocksdb()
            .restore_from(&snap)
            .keyed(Holds { idle_alerts: false })
            .err()
            .unwrap(),
        "written by the memory state backend, the harness uses rocksdb",
    );

    h.close();
    config(h.process_element(&1, 1, 200).unwrap_err(), "is closed");
}

/// Runs all of `input` through one harness, then ends the input: the uninterrupted outcome.
fn uninterrupted(input: &[(u64, i64, Timestamp)]) -> Vec<Event> {
    let mut h = KeyedHarness::new(Holds { idle_alerts: false }).unwrap();
    feed(&mut h, input);
    h.finish().unwrap();
    sorted(values(h.output()))
}

#[test]
fn a_harness_restored_after_a_crash_continues_exactly_where_its_snapshot_was() {
    let input = movements(300);
    let want = uninterrupted(&input);
    for rocksdb in [false, true] {
        let settings = if rocksdb {
            HarnessBuilder::new().rocksdb()
        } else {
            HarnessBuilder::new()
        };
        let mut h = settings.keyed(Holds { idle_alerts: false }).unwrap();
        feed(&mut h, &input[..120]);
        let snapshot = h.snapshot().unwrap();
        let committed = h.take_output();
        // Processed after the snapshot, then lost in the crash: neither its output nor its
        // state survives.
        feed(&mut h, &input[120..170]);
        drop(h);

        let mut restored = KeyedHarness::restore(Holds { idle_alerts: false }, &snapshot).unwrap();
        assert_eq!(restored.current_watermark(), snapshot.watermark());
        assert_eq!(restored.current_watermark(), input[119].2 - 500);
        // The sources replay from the snapshot's position.
        feed(&mut restored, &input[120..]);
        restored.finish().unwrap();
        let got = sorted(
            values(&committed)
                .into_iter()
                .chain(values(restored.output()))
                .collect(),
        );
        assert_eq!(got, want, "rocksdb: {rocksdb}");
    }
}

#[test]
fn snapshots_of_two_subtasks_restore_into_three_by_key_group() {
    let input = movements(400);
    let want = uninterrupted(&input);
    let owner = |account: u64, p: usize| subtask_for_key_group(key_group_for(&account, 128).unwrap(), 128, p);
    let (before, after) = input.split_at(250);

    // Two subtasks, each fed its keys' movements (as the key_by exchange routes them).
    let mut committed = Vec::new();
    let mut snapshots: Vec<HarnessSnapshot> = Vec::new();
    for s in 0..2 {
        let mut h = HarnessBuilder::new()
            .subtask(s, 2)
            .rocksdb()
            .keyed(Holds { idle_alerts: false })
            .unwrap();
        let mine: Vec<_> = before.iter().copied().filter(|m| owner(m.0, 2) == s).collect();
        assert!(!mine.is_empty());
        feed(&mut h, &mine);
        // The pipeline's watermark is the same on every subtask.
        h.process_watermark(before.last().unwrap().2 - 500).unwrap();
        snapshots.push(h.snapshot().unwrap());
        committed.extend(values(h.output()));
    }

    // Three subtasks restored from both snapshots, each taking the key groups it owns.
    let mut balances = BTreeMap::new();
    for s in 0..3 {
        let mut h = HarnessBuilder::new()
            .subtask(s, 3)
            .rocksdb()
            .restore_from_all(&snapshots)
            .keyed(Holds { idle_alerts: false })
            .unwrap();
        for account in 0..10u64 {
            if owner(account, 3) == s {
                balances.insert(account, h.value_state::<i64>(&account, "balance").unwrap());
            } else {
                assert!(h.value_state::<i64>(&account, "balance").is_err(), "not owned");
            }
        }
        let mine: Vec<_> = after.iter().copied().filter(|m| owner(m.0, 3) == s).collect();
        feed(&mut h, &mine);
        h.finish().unwrap();
        committed.extend(values(h.output()));
    }
    assert_eq!(sorted(committed), want);
    // Every account's balance moved to its new owner, as the sequential sum says.
    for (account, balance) in balances {
        let model: i64 = before.iter().filter(|m| m.0 == account).map(|m| m.1).sum();
        assert_eq!(balance, Some(model), "account {account}");
    }
}

#[test]
fn a_keyed_harness_emits_what_the_same_function_emits_in_a_pipeline() {
    let input = movements(500);
    let sink = CollectSink::new();
    let review = CollectSink::new();
    let p = Pipeline::new("harness-vs-pipeline").parallelism(3);
    let holds = p
        .source("movements", VecSource::new(input.clone()).splits(2))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(500))
                .with_timestamp_assigner(|m: &(u64, i64, Timestamp)| m.2),
        )
        .map("amount", |m: (u64, i64, Timestamp)| (m.0, m.1))
        .key_by("by-account", |m: &(u64, i64)| m.0)
        .process("holds", HoldsOfPairs);
    holds.side_output(&REVIEW).sink("review-out", review.clone());
    holds.sink("out", sink.clone());
    p.run().unwrap();

    let mut h = HarnessBuilder::new()
        .step("holds")
        .keyed(Holds { idle_alerts: false })
        .unwrap();
    feed(&mut h, &input);
    h.finish().unwrap();
    assert_eq!(sorted(sink.records()), sorted(values(h.output())));
    assert_eq!(
        sorted(review.records()),
        sorted(values(&h.side_output(&REVIEW).unwrap()))
    );
}

/// [`Holds`] over `(account, amount)` records, as a pipeline's key_by delivers them.
#[derive(Clone)]
struct HoldsOfPairs;

impl KeyedProcess<u64, (u64, i64)> for HoldsOfPairs {
    type Out = Event;
    fn process(&mut self, m: (u64, i64), ctx: &mut KeyedContext<'_, u64, Event>) -> Result<()> {
        Holds { idle_alerts: false }.process(m.1, ctx)
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, Event>) -> Result<()> {
        Holds { idle_alerts: false }.on_timer(timer, ctx)
    }
}

/// Prefixes records with where it runs; notes that it was closed.
#[derive(Clone)]
struct Tag {
    prefix: String,
    closed: Arc<AtomicBool>,
}

impl MapFunction<u64> for Tag {
    type Out = String;
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.prefix = format!("{}/{}[{}] attempt {}", ctx.job, ctx.step, ctx.subtask, ctx.attempt);
        Ok(())
    }
    fn map(&mut self, v: u64) -> Result<String> {
        Ok(format!("{} {v}", self.prefix))
    }
    fn close(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_one_input_harness_runs_function_objects_and_bad_record_policies() {
    let closed = Arc::new(AtomicBool::new(false));
    let mut h = HarnessBuilder::new()
        .job("ledger")
        .step("tag")
        .subtask(2, 4)
        .attempt(3)
        .map_function(Tag {
            prefix: String::new(),
            closed: closed.clone(),
        })
        .unwrap();
    h.process_element(7, 70).unwrap();
    h.process_watermark(60).unwrap();
    assert_eq!(
        h.output(),
        &[Record::with_timestamp("ledger/tag[2] attempt 3 7".to_string(), 70)]
    );
    assert_eq!(h.emitted_watermarks(), &[60]);
    assert!(!closed.load(Ordering::SeqCst));
    drop(h);
    assert!(
        closed.load(Ordering::SeqCst),
        "dropping the harness closes the function"
    );

    let parse = |s: String| s.parse::<i64>();
    let input = ["1", "x", "3", ""];
    let mut dead = OneInputHarness::try_map(BadRecordPolicy::DeadLetter, parse).unwrap();
    let mut skip = OneInputHarness::try_map(BadRecordPolicy::Skip, parse).unwrap();
    for (i, s) in input.iter().enumerate() {
        dead.process_element(s.to_string(), i as Timestamp).unwrap();
        skip.process_element(s.to_string(), i as Timestamp).unwrap();
    }
    assert_eq!(dead.output_values(), vec![1, 3]);
    assert_eq!(skip.output_values(), vec![1, 3]);
    let letters = dead.take_side_output(&DeadLetter::<String>::TAG).unwrap();
    assert_eq!(
        letters
            .iter()
            .map(|l| (l.value.record.as_str(), l.timestamp))
            .collect::<Vec<_>>(),
        vec![("x", Some(1)), ("", Some(3))]
    );
    assert_eq!(letters[0].value.step, "step");
    assert!(
        dead.side_output(&DeadLetter::<String>::TAG).unwrap().is_empty(),
        "taken"
    );
    assert_eq!(dead.counters().get("dead_letters"), Some(&2));
    assert_eq!(skip.counters().get("skipped_records"), Some(&2));
    assert!(skip.side_output(&DeadLetter::<String>::TAG).unwrap().is_empty());

    let mut fail = HarnessBuilder::new()
        .step("parse")
        .try_map(BadRecordPolicy::Fail, parse)
        .unwrap();
    fail.process_element("1".into(), 0).unwrap();
    let e = fail.process_element("x".into(), 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("step \"parse\" rejected a record"), "{e}");

    let mut words =
        OneInputHarness::flat_map(|s: String| s.split(' ').map(str::to_string).collect::<Vec<_>>()).unwrap();
    words.process_element_without_timestamp("a b".into()).unwrap();
    assert_eq!(
        words.take_output(),
        vec![Record::new("a".to_string()), Record::new("b".to_string())]
    );
    let e = words
        .process_watermark(5)
        .and_then(|_| words.process_watermark(4))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

/// Sums amounts.
struct Sum;

impl AggregateFunction<(u64, i64)> for Sum {
    type Acc = i64;
    type Out = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add(&self, acc: &mut i64, v: &(u64, i64)) {
        *acc += v.1;
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn result(&self, acc: &i64) -> i64 {
        *acc
    }
}

#[test]
fn a_window_step_fires_at_the_watermark_and_survives_a_restore() {
    let open = || {
        HarnessBuilder::new()
            .step("per-second")
            .window(TumblingEventTime::of(Duration::from_secs(1)))
            .aggregate(Sum)
    };
    let mut h = open().unwrap();
    h.process_element(&1, (1, 10), 100).unwrap();
    h.process_element(&1, (1, 5), 900).unwrap();
    h.process_element(&2, (2, 7), 1_100).unwrap();
    let snapshot = h.snapshot().unwrap();
    drop(h);

    let mut h = HarnessBuilder::new()
        .step("per-second")
        .restore_from(&snapshot)
        .window(TumblingEventTime::of(Duration::from_secs(1)))
        .aggregate(Sum)
        .unwrap();
    h.process_watermark(998).unwrap();
    assert!(h.output().is_empty(), "the window [0, 1000) fires at 999");
    h.process_watermark(999).unwrap();
    let fired = h.take_output();
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].value.key, fired[0].value.value, fired[0].timestamp),
        (1, 15, Some(999))
    );
    // Too late for its window: counted and on the late side output.
    h.process_element(&1, (1, 3), 500).unwrap();
    assert_eq!(values(&h.late_records().unwrap()), vec![(1, 3)]);
    assert_eq!(h.counters().get("late_records"), Some(&1));
    h.finish().unwrap();
    let rest = h.take_output();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].value.key, rest[0].value.value), (2, 7));
    assert!(open().is_ok());
}
