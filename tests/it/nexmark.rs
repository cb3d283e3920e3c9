//! The Nexmark source and queries: the generator is deterministic by seed, keeps the published
//! proportions and id arithmetic, and replays identically from any split position; every
//! query's committed output equals a plain sequential model of the same seeded input, at
//! parallelism 1 and 2.

use crate::common;

use common::{sorted, Backend, BACKENDS};
use std::collections::BTreeMap;
use weir::engine::source::nexmark::*;
use weir::prelude::*;
use weir_examples::nexmark::queries::{
    self, AuctionPrice, HighestBid, HotItem, Q2_AUCTION_MODULUS, Q5_SLIDE, Q5_WINDOW, Q7_WINDOW,
};

/// Asserts `actual == expected`, reporting the lengths and the first difference (the records
/// are too long to print whole).
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

fn generator(seed: u64) -> NexmarkGenerator {
    NexmarkGenerator::new(NexmarkConfig::with_seed(seed))
}

fn events(config: &NexmarkConfig, n: u64) -> Vec<Event> {
    let g = NexmarkGenerator::new(config.clone());
    (0..n).map(|i| g.event(i)).collect()
}

fn bids(events: &[Event]) -> Vec<Bid> {
    events.iter().cloned().filter_map(Event::into_bid).collect()
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_other_fields() {
    let (a, b, c) = (generator(7), generator(7), generator(8));
    let mut differing = 0;
    for i in 0..5_000 {
        let (x, y, z) = (a.event(i), b.event(i), c.event(i));
        assert_eq!(x, y, "event {i}");
        // Ids, types and times come from the event index, not the seed.
        assert_eq!(x.kind(), z.kind());
        assert_eq!(x.date_time(), z.date_time());
        differing += usize::from(x != z);
    }
    assert!(differing > 4_900, "only {differing} events differ between seeds");
}

#[test]
fn proportions_ids_and_times_follow_the_published_generator() {
    let config = NexmarkConfig::default();
    let all = events(&config, 100_000);
    let count = |k: EventKind| all.iter().filter(|e| e.kind() == k).count();
    assert_eq!(count(EventKind::Person), 2_000);
    assert_eq!(count(EventKind::Auction), 6_000);
    assert_eq!(count(EventKind::Bid), 92_000);
    let persons: Vec<u64> = all
        .iter()
        .cloned()
        .filter_map(Event::into_person)
        .map(|p| p.id)
        .collect();
    let auctions: Vec<Auction> = all.iter().cloned().filter_map(Event::into_auction).collect();
    assert_eq!(persons, (FIRST_PERSON_ID..FIRST_PERSON_ID + 2_000).collect::<Vec<_>>());
    assert!(auctions
        .iter()
        .map(|a| a.id)
        .eq(FIRST_AUCTION_ID..FIRST_AUCTION_ID + 6_000));
    // 10,000 events per second of event time, from the base time on.
    assert_eq!(all[0].date_time(), BASE_TIME_MS);
    assert_eq!(all[99_999].date_time(), BASE_TIME_MS + 9_999);
    assert!(all.windows(2).all(|w| w[0].date_time() <= w[1].date_time()));
    // Half the bids go to the hot auction of their batch of 100; a quarter are by hot bidders.
    let bids = bids(&all);
    let hot = bids
        .iter()
        .filter(|b| (b.auction - FIRST_AUCTION_ID).is_multiple_of(HOT_AUCTION_BATCH))
        .count();
    let share = hot as f64 / bids.len() as f64;
    assert!((0.5..0.56).contains(&share), "hot auction share {share}");
    let hot_bidders = bids
        .iter()
        .filter(|b| (b.bidder - FIRST_PERSON_ID) % HOT_BIDDER_BATCH == 1)
        .count();
    let share = hot_bidders as f64 / bids.len() as f64;
    assert!((0.75..0.8).contains(&share), "hot bidder share {share}");
    let hot_channels = bids
        .iter()
        .filter(|b| HOT_CHANNELS.contains(&b.channel.as_str()))
        .count();
    let share = hot_channels as f64 / bids.len() as f64;
    assert!((0.48..0.52).contains(&share), "hot channel share {share}");
    // Auctions expire after they open; sellers and bidders are persons that exist (or will soon).
    assert!(auctions
        .iter()
        .all(|a| a.expires > a.date_time && a.reserve >= a.initial_bid));
    assert!(auctions.iter().all(|a| (10..15).contains(&a.category)));
    let last_person = FIRST_PERSON_ID + 2_000 + PERSON_ID_LEAD;
    assert!(bids
        .iter()
        .all(|b| b.bidder < last_person && b.auction < FIRST_AUCTION_ID + 6_000 + 10));
    // The padding brings each type near its average size (bids: 100 bytes, 32 of them fixed).
    let avg_extra = bids.iter().map(|b| b.extra.len()).sum::<usize>() as f64 / bids.len() as f64;
    assert!((64.0..72.0).contains(&avg_extra), "average bid extra {avg_extra}");
}

/// Reads every record of `reader` (a bounded source), with the positions after each poll.
fn drain(reader: &mut dyn SourceReader<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let mut batch = Vec::new();
        let status = reader.poll(&mut batch, 100).unwrap();
        out.extend(batch.into_iter().map(|r| {
            assert_eq!(r.timestamp, Some(r.value.date_time()));
            r.value
        }));
        if status == ReadStatus::Finished {
            return out;
        }
    }
}

#[test]
fn splits_cover_the_stream_and_replay_from_any_position() {
    let config = NexmarkConfig::with_seed(3);
    let total = 10_007;
    let expected = events(&config, total);
    let source = NexmarkSource::new(config).bounded(total).splits(3);
    let splits = Source::splits(&source).unwrap();
    assert_eq!(splits.len(), 3);
    let info = |index| SubtaskInfo {
        index,
        parallelism: 2,
        restored: false,
    };
    // Subtask 0 owns splits 0 and 2, subtask 1 owns split 1: together, every event once.
    let mut r0 = source
        .create_reader(
            vec![
                AssignedSplit::fresh(splits[0].clone()),
                AssignedSplit::fresh(splits[2].clone()),
            ],
            info(0),
        )
        .unwrap();
    let mut r1 = source
        .create_reader(vec![AssignedSplit::fresh(splits[1].clone())], info(1))
        .unwrap();
    let mut all = drain(r0.as_mut());
    all.extend(drain(r1.as_mut()));
    assert_same(&sorted(all), &sorted(expected.clone()), "splits 0+2 and 1");

    // Stop a reader in the middle; a new reader at its positions yields exactly the rest.
    let mut first = source
        .create_reader(
            splits.iter().map(|s| AssignedSplit::fresh(s.clone())).collect(),
            info(0),
        )
        .unwrap();
    let mut head = Vec::new();
    for _ in 0..17 {
        let mut batch = Vec::new();
        first.poll(&mut batch, 211).unwrap();
        head.extend(batch.into_iter().map(|r| r.value));
    }
    let positions = first.positions();
    assert_eq!(positions.iter().map(|p| p.offset).sum::<u64>(), head.len() as u64);
    let rest_of_first = drain(first.as_mut());
    let mut replayed = source
        .create_reader(
            positions.iter().cloned().map(AssignedSplit::restored).collect(),
            info(0),
        )
        .unwrap();
    // The same events; the order across splits may differ (each split's own order holds).
    let rest = drain(replayed.as_mut());
    assert_same(&sorted(rest.clone()), &sorted(rest_of_first), "replay from positions");
    head.extend(rest);
    assert_same(&sorted(head), &sorted(expected), "head and replayed rest");
    // A split of another layout is refused.
    assert!(source
        .create_reader(vec![AssignedSplit::fresh("nexmark-0-of-4")], info(0))
        .is_err());
}

/// Input of the query tests: 1,000 events per second of event time, so 120,000 events span
/// 120 s (60 sliding windows of q5, 12 tumbling windows of q7).
fn query_config() -> NexmarkConfig {
    NexmarkConfig {
        events_per_second: 1_000,
        ..NexmarkConfig::with_seed(11)
    }
}
const QUERY_EVENTS: u64 = 120_000;

/// Runs `query` over the query input and returns its committed output.
fn run<T: Data>(parallelism: usize, backend: Backend, query: impl Fn(&Stream<Event>) -> Stream<T>) -> Vec<T> {
    let dir = tempfile::tempdir().unwrap();
    let p = common::pipeline("nexmark-test", backend, &dir).parallelism(parallelism);
    let sink = CollectSink::new();
    let source = NexmarkSource::new(query_config())
        .bounded(QUERY_EVENTS)
        .splits(parallelism);
    query(&p.source("nexmark", source)).sink("out", sink.clone());
    let report = p.run().unwrap();
    assert_eq!(report.operator("nexmark").unwrap().records_out, QUERY_EVENTS);
    sink.records()
}

fn input() -> Vec<Event> {
    events(&query_config(), QUERY_EVENTS)
}

#[test]
fn stateless_queries_equal_the_sequential_model() {
    let input = input();
    let q1_model: Vec<Bid> = bids(&input)
        .into_iter()
        .map(|b| Bid {
            price: b.price * 908 / 1000,
            ..b
        })
        .collect();
    let q2_model: Vec<AuctionPrice> = bids(&input)
        .into_iter()
        .filter(|b| b.auction % Q2_AUCTION_MODULUS == 0)
        .map(|b| AuctionPrice {
            auction: b.auction,
            price: b.price,
        })
        .collect();
    assert!(q2_model.len() > 100, "q2 selects {} bids", q2_model.len());
    for p in [1, 2] {
        let q0 = run(p, Backend::Memory, queries::q0);
        if p == 1 {
            assert_same(&q0, &input, "q0 at parallelism 1 keeps the order");
        }
        assert_same(&sorted(q0), &sorted(input.clone()), &format!("q0 at parallelism {p}"));
        let q1 = sorted(run(p, Backend::Memory, queries::q1));
        assert_same(&q1, &sorted(q1_model.clone()), &format!("q1 at parallelism {p}"));
        let q2 = sorted(run(p, Backend::Memory, queries::q2));
        assert_same(&q2, &sorted(q2_model.clone()), &format!("q2 at parallelism {p}"));
    }
}

/// q5 by brute force: every 2 s-aligned window of 10 s holding a bid, its count per auction,
/// and the auctions with the largest count.
pub(crate) fn q5_model(input: &[Event]) -> Vec<HotItem> {
    let (size, slide) = (Q5_WINDOW.as_millis() as i64, Q5_SLIDE.as_millis() as i64);
    let mut counts: BTreeMap<i64, BTreeMap<u64, u64>> = BTreeMap::new();
    for b in bids(input) {
        let mut start = b.date_time.div_euclid(slide) * slide;
        while start > b.date_time - size {
            *counts.entry(start).or_default().entry(b.auction).or_default() += 1;
            start -= slide;
        }
    }
    let mut out = Vec::new();
    for (start, per_auction) in counts {
        let max = per_auction.values().copied().max().unwrap();
        for (&auction, &n) in &per_auction {
            if n == max {
                out.push(HotItem {
                    window: TimeWindow::new(start, start + size),
                    auction,
                    bids: n,
                });
            }
        }
    }
    out
}

/// q7 by brute force: every 10 s window's bids with its highest price.
pub(crate) fn q7_model(input: &[Event]) -> Vec<HighestBid> {
    let size = Q7_WINDOW.as_millis() as i64;
    let mut windows: BTreeMap<i64, Vec<Bid>> = BTreeMap::new();
    for b in bids(input) {
        windows.entry(b.date_time.div_euclid(size) * size).or_default().push(b);
    }
    let mut out = Vec::new();
    for (start, bids) in windows {
        let max = bids.iter().map(|b| b.price).max().unwrap();
        for bid in bids.into_iter().filter(|b| b.price == max) {
            out.push(HighestBid {
                window: TimeWindow::new(start, start + size),
                bid,
            });
        }
    }
    out
}

#[test]
fn windowed_queries_equal_a_brute_force_computation() {
    let input = input();
    let (q5, q7) = (q5_model(&input), q7_model(&input));
    assert!(q5.len() >= 64, "q5 model has {} results", q5.len());
    assert!(q7.len() >= 12, "q7 model has {} results", q7.len());
    for backend in BACKENDS {
        for p in [1, 2] {
            let what = format!("at parallelism {p} on {backend:?}");
            assert_same(&sorted(run(p, backend, queries::q5)), &q5, &format!("q5 {what}"));
            assert_same(&sorted(run(p, backend, queries::q7)), &q7, &format!("q7 {what}"));
        }
    }
}

/// q7 on RocksDB at parallelism 2, stopped after a checkpoint and run again from it: the
/// sources rewind to the checkpointed split positions, the windows restore, and the output
/// committed over both runs is the model's, each result exactly once.
#[test]
fn a_query_resumed_from_a_checkpoint_commits_each_result_once() {
    let expected = q7_model(&input());
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let job = |sink: &CollectSink<HighestBid>| {
        let p = Pipeline::new("nexmark-resume")
            .parallelism(2)
            .state_dir(dir.path().join("state"))
            .checkpoint_storage(dir.path().join("checkpoints"))
            .checkpoint_interval(std::time::Duration::from_millis(50));
        let source = NexmarkSource::new(query_config()).bounded(QUERY_EVENTS).splits(2);
        queries::q7(&p.source("nexmark", source)).sink("out", sink.clone());
        p
    };
    let first = job(&sink).start().unwrap();
    while first.progress().last_checkpoint.is_none() && !first.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.cancel();
    assert!(
        first.join().unwrap().cancelled,
        "the first run stops before its input ends"
    );
    let second = job(&sink).run().unwrap();
    assert!(
        second.restored_from.is_some(),
        "the second run starts from a checkpoint"
    );
    assert_same(&sorted(sink.records()), &expected, "q7 over two runs");
}
