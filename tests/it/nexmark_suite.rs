//! Every Nexmark query (q10 aside: it only writes to a file system) against its sequential
//! model (`nexmark_models`), at parallelism 1, 2 and 4, with a failure injected mid-run in each
//! run: the job restores its latest checkpoint, replays the source from there, and what the
//! sink committed over both attempts must be the model's output, each result once.
//!
//! The input is the Nexmark stream of a fixed seed, 1,000 events per second of event time,
//! fed at a steady wall-clock rate (a generator over the same events, since the Nexmark source
//! has no rate limit) so that the job takes several checkpoints before the failure. Nothing in
//! the pipelines deduplicates ahead of their counts, so a replayed record would show in the
//! output (as an extra row, or as a count one too high).
//!
//! Results that SQL updates are upsert streams (see `weir_examples::nexmark::queries`): for
//! those the tests take the last row of each key, in the order the sink committed them (each
//! key's rows come from one subtask, in order), and check the rows before it where their order
//! is defined (q15–q17 count `total_bids` 1, 2, 3, ...; q18's rows only move forward in time).

use crate::common::{self, sorted, Backend};
use crate::nexmark_models as model;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use weir::engine::fail::{self, FailAction, FailPoints};
use weir::engine::source::nexmark::*;
use weir::prelude::*;
use weir_examples::nexmark::queries::{self, SideInput};

/// Events per run: 30 s of event time (three 10 s windows; about 1,800 auctions, most of
/// which close within the input).
const EVENTS: u64 = 30_000;
/// Events per second of wall time: each run takes about half a second.
const RATE: f64 = 60_000.0;

fn config() -> NexmarkConfig {
    NexmarkConfig {
        events_per_second: 1_000,
        ..NexmarkConfig::with_seed(23)
    }
}

fn input() -> &'static [Event] {
    static INPUT: OnceLock<Vec<Event>> = OnceLock::new();
    INPUT.get_or_init(|| {
        let g = NexmarkGenerator::new(config());
        (0..EVENTS).map(|i| g.event(i)).collect()
    })
}

/// The failure of the run at `parallelism` (armed after the first checkpoint, to trigger on
/// its `nth` hit from then on), and its state backend: a crash after a checkpoint completed
/// but before the sink committed (p1), a failed snapshot in some subtask (p2, on RocksDB), a
/// crash in a sink that has staged its output for a checkpoint that does not exist yet (p4).
fn failure(parallelism: usize) -> (&'static str, u64, FailAction, Backend) {
    match parallelism {
        1 => (fail::AFTER_METADATA, 3, FailAction::Panic, Backend::Memory),
        2 => (fail::SNAPSHOT_SYNC, 7, FailAction::Error, Backend::Rocks),
        _ => (fail::AFTER_PRE_COMMIT, 6, FailAction::Panic, Backend::Memory),
    }
}

/// Runs `query` over the input at `parallelism` with its failure; returns what the sink
/// committed, in commit order.
fn run<T: Data>(parallelism: usize, query: &dyn Fn(&Stream<Event>) -> Stream<T>) -> Vec<T> {
    let (point, nth, action, backend) = failure(parallelism);
    let dir = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    let p = common::pipeline("nexmark-suite", backend, &dir)
        .parallelism(parallelism)
        .fail_points(points.clone())
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(20))
        .restart_strategy(RestartStrategy::FixedDelay {
            max_attempts: 5,
            delay: Duration::from_millis(1),
        });
    let g = NexmarkGenerator::new(config());
    let source = GeneratorSource::new(move |i| g.event(i))
        .with_timestamps(|_, e: &Event| e.date_time())
        .bounded(EVENTS)
        .splits(parallelism)
        .rate_per_second(RATE);
    let sink = CollectSink::new();
    query(&p.source("nexmark", source)).sink("out", sink.clone());
    // Armed once a checkpoint exists, so that the job restores one rather than starting over.
    let job = p.start().unwrap();
    while job.progress().last_checkpoint.is_none() && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    points.arm(point, nth, action);
    let report = job.join().unwrap();
    assert!(
        !points.is_armed(point),
        "p{parallelism}: {point} did not fire before the end"
    );
    assert!(
        report.restores.iter().any(|r| r.checkpoint.is_some()),
        "p{parallelism}: the job did not restore a checkpoint after {point}: {:?}",
        report.restores
    );
    sink.records()
}

/// Asserts `actual == expected`, reporting the lengths and the first difference.
fn assert_same<T: PartialEq + std::fmt::Debug>(actual: &[T], expected: &[T], what: &str) {
    if let Some(i) = (0..actual.len().max(expected.len())).find(|&i| actual.get(i) != expected.get(i)) {
        panic!(
            "{what}: {} records, expected {}; first difference at {i}: {:?} instead of {:?}",
            actual.len(),
            expected.len(),
            actual.get(i),
            expected.get(i)
        );
    }
}

/// Checks an append-only query: its output, as a multiset, is the model's.
fn check_rows<T: Data + Ord + std::fmt::Debug>(
    name: &str,
    query: impl Fn(&Stream<Event>) -> Stream<T>,
    expected: Vec<T>,
    at_least: usize,
) {
    assert!(
        expected.len() >= at_least,
        "{name}: the model has only {} rows",
        expected.len()
    );
    let expected = sorted(expected);
    for p in [1, 2, 4] {
        let actual = sorted(run(p, &query));
        assert_same(&actual, &expected, &format!("{name} at parallelism {p}"));
    }
}

/// Each key's rows of an upsert stream, in commit order.
fn by_key<T, K: Ord>(rows: Vec<T>, key: impl Fn(&T) -> K) -> BTreeMap<K, Vec<T>> {
    let mut m: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for r in rows {
        m.entry(key(&r)).or_default().push(r);
    }
    m
}

/// Checks an upsert query: the last row of each key is the model's, and `each_key` holds for
/// every key's rows.
fn check_upserts<T: Data + PartialEq + std::fmt::Debug, K: Ord + Clone + std::fmt::Debug>(
    name: &str,
    query: impl Fn(&Stream<Event>) -> Stream<T>,
    key: impl Fn(&T) -> K,
    expected: BTreeMap<K, T>,
    each_key: impl Fn(&K, &[T]),
) {
    assert!(!expected.is_empty(), "{name}: the model has no key");
    let expected: Vec<(K, T)> = expected.into_iter().collect();
    for p in [1, 2, 4] {
        let rows = by_key(run(p, &query), &key);
        for (k, rows) in &rows {
            each_key(k, rows);
        }
        let last: Vec<(K, T)> = rows.into_iter().map(|(k, mut rows)| (k, rows.pop().unwrap())).collect();
        assert_same(
            &last,
            &expected,
            &format!("{name} at parallelism {p}: last row per key"),
        );
    }
}

#[test]
fn q3_local_item_suggestion() {
    check_rows("q3", queries::q3, model::q3(input()), 20);
}

#[test]
fn q4_average_price_per_category() {
    check_rows("q4", queries::q4, model::q4(input()), 500);
}

#[test]
fn q6_average_selling_price_by_seller() {
    check_rows("q6", queries::q6, model::q6(input()), 500);
}

#[test]
fn q8_monitor_new_users() {
    check_rows("q8", queries::q8, model::q8(input()), 10);
}

#[test]
fn q9_winning_bids() {
    check_rows("q9", queries::q9, model::q9(input()), 500);
}

#[test]
fn q11_user_sessions() {
    check_rows("q11", queries::q11, model::q11(input()), 100);
}

/// q12's windows depend on the wall clock, so the check is what does not: every bid is
/// counted in exactly one window (per bidder, the counts add up to their bids, and no window
/// of a bidder appears twice).
#[test]
fn q12_processing_time_windows() {
    let expected = model::q12_bids_per_bidder(input());
    for p in [1, 2, 4] {
        let rows = run(p, &queries::q12);
        let mut counted: BTreeMap<u64, u64> = BTreeMap::new();
        let mut windows = std::collections::BTreeSet::new();
        for r in &rows {
            assert!(
                r.end - r.start == 10_000 && r.start % 10_000 == 0 && r.bid_count > 0,
                "q12 at p{p}: {r:?}"
            );
            assert!(windows.insert((r.bidder, r.start)), "q12 at p{p}: window twice: {r:?}");
            *counted.entry(r.bidder).or_default() += r.bid_count;
        }
        assert_eq!(counted, expected, "q12 at parallelism {p}: bids per bidder");
    }
}

#[test]
fn q13_bounded_side_input_join() {
    let side = Arc::new(SideInput::generated(10_000));
    check_rows(
        "q13",
        move |e| queries::q13(e, side.clone()),
        model::q13(input()),
        20_000,
    );
}

#[test]
fn q14_calculation() {
    check_rows("q14", queries::q14, model::q14(input()), 1_000);
}

/// q15–q17: each group's rows count its bids 1, 2, 3, ... in commit order.
fn counts_one_up(key: &dyn std::fmt::Debug, totals: Vec<u64>) {
    assert!(
        totals.iter().copied().eq(1..=totals.len() as u64),
        "{key:?}: total_bids {totals:?} is not 1, 2, 3, ..."
    );
}

#[test]
fn q15_bidding_statistics() {
    check_upserts(
        "q15",
        queries::q15,
        |r| r.day.clone(),
        model::q15(input()),
        |k, rows| counts_one_up(k, rows.iter().map(|r| r.stats.bids[0]).collect()),
    );
}

#[test]
fn q16_channel_statistics() {
    check_upserts(
        "q16",
        queries::q16,
        |r| (r.channel.clone(), r.day.clone()),
        model::q16(input()),
        |k, rows| counts_one_up(k, rows.iter().map(|r| r.stats.bids[0]).collect()),
    );
}

#[test]
fn q17_auction_statistics() {
    check_upserts(
        "q17",
        queries::q17,
        |r| (r.auction, r.day.clone()),
        model::q17(input()),
        |k, rows| counts_one_up(k, rows.iter().map(|r| r.bids[0]).collect()),
    );
}

/// q18: each key's rows move strictly forward in (time, bid): a bid delivered twice would be
/// emitted twice.
#[test]
fn q18_last_bid() {
    check_upserts(
        "q18",
        queries::q18,
        |b| (b.bidder, b.auction),
        model::q18(input()),
        |k, rows| {
            assert!(
                rows.windows(2)
                    .all(|w| (w[0].date_time, &w[0]) < (w[1].date_time, &w[1])),
                "{k:?}: rows do not move forward: {rows:?}"
            )
        },
    );
}

#[test]
fn q19_top_10_bids() {
    check_upserts(
        "q19",
        queries::q19,
        |r| (r.bid.auction, r.rank_number),
        model::q19(input())
            .into_iter()
            .map(|(k, bid)| (k, queries::RankedBid { bid, rank_number: k.1 }))
            .collect(),
        |k, rows| assert!((1..=10).contains(&k.1), "{k:?}: rank out of range: {rows:?}"),
    );
}

#[test]
fn q20_bids_with_their_auction() {
    check_rows("q20", queries::q20, model::q20(input()), 500);
}

#[test]
fn q21_channel_id() {
    check_rows("q21", queries::q21, model::q21(input()), 10_000);
}

#[test]
fn q22_url_directories() {
    check_rows("q22", queries::q22, model::q22(input()), 20_000);
}

#[test]
fn q0_to_q2_pass_through_currency_conversion_selection() {
    check_rows("q0", queries::q0, input().to_vec(), EVENTS as usize);
    let bids = model::bids(input());
    let euros = bids
        .iter()
        .map(|b| Bid {
            price: b.price * 908 / 1000,
            ..b.clone()
        })
        .collect();
    check_rows("q1", queries::q1, euros, 20_000);
    let selected = bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| queries::AuctionPrice {
            auction: b.auction,
            price: b.price,
        })
        .collect();
    check_rows("q2", queries::q2, selected, 50);
}

#[test]
fn q5_hot_items_and_q7_highest_bid() {
    check_rows("q5", queries::q5, crate::nexmark::q5_model(input()), 14);
    check_rows("q7", queries::q7, crate::nexmark::q7_model(input()), 3);
}
