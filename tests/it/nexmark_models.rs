//! Sequential models of the Nexmark queries: plain Rust over the same seeded events, written
//! from the SQL and independent of the engine (no windows, state or timers: sorting, grouping
//! and scanning the whole input). `nexmark_suite` compares each query's committed output with
//! these.
//!
//! The rules the models spell out, where the SQL leaves a choice to the engine:
//! - Event time is `date_time`, windows are `[start, start + size)` aligned to the epoch.
//! - An auction's winning bid (q4, q6, q9) is the highest price among its bids with
//!   `auction.date_time <= bid.date_time <= auction.expires`, then the earliest, then the
//!   smallest bid in `Bid`'s order; q19 ranks bids the same way.
//! - q4 and q6 take closed auctions in the order (`expires`, id); q6 averages the current
//!   auction and the 10 before it.
//! - A session (q11) continues while the next bid comes at most 10 s after the last one, and
//!   ends 10 s after its last bid.
//! - q18's latest bid is the greatest by (`date_time`, `Bid`'s order).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weir::engine::source::nexmark::{Auction, Bid, Event, Person};
use weir_examples::nexmark::queries::*;

pub fn bids(input: &[Event]) -> Vec<Bid> {
    input.iter().cloned().filter_map(Event::into_bid).collect()
}

fn auctions(input: &[Event]) -> Vec<Auction> {
    input.iter().cloned().filter_map(Event::into_auction).collect()
}

fn persons(input: &[Event]) -> Vec<Person> {
    input.iter().cloned().filter_map(Event::into_person).collect()
}

/// UTC date and `HH:mm` of `t` ms since the epoch, by the civil-from-days algorithm.
fn utc_day_and_minute(t: i64) -> (String, String) {
    let days = t.div_euclid(86_400_000);
    let ms = t.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60),
    )
}

pub fn q3(input: &[Event]) -> Vec<LocalItem> {
    let local: HashMap<u64, Person> = persons(input)
        .into_iter()
        .filter(|p| ["OR", "ID", "CA"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    auctions(input)
        .into_iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| {
            let p = local.get(&a.seller)?;
            Some(LocalItem {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                id: a.id,
            })
        })
        .collect()
}

/// Every auction with a bid placed while it was open, and its winning bid.
pub fn winners(input: &[Event]) -> Vec<AuctionWinner> {
    let mut by_auction: HashMap<u64, Vec<Bid>> = HashMap::new();
    for b in bids(input) {
        by_auction.entry(b.auction).or_default().push(b);
    }
    auctions(input)
        .into_iter()
        .filter_map(|a| {
            let best = by_auction
                .get(&a.id)?
                .iter()
                .filter(|b| a.date_time <= b.date_time && b.date_time <= a.expires)
                .min_by_key(|b| (Reverse(b.price), b.date_time, (*b).clone()))?
                .clone();
            Some(AuctionWinner { auction: a, bid: best })
        })
        .collect()
}

pub fn q9(input: &[Event]) -> Vec<AuctionWinner> {
    winners(input)
}

/// The winners in closing order: (`expires`, id).
fn closing_order(input: &[Event]) -> Vec<AuctionWinner> {
    let mut w = winners(input);
    w.sort_by_key(|w| (w.auction.expires, w.auction.id));
    w
}

pub fn q4(input: &[Event]) -> Vec<CategoryAverage> {
    let mut sums: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    closing_order(input)
        .into_iter()
        .map(|w| {
            let (sum, n) = sums.entry(w.auction.category).or_default();
            *sum += w.bid.price;
            *n += 1;
            CategoryAverage {
                category: w.auction.category,
                average: *sum / *n,
            }
        })
        .collect()
}

pub fn q6(input: &[Event]) -> Vec<SellerAverage> {
    let mut history: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    closing_order(input)
        .into_iter()
        .map(|w| {
            let prices = history.entry(w.auction.seller).or_default();
            prices.push(w.bid.price);
            let last = &prices[prices.len().saturating_sub(11)..];
            SellerAverage {
                seller: w.auction.seller,
                average: last.iter().sum::<u64>() / last.len() as u64,
            }
        })
        .collect()
}

pub fn q8(input: &[Event]) -> Vec<NewUser> {
    let window = |t: i64| t.div_euclid(10_000) * 10_000;
    let sold: BTreeSet<(u64, i64)> = auctions(input)
        .iter()
        .map(|a| (a.seller, window(a.date_time)))
        .collect();
    persons(input)
        .into_iter()
        .filter(|p| sold.contains(&(p.id, window(p.date_time))))
        .map(|p| NewUser {
            id: p.id,
            start: window(p.date_time),
            name: p.name,
        })
        .collect()
}

pub fn q11(input: &[Event]) -> Vec<BidderSession> {
    let mut times: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for b in bids(input) {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut out = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t - last > 10_000 {
                out.push(BidderSession {
                    bidder,
                    bid_count: n,
                    start,
                    end: last + 10_000,
                });
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        out.push(BidderSession {
            bidder,
            bid_count: n,
            start,
            end: last + 10_000,
        });
    }
    out
}

/// q12's model: the number of bids of each bidder (the windows depend on the wall clock).
pub fn q12_bids_per_bidder(input: &[Event]) -> BTreeMap<u64, u64> {
    let mut n = BTreeMap::new();
    for b in bids(input) {
        *n.entry(b.bidder).or_default() += 1;
    }
    n
}

pub fn q13(input: &[Event]) -> Vec<BidSideInput> {
    bids(input)
        .into_iter()
        .map(|b| BidSideInput {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
            value: (b.auction % 10_000).to_string(),
        })
        .collect()
}

pub fn q14(input: &[Event]) -> Vec<ClassifiedBid> {
    bids(input)
        .into_iter()
        .filter(|b| {
            let euros = b.price as f64 * 0.908;
            euros > 1_000_000.0 && euros < 50_000_000.0
        })
        .map(|b| {
            let hour = b.date_time.rem_euclid(86_400_000) / 3_600_000;
            ClassifiedBid {
                auction: b.auction,
                bidder: b.bidder,
                price_milli: b.price * 908,
                bid_time_type: if (8..=18).contains(&hour) {
                    BidTimeType::DayTime
                } else if hour <= 6 || hour >= 20 {
                    BidTimeType::NightTime
                } else {
                    BidTimeType::OtherTime
                },
                date_time: b.date_time,
                c_counts: b.extra.chars().filter(|&c| c == 'c').count() as u64,
                extra: b.extra,
            }
        })
        .collect()
}

fn band(price: u64) -> usize {
    match price {
        0..=9_999 => 1,
        10_000..=999_999 => 2,
        _ => 3,
    }
}

/// q15's and q16's counts over a group's bids.
fn stats<'a>(bids: impl IntoIterator<Item = &'a Bid>) -> BidStats {
    let mut s = BidStats::default();
    let mut bidders: [BTreeSet<u64>; 4] = Default::default();
    let mut auctions: [BTreeSet<u64>; 4] = Default::default();
    for b in bids {
        for i in [0, band(b.price)] {
            s.bids[i] += 1;
            bidders[i].insert(b.bidder);
            auctions[i].insert(b.auction);
        }
    }
    for i in 0..4 {
        s.bidders[i] = bidders[i].len() as u64;
        s.auctions[i] = auctions[i].len() as u64;
    }
    s
}

/// q15's final row per day.
pub fn q15(input: &[Event]) -> BTreeMap<String, DayStats> {
    let mut days: BTreeMap<String, Vec<Bid>> = BTreeMap::new();
    for b in bids(input) {
        days.entry(utc_day_and_minute(b.date_time).0).or_default().push(b);
    }
    days.into_iter()
        .map(|(day, bids)| {
            let row = DayStats {
                day: day.clone(),
                stats: stats(&bids),
            };
            (day, row)
        })
        .collect()
}

/// q16's final row per (channel, day).
pub fn q16(input: &[Event]) -> BTreeMap<(String, String), ChannelDayStats> {
    let mut groups: BTreeMap<(String, String), Vec<Bid>> = BTreeMap::new();
    for b in bids(input) {
        let day = utc_day_and_minute(b.date_time).0;
        groups.entry((b.channel.clone(), day)).or_default().push(b);
    }
    groups
        .into_iter()
        .map(|((channel, day), bids)| {
            let minute = bids.iter().map(|b| utc_day_and_minute(b.date_time).1).max().unwrap();
            let row = ChannelDayStats {
                channel: channel.clone(),
                day: day.clone(),
                minute,
                stats: stats(&bids),
            };
            ((channel, day), row)
        })
        .collect()
}

/// q17's final row per (auction, day).
pub fn q17(input: &[Event]) -> BTreeMap<(u64, String), AuctionDayStats> {
    let mut groups: BTreeMap<(u64, String), Vec<u64>> = BTreeMap::new();
    for b in bids(input) {
        let day = utc_day_and_minute(b.date_time).0;
        groups.entry((b.auction, day)).or_default().push(b.price);
    }
    groups
        .into_iter()
        .map(|((auction, day), prices)| {
            let mut counts = [prices.len() as u64, 0, 0, 0];
            for &p in &prices {
                counts[band(p)] += 1;
            }
            let sum: u64 = prices.iter().sum();
            let row = AuctionDayStats {
                auction,
                day: day.clone(),
                bids: counts,
                min_price: *prices.iter().min().unwrap(),
                max_price: *prices.iter().max().unwrap(),
                avg_price: sum / prices.len() as u64,
                sum_price: sum,
            };
            ((auction, day), row)
        })
        .collect()
}

/// q18's final row per (bidder, auction).
pub fn q18(input: &[Event]) -> BTreeMap<(u64, u64), Bid> {
    let mut last: BTreeMap<(u64, u64), Bid> = BTreeMap::new();
    for b in bids(input) {
        let key = (b.bidder, b.auction);
        match last.get(&key) {
            Some(l) if (l.date_time, l) > (b.date_time, &b) => {}
            _ => {
                last.insert(key, b);
            }
        }
    }
    last
}

/// q19's final row per (auction, rank).
pub fn q19(input: &[Event]) -> BTreeMap<(u64, u64), Bid> {
    let mut by_auction: BTreeMap<u64, Vec<Bid>> = BTreeMap::new();
    for b in bids(input) {
        by_auction.entry(b.auction).or_default().push(b);
    }
    let mut out = BTreeMap::new();
    for (auction, mut bids) in by_auction {
        bids.sort_by_key(|b| (Reverse(b.price), b.date_time, b.clone()));
        for (i, b) in bids.into_iter().take(10).enumerate() {
            out.insert((auction, i as u64 + 1), b);
        }
    }
    out
}

pub fn q20(input: &[Event]) -> Vec<AuctionBid> {
    let in_category: HashMap<u64, Auction> = auctions(input)
        .into_iter()
        .filter(|a| a.category == 10)
        .map(|a| (a.id, a))
        .collect();
    bids(input)
        .into_iter()
        .filter_map(|bid| {
            let auction = in_category.get(&bid.auction)?.clone();
            Some(AuctionBid { bid, auction })
        })
        .collect()
}

pub fn q21(input: &[Event]) -> Vec<BidChannelId> {
    bids(input)
        .into_iter()
        .filter_map(|b| {
            let id = match b.channel.to_lowercase().as_str() {
                "apple" => "0".to_string(),
                "google" => "1".to_string(),
                "facebook" => "2".to_string(),
                "baidu" => "3".to_string(),
                _ => {
                    // `(&|^)channel_id=([^&]*)`: the parameter at the start or after an `&`.
                    let at = if b.url.starts_with("channel_id=") {
                        0
                    } else {
                        b.url.find("&channel_id=")? + 1
                    };
                    let rest = &b.url[at + "channel_id=".len()..];
                    rest.split('&').next().unwrap_or("").to_string()
                }
            };
            Some(BidChannelId {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
                channel_id: id,
            })
        })
        .collect()
}

pub fn q22(input: &[Event]) -> Vec<BidDirectories> {
    bids(input)
        .into_iter()
        .map(|b| {
            let parts: Vec<&str> = b.url.split('/').collect();
            let dir = |i: usize| parts.get(i).map(|s| s.to_string());
            BidDirectories {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel.clone(),
                dir1: dir(3),
                dir2: dir(4),
                dir3: dir(5),
            }
        })
        .collect()
}
