//! State schema evolution across savepoints and failures.
//!
//! A ledger keeps a running count and sum per account and commits `(account, id, count, sum)`
//! per event, with no deduplication: an event lost or processed twice, or a value read with
//! the wrong layout, changes the committed output, which is compared with a sequential model.
//! The job runs with one version of its state type, is stopped with a savepoint, and restarts
//! with another: an added field with a default and a renamed type (at another parallelism),
//! values written by name before descriptors existed (through a migration, with a failure in
//! the restored run), and a field whose type changed (the restore fails, naming the step and
//! the state, and the savepoint still restores into a compatible job).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

use crate::common::wait_until;
use crate::common::within;
use crate::savepoints::local;

const EVENTS: u64 = 3_000;
const ACCOUNTS: u64 = 12;
/// Events per second of the first run, stopped with a savepoint midway.
const SLOW: f64 = 1_000.0;
/// Events per second of the run that finishes the input.
const FAST: f64 = 200_000.0;
/// Cents above which a transaction counts as large (the field version 2 adds).
const LARGE: i64 = 900;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Txn {
    id: u64,
    account: u64,
    cents: i64,
}

fn txn(i: u64) -> Txn {
    let r = mix(0xE7017, i);
    Txn {
        id: i,
        account: (r >> 8) % ACCOUNTS,
        cents: 1 + ((r >> 16) % 1000) as i64,
    }
}

/// What the ledger commits per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Posted {
    account: u64,
    id: u64,
    count: u64,
    sum: i64,
    /// The large transactions counted since the job had the field (version 2 only).
    large: Option<u64>,
}

/// Before descriptors: the state opened by name, as every job written before them.
#[derive(Clone)]
struct LedgerByName;

impl KeyedProcess<u64, Txn> for LedgerByName {
    type Out = Posted;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Posted>) -> Result<()> {
        let mut state = ctx.value_state::<(u64, i64)>("account");
        let (count, sum) = state.get()?.unwrap_or((0, 0));
        let (count, sum) = (count + 1, sum + t.cents);
        state.set(&(count, sum))?;
        ctx.emit(Posted {
            account: t.account,
            id: t.id,
            count,
            sum,
            large: None,
        });
        Ok(())
    }
}

/// Version 1 of the state type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountV1 {
    count: u64,
    sum: i64,
}

const ACCOUNT_V1: ValueStateDescriptor<AccountV1> = ValueStateDescriptor::new("account");

#[derive(Clone)]
struct LedgerV1;

impl KeyedProcess<u64, Txn> for LedgerV1 {
    type Out = Posted;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Posted>) -> Result<()> {
        let mut state = ctx.state(&ACCOUNT_V1);
        let mut a = state.get()?.unwrap_or_default();
        a.count += 1;
        a.sum += t.cents;
        state.set(&a)?;
        ctx.emit(Posted {
            account: t.account,
            id: t.id,
            count: a.count,
            sum: a.sum,
            large: None,
        });
        Ok(())
    }

    fn states(&self) -> Vec<StateDeclaration> {
        vec![ACCOUNT_V1.declare()]
    }
}

/// Version 2: the type is renamed and has a field more, with a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Account {
    count: u64,
    sum: i64,
    #[serde(default)]
    large: u64,
}

/// The ledger of version 2, with the descriptor it reads its state through.
#[derive(Clone)]
struct LedgerV2 {
    account: ValueStateDescriptor<Account>,
}

impl KeyedProcess<u64, Txn> for LedgerV2 {
    type Out = Posted;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Posted>) -> Result<()> {
        let mut state = ctx.state(&self.account);
        let mut a = state.get()?.unwrap_or_default();
        a.count += 1;
        a.sum += t.cents;
        a.large += u64::from(t.cents > LARGE);
        state.set(&a)?;
        ctx.emit(Posted {
            account: t.account,
            id: t.id,
            count: a.count,
            sum: a.sum,
            large: Some(a.large),
        });
        Ok(())
    }

    fn states(&self) -> Vec<StateDeclaration> {
        vec![self.account.declare()]
    }
}

/// Version 1 with `sum` changed to a string, without a new version or a migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountText {
    count: u64,
    sum: String,
}

const ACCOUNT_TEXT: ValueStateDescriptor<AccountText> = ValueStateDescriptor::new("account");

#[derive(Clone)]
struct LedgerText;

impl KeyedProcess<u64, Txn> for LedgerText {
    type Out = Posted;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Posted>) -> Result<()> {
        let mut state = ctx.state(&ACCOUNT_TEXT);
        let mut a = state.get()?.unwrap_or_default();
        a.count += 1;
        a.sum = format!("{}", a.sum.parse::<i64>().unwrap_or(0) + t.cents);
        state.set(&a)?;
        ctx.emit(Posted {
            account: t.account,
            id: t.id,
            count: a.count,
            sum: a.sum.parse().unwrap_or(-1),
            large: None,
        });
        Ok(())
    }

    fn states(&self) -> Vec<StateDeclaration> {
        vec![ACCOUNT_TEXT.declare()]
    }
}

fn pipeline<P: KeyedProcess<u64, Txn, Out = Posted> + Clone>(
    dir: &Path,
    checkpoints: &str,
    ledger: P,
    parallelism: usize,
    rate: f64,
    from: Option<&Path>,
) -> Pipeline {
    let mut p = Pipeline::new("evolution")
        .parallelism(parallelism)
        .batch_size(32)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join(checkpoints))
        .checkpoint_interval(Duration::from_millis(40));
    if let Some(sp) = from {
        p = p.from_savepoint(SavepointRestore::dir(sp));
    }
    p.source(
        "txns",
        GeneratorSource::new(txn)
            .bounded(EVENTS)
            .splits(4)
            .rate_per_second(rate),
    )
    .key_by("by-account", |t: &Txn| t.account)
    .process("ledger", ledger)
    .sink("posted", FileSink::exactly_once(dir.join("posted")));
    p
}

/// Runs `ledger` at `SLOW` until it read a third of the input and completed a checkpoint,
/// then stops it with a savepoint in `dir/savepoint`.
fn run_until_savepoint<P: KeyedProcess<u64, Txn, Out = Posted> + Clone>(dir: &Path, ledger: P) {
    let handle = pipeline(dir, "checkpoints-a", ledger, 2, SLOW, None).start().unwrap();
    wait_until("the first version made progress", 60, || {
        let p = handle.progress();
        p.source_records >= EVENTS / 3 && p.last_checkpoint.is_some()
    });
    let sp = handle.stop_with_savepoint(local(&dir.join("savepoint"))).unwrap();
    assert!(sp.stopped_job);
    handle.join().unwrap();
}

fn committed(dir: &Path) -> Vec<Posted> {
    weir::engine::sink::read_committed_lines(dir.join("posted"))
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The committed output against a sequential model: per account every event once, counts
/// exactly `1..=n` and the model's sum at `n` (values carried over the change of type); with
/// `large`, the records of the new version count large transactions from zero (the added
/// field started at its default) in the order of the counts.
fn check_against_model(dir: &Path, large: bool) {
    let mut got: BTreeMap<u64, Vec<Posted>> = BTreeMap::new();
    for p in committed(dir) {
        got.entry(p.account).or_default().push(p);
    }
    let mut model: BTreeMap<u64, (Vec<u64>, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let t = txn(i);
        let m = model.entry(t.account).or_default();
        m.0.push(t.id);
        m.1 += t.cents;
    }
    assert_eq!(got.len(), model.len(), "accounts");
    for (account, (ids, sum)) in &model {
        let got = got.get_mut(account).unwrap();
        got.sort_by_key(|p| p.count);
        let n = ids.len() as u64;
        let counts: Vec<u64> = got.iter().map(|p| p.count).collect();
        assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "account {account}: counts");
        let mut got_ids: Vec<u64> = got.iter().map(|p| p.id).collect();
        got_ids.sort_unstable();
        assert_eq!(&got_ids, ids, "account {account}: committed ids");
        assert_eq!(got.last().unwrap().sum, *sum, "account {account}: final sum");
        let mut running = 0;
        for p in got.iter() {
            running += txn(p.id).cents;
            assert_eq!(p.sum, running, "account {account}: sum at count {}", p.count);
        }
        if large {
            let first_new = got.iter().position(|p| p.large.is_some()).unwrap();
            assert!(first_new > 0, "account {account}: the first version wrote state");
            let mut expect = 0;
            for p in &got[first_new..] {
                expect += u64::from(txn(p.id).cents > LARGE);
                assert_eq!(p.large, Some(expect), "account {account}: large at count {}", p.count);
            }
        }
    }
}

#[test]
fn a_field_added_with_a_default_and_a_renamed_type_restore_from_a_savepoint_at_another_parallelism() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run_until_savepoint(dir, LedgerV1);
        let v2 = LedgerV2 {
            account: ValueStateDescriptor::new("account"),
        };
        let report = pipeline(dir, "checkpoints-b", v2, 3, FAST, Some(&dir.join("savepoint")))
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert!(report.restored_from.is_some());
        check_against_model(dir, true);
    });
}

#[test]
fn state_written_by_name_before_descriptors_restores_through_a_migration_and_a_failure() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run_until_savepoint(dir, LedgerByName);
        // Version 0 is the unversioned bincode `(count, sum)` the job wrote by name.
        let v2 = LedgerV2 {
            account: ValueStateDescriptor::new("account")
                .version(1)
                .migrate_from::<(u64, i64)>(0, |(count, sum)| Account { count, sum, large: 0 }),
        };
        let points = FailPoints::new();
        points.arm(fail::PROCESS_RECORD, 40, FailAction::Error);
        let report = pipeline(dir, "checkpoints-b", v2, 2, 20_000.0, Some(&dir.join("savepoint")))
            .fail_points(points)
            .restart_strategy(RestartStrategy::FixedDelay {
                max_attempts: 5,
                delay: Duration::from_millis(1),
            })
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(report.restarts, 1, "the injected failure restarted the job");
        check_against_model(dir, true);
    });
}

#[test]
fn a_field_type_changed_without_a_migration_fails_the_restore_naming_step_and_state() {
    crate::common::trace_if_asked();
    within(240, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        run_until_savepoint(dir, LedgerV1);
        let before = committed(dir).len();
        let e = pipeline(dir, "checkpoints-b", LedgerText, 2, FAST, Some(&dir.join("savepoint")))
            .start()
            .and_then(|h| h.join())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("step ledger["), "the error names the step: {msg}");
        assert!(msg.contains("state \"account\""), "the error names the state: {msg}");
        assert_eq!(committed(dir).len(), before, "the refused job committed nothing");
        // The savepoint is intact: a compatible version restores it.
        let v2 = LedgerV2 {
            account: ValueStateDescriptor::new("account"),
        };
        pipeline(dir, "checkpoints-c", v2, 2, FAST, Some(&dir.join("savepoint")))
            .start()
            .unwrap()
            .join()
            .unwrap();
        check_against_model(dir, true);
    });
}
