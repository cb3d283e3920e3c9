//! The unbounded `GROUP BY` reports: q15 (bids per day), q16 (bids per channel and day) and
//! q17 (bids per auction and day), with counts per price band and, in q15 and q16, distinct
//! bidders and auctions.
//!
//! Each bid updates its group and emits the group's new row: an upsert stream keyed by the
//! group (Flink's changelog of the aggregate without mini-batches). The last row of a group
//! is its SQL result; `total_bids` counts the group's bids, so a group's rows carry `1, 2, 3,
//! ...` in order, whatever the parallelism.
//!
//! # Checkpointing
//! The counters and the sets of bidders and auctions seen are keyed state: a restored job
//! continues each group from its counts at the checkpoint.

use super::bids;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use weir_engine::data::Timestamp;
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Bid, Event};
use weir_engine::wall_clock::utc_timestamp;

/// The price bands of the reports, in cents: rank 1 below this ...
pub const RANK1_BELOW: u64 = 10_000;
/// ... rank 2 from [`RANK1_BELOW`] to below this, rank 3 from here on.
pub const RANK2_BELOW: u64 = 1_000_000;

/// The price band of `price`: 1, 2 or 3.
pub fn rank(price: u64) -> usize {
    if price < RANK1_BELOW {
        1
    } else if price < RANK2_BELOW {
        2
    } else {
        3
    }
}

/// `DATE_FORMAT(t, 'yyyy-MM-dd')` in UTC.
pub fn day(t: Timestamp) -> String {
    utc_timestamp(t.max(0) as u64)[..10].to_string()
}

/// `DATE_FORMAT(t, 'HH:mm')` in UTC.
pub fn minute(t: Timestamp) -> String {
    utc_timestamp(t.max(0) as u64)[11..16].to_string()
}

/// The day number of `t` (days since the epoch, UTC): the grouping key for `day(t)`.
fn day_number(t: Timestamp) -> i64 {
    t.div_euclid(86_400_000)
}

/// The counts of q15 and q16: bids, distinct bidders and distinct auctions, in total and per
/// price band (index 0 is the total, 1 to 3 the bands of [`rank`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidStats {
    /// `count(*)`, then `count(*) filter (where <band>)`.
    pub bids: [u64; 4],
    /// `count(distinct bidder)`, then per band.
    pub bidders: [u64; 4],
    /// `count(distinct auction)`, then per band.
    pub auctions: [u64; 4],
}

/// q15's result, an upsert keyed by `day`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DayStats {
    /// `yyyy-MM-dd`.
    pub day: String,
    /// The day's counts so far.
    pub stats: BidStats,
}

/// q16's result, an upsert keyed by `(channel, day)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelDayStats {
    /// The channel.
    pub channel: String,
    /// `yyyy-MM-dd`.
    pub day: String,
    /// `max(DATE_FORMAT(dateTime, 'HH:mm'))`: the latest minute with a bid.
    pub minute: String,
    /// The counts so far.
    pub stats: BidStats,
}

/// Builds a report's row from its key, counts and latest bid time.
type Row<K, O> = Arc<dyn Fn(&K, &BidStats, Timestamp) -> O + Send + Sync>;

/// Counts bids per key with distinct bidders and auctions, emitting the key's row per bid.
struct DistinctCounts<K, O> {
    row: Row<K, O>,
}

impl<K, O> Clone for DistinctCounts<K, O> {
    fn clone(&self) -> Self {
        DistinctCounts { row: self.row.clone() }
    }
}

/// Marks `id` as seen in `band` (bit 0: at all); returns which of the two are new.
fn first_sighting(seen: &mut MapState<'_, u64, u8>, id: u64, band: usize) -> Result<(bool, bool)> {
    let old = seen.get(&id)?.unwrap_or(0);
    let new = old | 1 | (1 << band);
    if new != old {
        seen.put(&id, &new)?;
    }
    Ok((old & 1 == 0, old & (1 << band) == 0))
}

impl<K: Key, O: Data> KeyedProcess<K, Bid> for DistinctCounts<K, O> {
    type Out = O;

    fn process(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, K, O>) -> Result<()> {
        let band = rank(bid.price);
        let (mut stats, latest) = ctx
            .value_state::<(BidStats, Timestamp)>("counts")
            .get()?
            .unwrap_or((BidStats::default(), Timestamp::MIN));
        stats.bids[0] += 1;
        stats.bids[band] += 1;
        let (any, in_band) = first_sighting(&mut ctx.map_state("bidders"), bid.bidder, band)?;
        stats.bidders[0] += u64::from(any);
        stats.bidders[band] += u64::from(in_band);
        let (any, in_band) = first_sighting(&mut ctx.map_state("auctions"), bid.auction, band)?;
        stats.auctions[0] += u64::from(any);
        stats.auctions[band] += u64::from(in_band);
        let latest = latest.max(bid.date_time);
        ctx.value_state("counts").set(&(stats, latest))?;
        let row = (self.row)(ctx.key(), &stats, latest);
        ctx.emit(row);
        Ok(())
    }
}

/// q15, bidding statistics report: `SELECT DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS day,
/// count(*) AS total_bids, count(*) filter (where price < 10000) AS rank1_bids, ...,
/// count(distinct bidder) AS total_bidders, ..., count(distinct auction) AS total_auctions,
/// ... FROM bid GROUP BY DATE_FORMAT(dateTime, 'yyyy-MM-dd')`.
pub fn q15(events: &Stream<Event>) -> Stream<DayStats> {
    bids(events, "q15.bids")
        .key_by("q15.by-day", |b: &Bid| day_number(b.date_time))
        .process(
            "q15.counts",
            DistinctCounts {
                row: Arc::new(|_: &i64, stats: &BidStats, latest: Timestamp| DayStats {
                    day: day(latest),
                    stats: *stats,
                }),
            },
        )
}

/// q16, channel statistics report: q15's counts per `(channel, day)`, with `max(DATE_FORMAT(
/// dateTime, 'HH:mm')) AS minute`.
pub fn q16(events: &Stream<Event>) -> Stream<ChannelDayStats> {
    bids(events, "q16.bids")
        .key_by("q16.by-channel-and-day", |b: &Bid| {
            (b.channel.clone(), day_number(b.date_time))
        })
        .process(
            "q16.counts",
            DistinctCounts {
                row: Arc::new(
                    |(channel, _): &(String, i64), stats: &BidStats, latest: Timestamp| ChannelDayStats {
                        channel: channel.clone(),
                        day: day(latest),
                        minute: minute(latest),
                        stats: *stats,
                    },
                ),
            },
        )
}

/// q17's result, an upsert keyed by `(auction, day)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionDayStats {
    /// The auction.
    pub auction: u64,
    /// `yyyy-MM-dd`.
    pub day: String,
    /// `count(*)`, then `count(*) filter (where <band>)` for the bands of [`rank`].
    pub bids: [u64; 4],
    /// `min(price)`.
    pub min_price: u64,
    /// `max(price)`.
    pub max_price: u64,
    /// `avg(price)`, rounded down (`AVG` of a `BIGINT`).
    pub avg_price: u64,
    /// `sum(price)`.
    pub sum_price: u64,
}

/// Counts, minimum, maximum and sum of an auction's bids of one day.
#[derive(Clone)]
struct AuctionCounts;

impl KeyedProcess<(u64, i64), Bid> for AuctionCounts {
    type Out = AuctionDayStats;

    fn process(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, (u64, i64), AuctionDayStats>) -> Result<()> {
        let mut row = match ctx.value_state::<AuctionDayStats>("row").get()? {
            Some(row) => row,
            None => AuctionDayStats {
                auction: bid.auction,
                day: day(bid.date_time),
                bids: [0; 4],
                min_price: u64::MAX,
                max_price: 0,
                avg_price: 0,
                sum_price: 0,
            },
        };
        row.bids[0] += 1;
        row.bids[rank(bid.price)] += 1;
        row.min_price = row.min_price.min(bid.price);
        row.max_price = row.max_price.max(bid.price);
        row.sum_price += bid.price;
        row.avg_price = row.sum_price / row.bids[0];
        ctx.value_state("row").set(&row)?;
        ctx.emit(row);
        Ok(())
    }
}

/// q17, auction statistics report: `SELECT auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS
/// day, count(*) AS total_bids, count(*) filter (where price < 10000) AS rank1_bids, ...,
/// min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS
/// sum_price FROM bid GROUP BY auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd')`.
pub fn q17(events: &Stream<Event>) -> Stream<AuctionDayStats> {
    bids(events, "q17.bids")
        .key_by("q17.by-auction-and-day", |b: &Bid| (b.auction, day_number(b.date_time)))
        .process("q17.counts", AuctionCounts)
}
