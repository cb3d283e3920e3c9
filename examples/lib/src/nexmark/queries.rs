//! Nexmark queries q0, q1, q2, q5 and q7 on Weir's Rust API, in the form of the published
//! Flink Nexmark SQL (the reference most engines publish figures against). Shared by the
//! `nexmark` example, `benches/nexmark.rs` and `tests/nexmark.rs`.
//!
//! Event time is each event's `date_time`; the windowed queries take watermarks
//! [`WATERMARK_DELAY`] behind the newest bid, as Flink's Nexmark table does.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Bid, Event};

/// How far watermarks trail the newest event (Flink Nexmark: `dateTime - INTERVAL '4' SECOND`).
pub const WATERMARK_DELAY: Duration = Duration::from_secs(4);
/// q1's exchange rate: euros per dollar.
pub const EUROS_PER_DOLLAR_PER_MILLE: u64 = 908;
/// q2 keeps bids on auctions whose id is a multiple of this.
pub const Q2_AUCTION_MODULUS: u64 = 123;
/// q5's sliding window: its size ...
pub const Q5_WINDOW: Duration = Duration::from_secs(10);
/// ... and its slide.
pub const Q5_SLIDE: Duration = Duration::from_secs(2);
/// q7's tumbling window.
pub const Q7_WINDOW: Duration = Duration::from_secs(10);

/// One of the implemented queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Query {
    /// Pass-through: every event, unchanged (measures the engine's own cost).
    Q0,
    /// Currency conversion: every bid with its price in euros.
    Q1,
    /// Selection: auction and price of bids on auctions with `id % 123 == 0`.
    Q2,
    /// Hot items: per 10 s window sliding every 2 s, the auctions with the most bids.
    Q5,
    /// Highest bid: per 10 s tumbling window, the bids with the highest price.
    Q7,
}

impl Query {
    /// Every implemented query, in order.
    pub const ALL: [Query; 5] = [Query::Q0, Query::Q1, Query::Q2, Query::Q5, Query::Q7];

    /// The query's name, `q0` … `q7`.
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
        }
    }

    /// Whether the query keeps no state (no keyed step, no window).
    pub fn is_stateless(self) -> bool {
        matches!(self, Query::Q0 | Query::Q1 | Query::Q2)
    }

    /// Adds the query to `events` and sends its results to a discarding sink (for throughput).
    pub fn discard(self, events: &Stream<Event>) {
        match self {
            Query::Q0 => q0(events).sink("sink", DiscardSink::new()),
            Query::Q1 => q1(events).sink("sink", DiscardSink::new()),
            Query::Q2 => q2(events).sink("sink", DiscardSink::new()),
            Query::Q5 => q5(events).sink("sink", DiscardSink::new()),
            Query::Q7 => q7(events).sink("sink", DiscardSink::new()),
        };
    }
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown query {s:?}: expected one of q0, q1, q2, q5, q7"))
    }
}

/// q2's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionPrice {
    /// The auction.
    pub auction: u64,
    /// The bid's price, in cents.
    pub price: u64,
}

/// q5's result: an auction with the most bids in a window (every auction tied for the most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HotItem {
    /// The sliding window.
    pub window: TimeWindow,
    /// The auction.
    pub auction: u64,
    /// Its number of bids in the window.
    pub bids: u64,
}

/// q7's result: a bid with the highest price in a window (every bid tied for the highest).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HighestBid {
    /// The tumbling window.
    pub window: TimeWindow,
    /// The bid.
    pub bid: Bid,
}

/// The bids of the stream.
fn bids(events: &Stream<Event>, name: &str) -> Stream<Bid> {
    events.flat_map(name, Event::into_bid)
}

/// The bids with event-time watermarks [`WATERMARK_DELAY`] behind the newest.
fn timed_bids(events: &Stream<Event>, name: &str) -> Stream<Bid> {
    bids(events, name).assign_timestamps_and_watermarks(
        WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY).with_timestamp_assigner(|b: &Bid| b.date_time),
    )
}

/// q0, pass-through: `SELECT * FROM events` (Beam's q0 passes every event; Flink's, every bid).
pub fn q0(events: &Stream<Event>) -> Stream<Event> {
    events.map("q0.pass-through", |e| e)
}

/// q1, currency conversion:
/// `SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid`
/// (in integer cents, rounded down).
pub fn q1(events: &Stream<Event>) -> Stream<Bid> {
    bids(events, "q1.bids").map("q1.dollars-to-euros", |b| Bid {
        price: b.price * EUROS_PER_DOLLAR_PER_MILLE / 1000,
        ..b
    })
}

/// q2, selection: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: &Stream<Event>) -> Stream<AuctionPrice> {
    events.flat_map("q2.select", |e| match e {
        Event::Bid(b) if b.auction % Q2_AUCTION_MODULUS == 0 => Some(AuctionPrice {
            auction: b.auction,
            price: b.price,
        }),
        _ => None,
    })
}

/// Counts records.
struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// The largest count of a window and every auction that has it.
struct MostBids;

impl AggregateFunction<Windowed<u64, u64>> for MostBids {
    type Acc = (u64, Vec<u64>);
    type Out = (u64, Vec<u64>);
    fn create(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, w: &Windowed<u64, u64>) {
        if w.value > acc.0 {
            *acc = (w.value, vec![w.key]);
        } else if w.value == acc.0 {
            acc.1.push(w.key);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        let mut auctions = acc.1.clone();
        auctions.sort_unstable();
        (acc.0, auctions)
    }
}

/// q5, hot items: per sliding window of 10 s every 2 s, the auctions with the most bids
/// (Flink's q5: count per auction and window, then keep the counts `>=` the window's maximum).
///
/// Two steps: bids keyed by auction are counted per window; the counts, keyed by window, are
/// reduced to the largest and the auctions that have it. Both steps are event-time windows
/// that fire on the same watermark (a count carries its window's last timestamp, which lies in
/// the second step's 2 s window ending with it).
pub fn q5(events: &Stream<Event>) -> Stream<HotItem> {
    timed_bids(events, "q5.bids")
        .key_by("q5.by-auction", |b: &Bid| b.auction)
        .window(SlidingEventTime::of(Q5_WINDOW, Q5_SLIDE))
        .aggregate("q5.bids-per-auction", Count)
        .key_by("q5.by-window", |c: &Windowed<u64, u64>| c.window)
        .window(TumblingEventTime::of(Q5_SLIDE))
        .aggregate("q5.most-bids", MostBids)
        .flat_map("q5.items", |w: Windowed<TimeWindow, (u64, Vec<u64>)>| {
            let (bids, auctions) = w.value;
            auctions.into_iter().map(move |auction| HotItem {
                window: w.key,
                auction,
                bids,
            })
        })
}

/// Keeps the bids with the highest price (all of them when tied).
fn keep_highest(acc: &mut Vec<Bid>, bids: impl IntoIterator<Item = Bid>) {
    for b in bids {
        match acc.first().map(|top| top.price) {
            Some(p) if b.price < p => {}
            Some(p) if b.price == p => acc.push(b),
            _ => *acc = vec![b],
        }
    }
}

/// The highest-priced bids of one auction in a window.
struct HighestOfAuction;

impl AggregateFunction<Bid> for HighestOfAuction {
    type Acc = Vec<Bid>;
    type Out = Vec<Bid>;
    fn create(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<Bid>, b: &Bid) {
        keep_highest(acc, [b.clone()]);
    }
    fn merge(&self, acc: &mut Vec<Bid>, other: Vec<Bid>) {
        keep_highest(acc, other);
    }
    fn result(&self, acc: &Vec<Bid>) -> Vec<Bid> {
        acc.clone()
    }
}

/// The highest-priced bids over the per-auction highest ones of a window.
struct HighestOfWindow;

impl AggregateFunction<Windowed<u64, Vec<Bid>>> for HighestOfWindow {
    type Acc = Vec<Bid>;
    type Out = Vec<Bid>;
    fn create(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<Bid>, w: &Windowed<u64, Vec<Bid>>) {
        keep_highest(acc, w.value.iter().cloned());
    }
    fn merge(&self, acc: &mut Vec<Bid>, other: Vec<Bid>) {
        keep_highest(acc, other);
    }
    fn result(&self, acc: &Vec<Bid>) -> Vec<Bid> {
        acc.clone()
    }
}

/// q7, highest bid: per tumbling window of 10 s, the bids with the highest price (Flink's q7:
/// the window's `MAX(price)` joined back to its bids).
///
/// Two steps, like a two-phase aggregation: the highest bids per auction and window, then,
/// keyed by window, the highest of those.
pub fn q7(events: &Stream<Event>) -> Stream<HighestBid> {
    timed_bids(events, "q7.bids")
        .key_by("q7.by-auction", |b: &Bid| b.auction)
        .window(TumblingEventTime::of(Q7_WINDOW))
        .aggregate("q7.highest-per-auction", HighestOfAuction)
        .key_by("q7.by-window", |w: &Windowed<u64, Vec<Bid>>| w.window)
        .window(TumblingEventTime::of(Q7_WINDOW))
        .aggregate("q7.highest", HighestOfWindow)
        .flat_map("q7.bids-out", |w: Windowed<TimeWindow, Vec<Bid>>| {
            let window = w.key;
            w.value.into_iter().map(move |bid| HighestBid { window, bid })
        })
}
