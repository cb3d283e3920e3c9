//! Deduplication and top-N: q18 (the last bid of each bidder on each auction) and q19 (the 10
//! highest bids of each auction).
//!
//! Both emit upserts: q18 a bid whenever it becomes its `(bidder, auction)`'s latest, q19 a
//! `(auction, rank_number)` row whenever the bid at that rank changes. The last row of each key
//! is the SQL's result.
//!
//! # Checkpointing
//! The latest bid and the top 10 are keyed state: a restored job ranks the replayed bids
//! against the state of the checkpoint.

use super::auctions::beats;
use super::bids;
use serde::{Deserialize, Serialize};
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Bid, Event};

/// q19 keeps this many bids per auction.
pub const Q19_TOP: usize = 10;

/// Keeps the latest bid per key; emits each bid that becomes it.
#[derive(Clone)]
struct KeepLast;

impl KeyedProcess<(u64, u64), Bid> for KeepLast {
    type Out = Bid;

    fn process(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, (u64, u64), Bid>) -> Result<()> {
        let mut latest = ctx.value_state::<Bid>("latest");
        if let Some(l) = latest.get()? {
            if (bid.date_time, &bid) < (l.date_time, &l) {
                return Ok(());
            }
        }
        latest.set(&bid)?;
        ctx.emit(bid);
        Ok(())
    }
}

/// q18, find the last bid: `SELECT auction, bidder, price, channel, url, dateTime, extra FROM
/// (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS
/// rank_number FROM bid) WHERE rank_number <= 1`.
///
/// An upsert stream keyed by `(bidder, auction)`: a bid is emitted when it is at least as late
/// as the key's latest so far (Flink's keep-last-row deduplication on event time, which also
/// replaces on equal times); bids at the same time are ordered by [`Bid`]'s order, so the last
/// row does not depend on arrival order.
pub fn q18(events: &Stream<Event>) -> Stream<Bid> {
    bids(events, "q18.bids")
        .key_by("q18.by-bidder-and-auction", |b: &Bid| (b.bidder, b.auction))
        .process("q18.keep-last", KeepLast)
}

/// q19's result: the bid at a rank of its auction's top 10 (an upsert keyed by `(bid.auction,
/// rank_number)`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RankedBid {
    /// The bid.
    pub bid: Bid,
    /// Its rank, 1 for the highest price.
    pub rank_number: u64,
}

/// Keeps each auction's 10 best bids; emits the ranks that change.
#[derive(Clone)]
struct TopBids;

impl KeyedProcess<u64, Bid> for TopBids {
    type Out = RankedBid;

    fn process(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, u64, RankedBid>) -> Result<()> {
        let mut state = ctx.value_state::<Vec<Bid>>("top");
        let mut top = state.get()?.unwrap_or_default();
        let at = top.iter().position(|b| beats(&bid, b)).unwrap_or(top.len());
        if at >= Q19_TOP {
            return Ok(());
        }
        top.insert(at, bid);
        top.truncate(Q19_TOP);
        state.set(&top)?;
        for (i, b) in top.into_iter().enumerate().skip(at) {
            ctx.emit(RankedBid {
                bid: b,
                rank_number: i as u64 + 1,
            });
        }
        Ok(())
    }
}

/// q19, auction top-10 price: `SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY
/// auction ORDER BY price DESC) AS rank_number FROM bid) WHERE rank_number <= 10`.
///
/// Bids of equal price are ranked as q9 ranks them (earlier first, then by [`Bid`]'s order),
/// so the ranking does not depend on arrival order. A new bid at rank `r` emits the rows of
/// ranks `r` to the last, which it shifted down.
pub fn q19(events: &Stream<Event>) -> Stream<RankedBid> {
    bids(events, "q19.bids")
        .key_by("q19.by-auction", |b: &Bid| b.auction)
        .process("q19.top-10", TopBids)
}
