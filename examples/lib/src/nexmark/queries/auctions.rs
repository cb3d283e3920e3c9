//! The queries over closed auctions: q9 (each auction's winning bid), q4 (the average winning
//! price per category) and q6 (the average selling price of each seller's latest auctions).
//!
//! All three start from the SQL's join `auction A, bid B WHERE A.id = B.auction AND
//! B.dateTime BETWEEN A.dateTime AND A.expires` and the highest bid per auction. A bid on an
//! auction can only count until the auction expires, so the winner is final once the watermark
//! reaches `expires`: the join emits it then ([`AuctionWinner`], at event time `expires`), as
//! Beam's Nexmark does, instead of updating a provisional winner with every bid. At the end of
//! a bounded input the final watermark closes every auction, so the results are the SQL's.
//!
//! Ties: the highest price wins, then the earliest bid (q9's `ORDER BY B.price DESC,
//! B.dateTime ASC`), then the smallest bid in [`Bid`]'s order, so the winner never depends on
//! arrival order.
//!
//! # Checkpointing
//! The auction, its best bid so far, bids waiting for their auction and each auction's closing
//! timer are keyed state; q4 and q6 order the closed auctions by event time
//! ([`InTimeOrder`](super::time_order::InTimeOrder)), so their running results are the same
//! sequence after a restore.

use super::time_order::InTimeOrder;
use super::timed_events;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use weir_engine::data::Timestamp;
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Auction, Bid, Event};

/// q6 averages over the current closed auction and this many before it (`ROWS BETWEEN 10
/// PRECEDING AND CURRENT ROW`: 11 rows).
pub const Q6_PRECEDING: usize = 10;

/// q9's result: an auction and its winning bid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionWinner {
    /// The auction.
    pub auction: Auction,
    /// Its highest bid placed while it was open.
    pub bid: Bid,
}

/// Whether `a` beats `b` as an auction's winning bid.
pub fn beats(a: &Bid, b: &Bid) -> bool {
    (Reverse(a.price), a.date_time, a) < (Reverse(b.price), b.date_time, b)
}

/// The join of auctions (first input) and bids (second), keyed by auction id, emitting each
/// auction's winning bid when the watermark reaches its `expires`.
#[derive(Clone)]
struct WinningBids;

impl WinningBids {
    /// Keeps `bid` if it was placed while `auction` was open and beats the best so far.
    fn offer(auction: &Auction, bid: Bid, ctx: &mut KeyedContext<'_, u64, AuctionWinner>) -> Result<()> {
        if bid.date_time < auction.date_time || bid.date_time > auction.expires {
            return Ok(());
        }
        let mut best = ctx.value_state::<Bid>("best-bid");
        match best.get()? {
            Some(b) if !beats(&bid, &b) => Ok(()),
            _ => best.set(&bid),
        }
    }
}

impl KeyedCoProcess<u64, Auction, Bid> for WinningBids {
    type Out = AuctionWinner;

    fn process_first(&mut self, auction: Auction, ctx: &mut KeyedContext<'_, u64, AuctionWinner>) -> Result<()> {
        let waiting = ctx.list_state::<Bid>("waiting-bids").get()?;
        if !waiting.is_empty() {
            ctx.list_state::<Bid>("waiting-bids").clear()?;
        }
        for bid in waiting {
            Self::offer(&auction, bid, ctx)?;
        }
        ctx.register_event_time_timer(auction.expires)?;
        ctx.value_state("auction").set(&auction)
    }

    fn process_second(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, u64, AuctionWinner>) -> Result<()> {
        if let Some(auction) = ctx.value_state::<Auction>("auction").get()? {
            return Self::offer(&auction, bid, ctx);
        }
        if ctx.value_state::<Timestamp>("closed-at").get()?.is_some() {
            // Placed after the auction closed: it cannot win (a bid placed before would
            // have arrived before the watermark closed the auction).
            return Ok(());
        }
        ctx.list_state("waiting-bids").add(&bid)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, AuctionWinner>) -> Result<()> {
        let Some(auction) = ctx.value_state::<Auction>("auction").get()? else {
            return Ok(());
        };
        if let Some(bid) = ctx.value_state::<Bid>("best-bid").get()? {
            ctx.emit_at(AuctionWinner { auction, bid }, timer.time);
        }
        ctx.value_state::<Auction>("auction").clear()?;
        ctx.value_state::<Bid>("best-bid").clear()?;
        ctx.value_state("closed-at").set(&timer.time)
    }
}

/// Each closed auction with a bid and its winning bid, at event time `expires`.
fn winning_bids(events: &Stream<Event>, q: &str) -> Stream<AuctionWinner> {
    let events = timed_events(events);
    let auctions = events.flat_map(&format!("{q}.auctions"), Event::into_auction);
    let bids = events.flat_map(&format!("{q}.bids"), Event::into_bid);
    auctions
        .connect(&bids)
        .key_by(&format!("{q}.by-auction"), |a: &Auction| a.id, |b: &Bid| b.auction)
        .process(&format!("{q}.winning-bids"), WinningBids)
}

/// q9, winning bids: `SELECT A.*, B.auction, B.bidder, B.price, B.dateTime, B.extra FROM
/// (SELECT A.*, B.*, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime
/// ASC) AS rownum FROM auction A, bid B WHERE A.id = B.auction AND B.dateTime BETWEEN
/// A.dateTime AND A.expires) WHERE rownum <= 1`: one result per auction that received a bid
/// while open, when it closes.
pub fn q9(events: &Stream<Event>) -> Stream<AuctionWinner> {
    winning_bids(events, "q9")
}

/// A closed auction's final price, as q4 and q6 fold them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Sold {
    /// The auction (orders auctions closing at the same time).
    auction: u64,
    /// The category (q4) or seller (q6).
    group: u64,
    /// The winning price.
    price: u64,
}

/// q4's result: a category's average winning price so far (an upsert keyed by `category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CategoryAverage {
    /// The category.
    pub category: u64,
    /// The average winning price of its closed auctions, in cents, rounded down (`AVG` of a
    /// `BIGINT`).
    pub average: u64,
}

/// q4, average price for a category: `SELECT Q.category, AVG(Q.final) FROM (SELECT
/// MAX(B.price) AS final, A.category FROM auction A, bid B WHERE A.id = B.auction AND
/// B.dateTime BETWEEN A.dateTime AND A.expires GROUP BY A.id, A.category) Q GROUP BY
/// Q.category`.
///
/// Emits the category's new average each time one of its auctions closes, in the order the
/// auctions close (`expires`, then id): the same sequence at any parallelism.
pub fn q4(events: &Stream<Event>) -> Stream<CategoryAverage> {
    winning_bids(events, "q4")
        .map("q4.final-prices", |w| Sold {
            auction: w.auction.id,
            group: w.auction.category,
            price: w.bid.price,
        })
        .key_by("q4.by-category", |s: &Sold| s.group)
        .process(
            "q4.average",
            InTimeOrder::new(
                |(sum, count): &mut (u64, u64), s: Sold, out: &mut Vec<CategoryAverage>| {
                    *sum += s.price;
                    *count += 1;
                    out.push(CategoryAverage {
                        category: s.group,
                        average: *sum / *count,
                    });
                },
            ),
        )
}

/// q6's result: a seller's average selling price over their latest closed auctions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SellerAverage {
    /// The seller.
    pub seller: u64,
    /// The average winning price of the auction that just closed and the
    /// [`Q6_PRECEDING`] before it, in cents, rounded down.
    pub average: u64,
}

/// q6, average selling price by seller: `SELECT Q.seller, AVG(Q.price) OVER (PARTITION BY
/// Q.seller ORDER BY Q.dateTime ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) FROM (... the
/// winning bid of each auction ...) Q`.
///
/// One result per closed auction with a bid. The rows are ordered by when the auction closes
/// (`expires`, then id), where the SQL orders by the winning bid's time: Flink cannot run this
/// query (FLINK-19059: an `OVER` window over an updating input), and an order by closing time
/// is final when the auction closes, as Beam's q6 has it.
pub fn q6(events: &Stream<Event>) -> Stream<SellerAverage> {
    winning_bids(events, "q6")
        .map("q6.final-prices", |w| Sold {
            auction: w.auction.id,
            group: w.auction.seller,
            price: w.bid.price,
        })
        .key_by("q6.by-seller", |s: &Sold| s.group)
        .process(
            "q6.average",
            InTimeOrder::new(|latest: &mut Vec<u64>, s: Sold, out: &mut Vec<SellerAverage>| {
                latest.push(s.price);
                if latest.len() > Q6_PRECEDING + 1 {
                    latest.remove(0);
                }
                out.push(SellerAverage {
                    seller: s.group,
                    average: latest.iter().sum::<u64>() / latest.len() as u64,
                });
            }),
        )
}
