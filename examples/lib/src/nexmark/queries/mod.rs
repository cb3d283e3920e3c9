//! The Nexmark queries of Flink's Nexmark suite on Weir's Rust API, with the semantics of the
//! published Flink Nexmark SQL (the reference most engines publish figures against). Shared by
//! the `nexmark` example, `benches/nexmark.rs` and the integration tests.
//!
//! q0, q1, q2, q5 and q7 are in this file; the others by family: [`projections`] (q13, q14,
//! q21, q22), [`joins`] (q3, q20), [`auctions`] (q4, q6, q9: winning bids), [`windowed`] (q8,
//! q11, q12), [`statistics`] (q15, q16, q17) and [`ranking`] (q18, q19). q10 is not
//! implemented: it only writes the bids into a file system partitioned by day and minute
//! (Flink's `filesystem` connector with partition commits), so what it measures is that
//! external file system; its projection is q14's and q16's date formatting.
//!
//! Event time is each event's `date_time`; the event-time queries take watermarks
//! [`WATERMARK_DELAY`] behind the newest event, as Flink's Nexmark table does.
//!
//! # Results that SQL updates
//! Where Flink's SQL produces an updating result (a join's aggregate, a top-N, a
//! deduplication, an unbounded `GROUP BY`), the query emits the changes as an upsert stream:
//! each output row replaces the previous row of the same key (named on each result type).
//! Where the SQL's result only exists once an auction has closed (q4, q6, q9), the query emits
//! it when the watermark reaches the auction's `expires`, as Beam's Nexmark does; at the end of
//! a bounded input every open auction closes, so the final results are the SQL's.

pub mod auctions;
pub mod joins;
pub mod projections;
pub mod ranking;
pub mod side_input;
pub mod statistics;
mod time_order;
pub mod windowed;

pub use auctions::{q4, q6, q9, AuctionWinner, CategoryAverage, SellerAverage};
pub use joins::{q20, q3, AuctionBid, LocalItem};
pub use projections::{q13, q14, q21, q22, BidChannelId, BidDirectories, BidSideInput, BidTimeType, ClassifiedBid};
pub use ranking::{q18, q19, RankedBid};
pub use side_input::SideInput;
pub use statistics::{q15, q16, q17, AuctionDayStats, BidStats, ChannelDayStats, DayStats};
pub use windowed::{q11, q12, q8, BidderSession, BidderWindow, NewUser};

use serde::{Deserialize, Serialize};
use std::sync::Arc;
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
    /// Local item suggestion: sellers in OR, ID or CA of auctions in category 10.
    Q3,
    /// Average winning price per category.
    Q4,
    /// Hot items: per 10 s window sliding every 2 s, the auctions with the most bids.
    Q5,
    /// Average selling price of each seller's last closed auctions.
    Q6,
    /// Highest bid: per 10 s tumbling window, the bids with the highest price.
    Q7,
    /// Monitor new users: persons who opened an auction in the 10 s window they joined in.
    Q8,
    /// Winning bids: each auction with its winning bid.
    Q9,
    /// User sessions: bids per bidder and session (10 s gap).
    Q11,
    /// Processing-time windows: bids per bidder and 10 s of processing time.
    Q12,
    /// Bounded side input join: each bid with its side-input value.
    Q13,
    /// Calculation: bids in a price range, classified by time of day, with a UDF.
    Q14,
    /// Bidding statistics per day, with distinct counts.
    Q15,
    /// Channel statistics per day, with distinct counts.
    Q16,
    /// Auction statistics per day.
    Q17,
    /// The last bid of each bidder on each auction (deduplication).
    Q18,
    /// The 10 highest bids of each auction (top-N).
    Q19,
    /// Bids joined with their auction, in category 10.
    Q20,
    /// Channel id of each bid (regular expression).
    Q21,
    /// Directories of each bid's URL.
    Q22,
}

impl Query {
    /// Every implemented query, in order (q10 is not: see the [module docs](self)).
    pub const ALL: [Query; 22] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q6,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
        Query::Q12,
        Query::Q13,
        Query::Q14,
        Query::Q15,
        Query::Q16,
        Query::Q17,
        Query::Q18,
        Query::Q19,
        Query::Q20,
        Query::Q21,
        Query::Q22,
    ];

    /// The query's name, `q0` … `q22`.
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q6 => "q6",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q9 => "q9",
            Query::Q11 => "q11",
            Query::Q12 => "q12",
            Query::Q13 => "q13",
            Query::Q14 => "q14",
            Query::Q15 => "q15",
            Query::Q16 => "q16",
            Query::Q17 => "q17",
            Query::Q18 => "q18",
            Query::Q19 => "q19",
            Query::Q20 => "q20",
            Query::Q21 => "q21",
            Query::Q22 => "q22",
        }
    }

    /// Whether the query keeps no state (no keyed step, no window).
    pub fn is_stateless(self) -> bool {
        matches!(
            self,
            Query::Q0 | Query::Q1 | Query::Q2 | Query::Q13 | Query::Q14 | Query::Q21 | Query::Q22
        )
    }

    /// Adds the query to `events` and sends its results to a discarding sink (for throughput);
    /// q13 joins Flink's side input of 10,000 rows ([`SideInput::generated`]).
    pub fn discard(self, events: &Stream<Event>) {
        self.discard_with(
            events,
            &Arc::new(SideInput::generated(side_input::FLINK_SIDE_INPUT_ROWS)),
        );
    }

    /// [`discard`](Self::discard) with q13's side input given.
    pub fn discard_with(self, events: &Stream<Event>, side_input: &Arc<SideInput>) {
        fn to<T: Data>(s: Stream<T>) {
            s.sink("sink", DiscardSink::new());
        }
        match self {
            Query::Q0 => to(q0(events)),
            Query::Q1 => to(q1(events)),
            Query::Q2 => to(q2(events)),
            Query::Q3 => to(q3(events)),
            Query::Q4 => to(q4(events)),
            Query::Q5 => to(q5(events)),
            Query::Q6 => to(q6(events)),
            Query::Q7 => to(q7(events)),
            Query::Q8 => to(q8(events)),
            Query::Q9 => to(q9(events)),
            Query::Q11 => to(q11(events)),
            Query::Q12 => to(q12(events)),
            Query::Q13 => to(q13(events, side_input.clone())),
            Query::Q14 => to(q14(events)),
            Query::Q15 => to(q15(events)),
            Query::Q16 => to(q16(events)),
            Query::Q17 => to(q17(events)),
            Query::Q18 => to(q18(events)),
            Query::Q19 => to(q19(events)),
            Query::Q20 => to(q20(events)),
            Query::Q21 => to(q21(events)),
            Query::Q22 => to(q22(events)),
        }
    }
}

impl std::str::FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                format!("unknown query {s:?}: expected one of {}", names.join(", "))
            })
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

/// Every event, with event-time watermarks [`WATERMARK_DELAY`] behind the newest. Assigned
/// before the events are split by type, so that every source split advances event time even
/// if it holds no event of some type (with 4 splits, two of them never hold a person).
fn timed_events(events: &Stream<Event>) -> Stream<Event> {
    events.assign_timestamps_and_watermarks(
        WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY).with_timestamp_assigner(Event::date_time),
    )
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
