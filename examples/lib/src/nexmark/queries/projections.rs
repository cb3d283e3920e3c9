//! The stateless bid queries beyond q0–q2: q13 (a join with a bounded side input), q14
//! (projection, filter and a user function), q21 (a regular expression) and q22 (splitting the
//! URL). Each maps every bid alone, so after a failure the replayed bids produce exactly the
//! output that was not committed.

use super::side_input::SideInput;
use super::{bids, EUROS_PER_DOLLAR_PER_MILLE};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};
use weir_engine::data::Timestamp;
use weir_engine::prelude::*;
use weir_engine::source::nexmark::Event;

/// q13 joins a bid with the side-input row `auction % 10,000` (the SQL's `mod(B.auction, 10000)`).
pub const Q13_KEY_MODULUS: u64 = 10_000;
/// q14 keeps bids whose price in euros is above this (in cents: the SQL's `0.908 * price > 1000000`) ...
pub const Q14_MIN_EUROS: u64 = 1_000_000;
/// ... and below this (`0.908 * price < 50000000`).
pub const Q14_MAX_EUROS: u64 = 50_000_000;

/// q13's result: a bid with the value of its side-input row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidSideInput {
    /// The auction.
    pub auction: u64,
    /// The bidder.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// When the bid was placed.
    pub date_time: Timestamp,
    /// The side input's value for `auction % 10,000`.
    pub value: String,
}

/// q13, bounded side input join:
/// `SELECT B.auction, B.bidder, B.price, B.dateTime, S.value FROM bid B JOIN side_input FOR
/// SYSTEM_TIME AS OF B.p_time AS S ON mod(B.auction, 10000) = S.key`.
///
/// The table never changes while the job runs, so the processing-time lookup reads the same
/// row whenever a bid is processed or replayed; a bid without a row is dropped (inner join).
pub fn q13(events: &Stream<Event>, side_input: Arc<SideInput>) -> Stream<BidSideInput> {
    bids(events, "q13.bids").flat_map("q13.join-side-input", move |b| {
        let value = side_input.get(b.auction % Q13_KEY_MODULUS)?.to_string();
        Some(BidSideInput {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
            value,
        })
    })
}

/// q14's time-of-day class of a bid (by its UTC hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BidTimeType {
    /// 08:00 to 18:59.
    DayTime,
    /// 20:00 to 06:59.
    NightTime,
    /// 07:00 to 07:59 and 19:00 to 19:59.
    OtherTime,
}

impl BidTimeType {
    /// The class of event time `t` (the SQL's `CASE WHEN HOUR(dateTime) ...`, in UTC).
    pub fn of(t: Timestamp) -> Self {
        match t.div_euclid(3_600_000).rem_euclid(24) {
            8..=18 => BidTimeType::DayTime,
            h if h <= 6 || h >= 20 => BidTimeType::NightTime,
            _ => BidTimeType::OtherTime,
        }
    }
}

/// q14's result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClassifiedBid {
    /// The auction.
    pub auction: u64,
    /// The bidder.
    pub bidder: u64,
    /// `0.908 * price` (euro cents) exactly, in thousandths: the SQL's `DECIMAL(23, 3)`.
    pub price_milli: u64,
    /// When in the day the bid was placed.
    pub bid_time_type: BidTimeType,
    /// When the bid was placed.
    pub date_time: Timestamp,
    /// The bid's padding.
    pub extra: String,
    /// How many `c` the padding holds (the user function `count_char(extra, 'c')`).
    pub c_counts: u64,
}

/// q14's user function `count_char(s, c)`: how many bytes of `s` equal `c`.
pub fn count_char(s: &str, c: u8) -> u64 {
    s.bytes().filter(|&b| b == c).count() as u64
}

/// q14, calculation: `SELECT auction, bidder, 0.908 * price AS price, CASE ... END AS
/// bidTimeType, dateTime, extra, count_char(extra, 'c') AS c_counts FROM bid WHERE 0.908 *
/// price > 1000000 AND 0.908 * price < 50000000` (the prices compared exactly, in thousandths).
pub fn q14(events: &Stream<Event>) -> Stream<ClassifiedBid> {
    bids(events, "q14.bids").flat_map("q14.calculate", |b| {
        let price_milli = b.price * EUROS_PER_DOLLAR_PER_MILLE;
        let in_range = price_milli > Q14_MIN_EUROS * 1000 && price_milli < Q14_MAX_EUROS * 1000;
        in_range.then(|| ClassifiedBid {
            auction: b.auction,
            bidder: b.bidder,
            price_milli,
            bid_time_type: BidTimeType::of(b.date_time),
            date_time: b.date_time,
            c_counts: count_char(&b.extra, b'c'),
            extra: b.extra,
        })
    })
}

/// q21's result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidChannelId {
    /// The auction.
    pub auction: u64,
    /// The bidder.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// The channel.
    pub channel: String,
    /// `0` to `3` for the four hot channels, else the URL's `channel_id` parameter.
    pub channel_id: String,
}

/// The SQL's `REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)`.
static CHANNEL_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("(&|^)channel_id=([^&]*)").expect("q21's regular expression"));

/// The channel id of a bid by q21's `CASE`: the hot channels by name (case-insensitive), the
/// others from their URL; `None` where the SQL's `WHERE` drops the bid.
pub fn channel_id(channel: &str, url: &str) -> Option<String> {
    const HOT: [(&str, &str); 4] = [("apple", "0"), ("google", "1"), ("facebook", "2"), ("baidu", "3")];
    if let Some((_, id)) = HOT.iter().find(|(name, _)| channel.eq_ignore_ascii_case(name)) {
        return Some(id.to_string());
    }
    CHANNEL_ID
        .captures(url)
        .and_then(|c| c.get(2))
        .map(|m| m.as_str().to_string())
}

/// q21, channel id extraction: `SELECT auction, bidder, price, channel, CASE WHEN
/// lower(channel) = 'apple' THEN '0' ... ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)',
/// 2) END AS channel_id FROM bid WHERE REGEXP_EXTRACT(...) IS NOT NULL OR lower(channel) IN
/// ('apple', 'google', 'facebook', 'baidu')`.
pub fn q21(events: &Stream<Event>) -> Stream<BidChannelId> {
    bids(events, "q21.bids").flat_map("q21.channel-id", |b| {
        let channel_id = channel_id(&b.channel, &b.url)?;
        Some(BidChannelId {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            channel: b.channel,
            channel_id,
        })
    })
}

/// q22's result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidDirectories {
    /// The auction.
    pub auction: u64,
    /// The bidder.
    pub bidder: u64,
    /// The price, in cents.
    pub price: u64,
    /// The channel.
    pub channel: String,
    /// `SPLIT_INDEX(url, '/', 3)`: the URL's first directory.
    pub dir1: Option<String>,
    /// `SPLIT_INDEX(url, '/', 4)`.
    pub dir2: Option<String>,
    /// `SPLIT_INDEX(url, '/', 5)`.
    pub dir3: Option<String>,
}

/// The SQL's `SPLIT_INDEX(s, '/', i)`: the `i`-th (from 0) part of `s` split at every `/`,
/// `None` past the last.
pub fn split_index(s: &str, i: usize) -> Option<String> {
    s.split('/').nth(i).map(str::to_string)
}

/// q22, URL directories: `SELECT auction, bidder, price, channel, SPLIT_INDEX(url, '/', 3) AS
/// dir1, SPLIT_INDEX(url, '/', 4) AS dir2, SPLIT_INDEX(url, '/', 5) AS dir3 FROM bid`.
pub fn q22(events: &Stream<Event>) -> Stream<BidDirectories> {
    bids(events, "q22.bids").map("q22.split-url", |b| BidDirectories {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price,
        dir1: split_index(&b.url, 3),
        dir2: split_index(&b.url, 4),
        dir3: split_index(&b.url, 5),
        channel: b.channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_functions_follow_the_sql() {
        assert_eq!(BidTimeType::of(0), BidTimeType::NightTime);
        assert_eq!(BidTimeType::of(7 * 3_600_000), BidTimeType::OtherTime);
        assert_eq!(BidTimeType::of(8 * 3_600_000), BidTimeType::DayTime);
        assert_eq!(BidTimeType::of(19 * 3_600_000 - 1), BidTimeType::DayTime);
        assert_eq!(BidTimeType::of(19 * 3_600_000), BidTimeType::OtherTime);
        assert_eq!(BidTimeType::of(20 * 3_600_000), BidTimeType::NightTime);
        assert_eq!(count_char("acbcc", b'c'), 3);
        assert_eq!(channel_id("Apple", "x"), Some("0".into()));
        assert_eq!(
            channel_id("c", "https://a/b?query=1&channel_id=42&x=1"),
            Some("42".into())
        );
        assert_eq!(channel_id("c", "channel_id=7"), Some("7".into()));
        assert_eq!(channel_id("c", "https://a/b?xchannel_id=7"), None);
        let url = "https://www.nexmark.com/ab/cd_e/fgh/item.htm?query=1";
        assert_eq!(split_index(url, 3).as_deref(), Some("ab"));
        assert_eq!(split_index(url, 5).as_deref(), Some("fgh"));
        assert_eq!(split_index(url, 7), None);
    }
}
