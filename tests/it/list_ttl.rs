//! TTL on list state across failures and rescales.
//!
//! Per account the job keeps the recent transactions in two lists, one expiring in event time
//! and one in processing time, and commits per event the ids it reads back with the
//! watermark and wall-clock time it read them at. The stages run at parallelism 2, 3 and 1,
//! each restored from the previous one's checkpoint, and the middle one fails and restarts.
//! Since the count per account orders the commits, the checker rebuilds the model: the list
//! read at count `c` holds exactly the earlier (and current) elements whose expiry is after
//! the time of the read. An element lost or added twice by a restore, or an expired one read
//! back, changes the output.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::generator::mix;
use weir::prelude::*;

use crate::common::wait_until;
use crate::common::within;

const EVENTS: u64 = 4_000;
const ACCOUNTS: u64 = 8;
/// Event-time TTL: about 19 transactions of an account live at once.
const EVENT_TTL_MS: i64 = 300;
/// Processing-time TTL: a dozen transactions of an account at `SLOW`.
const PROCESSING_TTL_MS: i64 = 200;
const SLOW: f64 = 500.0;
const FAST: f64 = 100_000.0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Txn {
    id: u64,
    account: u64,
    ts: i64,
}

fn txn(i: u64) -> Txn {
    let r = mix(0x7711, i);
    Txn {
        id: i,
        account: (r >> 8) % ACCOUNTS,
        ts: 1_000_000 + 2 * i as i64 + (r >> 20) as i64 % 60 - 30,
    }
}

/// What the step commits per transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Read {
    account: u64,
    id: u64,
    count: u64,
    watermark: i64,
    now: u64,
    /// Ids read back from the event-time list, in insertion order.
    by_event_time: Vec<u64>,
    /// Ids read back from the processing-time list.
    by_processing_time: Vec<u64>,
}

const COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
const RECENT: ListStateDescriptor<u64> =
    ListStateDescriptor::new("recent").with_ttl(Ttl::event_time(Duration::from_millis(EVENT_TTL_MS as u64)));
const RECENT_WALL: ListStateDescriptor<u64> = ListStateDescriptor::new("recent-wall")
    .with_ttl(Ttl::processing_time(Duration::from_millis(PROCESSING_TTL_MS as u64)));

#[derive(Clone)]
struct Recent;

impl KeyedProcess<u64, Txn> for Recent {
    type Out = Read;
    fn process(&mut self, t: Txn, ctx: &mut KeyedContext<'_, u64, Read>) -> Result<()> {
        let mut count = ctx.state(&COUNT);
        let n = count.get()?.unwrap_or(0) + 1;
        count.set(&n)?;
        let mut recent = ctx.state(&RECENT);
        recent.add(&t.id)?;
        let by_event_time = recent.get()?;
        let mut wall = ctx.state(&RECENT_WALL);
        wall.add(&t.id)?;
        let by_processing_time = wall.get()?;
        ctx.emit(Read {
            account: t.account,
            id: t.id,
            count: n,
            watermark: ctx.current_watermark(),
            now: ctx.current_processing_time(),
            by_event_time,
            by_processing_time,
        });
        Ok(())
    }

    fn states(&self) -> Vec<StateDeclaration> {
        vec![COUNT.declare(), RECENT.declare(), RECENT_WALL.declare()]
    }
}

fn pipeline(dir: &Path, parallelism: usize, rate: f64, points: FailPoints) -> Pipeline {
    let p = Pipeline::new("list-ttl")
        .parallelism(parallelism)
        .batch_size(16)
        .state_dir(dir.join("state"))
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(30))
        .fail_points(points)
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 5,
            delay: Duration::from_millis(1),
        });
    p.source(
        "txns",
        GeneratorSource::new(txn)
            .bounded(EVENTS)
            .splits(4)
            .rate_per_second(rate),
    )
    .assign_timestamps_and_watermarks(
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(50)).with_timestamp_assigner(|t: &Txn| t.ts),
    )
    .key_by("by-account", |t: &Txn| t.account)
    .process("recent", Recent)
    .sink("reads", FileSink::exactly_once(dir.join("reads")));
    p
}

/// Per account, the reads in count order against the model of both lists.
fn check(dir: &Path) {
    let mut per_account: BTreeMap<u64, Vec<Read>> = BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.join("reads")).unwrap() {
        let r: Read = serde_json::from_str(&line).unwrap();
        per_account.entry(r.account).or_default().push(r);
    }
    let mut expected_ids: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for i in 0..EVENTS {
        expected_ids.entry(txn(i).account).or_default().push(i);
    }
    let (mut expired_event, mut expired_wall) = (0, 0);
    for (account, ids) in expected_ids {
        let mut reads = per_account.remove(&account).unwrap_or_default();
        reads.sort_by_key(|r| r.count);
        let counts: Vec<u64> = reads.iter().map(|r| r.count).collect();
        assert_eq!(
            counts,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "account {account}: counts"
        );
        let mut got_ids: Vec<u64> = reads.iter().map(|r| r.id).collect();
        got_ids.sort_unstable();
        assert_eq!(got_ids, ids, "account {account}: every transaction once");
        for (c, r) in reads.iter().enumerate() {
            let earlier = &reads[..=c];
            let by_event: Vec<u64> = earlier
                .iter()
                .filter(|e| txn(e.id).ts + EVENT_TTL_MS > r.watermark)
                .map(|e| e.id)
                .collect();
            let by_wall: Vec<u64> = earlier
                .iter()
                .filter(|e| e.now as i64 + PROCESSING_TTL_MS > r.now as i64)
                .map(|e| e.id)
                .collect();
            assert_eq!(
                r.by_event_time, by_event,
                "account {account}: event-time list at count {}",
                r.count
            );
            assert_eq!(
                r.by_processing_time, by_wall,
                "account {account}: processing-time list at count {}",
                r.count
            );
            expired_event += c + 1 - by_event.len();
            expired_wall += c + 1 - by_wall.len();
        }
    }
    assert!(
        expired_event > 0 && expired_wall > 0,
        "elements expired in both domains"
    );
}

#[test]
fn list_elements_expire_per_element_across_a_failure_and_rescales() {
    crate::common::trace_if_asked();
    within(300, || {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let shapes = [2, 3, 1];
        let mut after = 0u64;
        let mut restarts = 0;
        for (n, &parallelism) in shapes.iter().enumerate() {
            let last = n + 1 == shapes.len();
            let points = FailPoints::new();
            if n == 1 {
                points.arm(fail::PROCESS_RECORD, 60, FailAction::Error);
            }
            let handle = pipeline(dir, parallelism, if last { FAST } else { SLOW }, points)
                .start()
                .unwrap();
            if last {
                let report = handle.join().unwrap();
                assert!(report.restored_from.is_some());
                break;
            }
            wait_until("the stage read records and completed a checkpoint", 60, || {
                let p = handle.progress();
                handle.is_finished()
                    || p.source_records >= (n as u64 + 1) * EVENTS / 6
                        && p.last_checkpoint.is_some_and(|(id, _)| id.get() > after)
            });
            assert!(!handle.is_finished(), "stage {n} ended before it was stopped");
            handle.cancel();
            let report = handle.join().unwrap();
            restarts += report.restarts;
            after = report.checkpoints.iter().map(|c| c.id.get()).max().unwrap_or(after);
        }
        assert_eq!(restarts, 1, "the middle stage failed and restarted");
        check(dir);
    });
}
