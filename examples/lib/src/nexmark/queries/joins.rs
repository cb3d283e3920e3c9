//! The incremental joins: q3 (auctions with their seller) and q20 (bids with their auction).
//!
//! Both are regular inner joins on a key that is unique on one side (a person's id, an
//! auction's id), so each row of the other side matches at most one row. A row of the many
//! side that arrives before its match (the generator lets bids and auctions name ids up to 10
//! ahead of the newest) waits in list state; once the unique row arrived, the key keeps only
//! what the join still needs: the row if it passes the query's filter, or a marker that drops
//! every later match. Flink keeps both sides whole; the result is the same because ids repeat
//! on neither side.
//!
//! # Checkpointing
//! The stored rows, markers and waiting rows are keyed state: after a restore they are what
//! they were at the checkpoint, and replay re-joins the rest, so each pair is emitted once.

use serde::{Deserialize, Serialize};
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Auction, Bid, Event, Person};

/// The category q3 and q20 select.
pub const Q3_CATEGORY: u64 = 10;
/// The states of q3's sellers.
pub const Q3_STATES: [&str; 3] = ["OR", "ID", "CA"];

/// q3's result: a seller in OR, ID or CA and the id of an auction of theirs in category 10.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalItem {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction.
    pub id: u64,
}

/// A person as q3's join keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Seller {
    /// In one of [`Q3_STATES`]: name, city, state.
    Local(String, String, String),
    /// Elsewhere: their auctions match nothing.
    Elsewhere,
}

/// q3's join, keyed by person id: auctions as `(seller, id)` (first input) and persons as
/// `(id, seller)` (second).
#[derive(Clone)]
struct LocalItemJoin;

impl KeyedCoProcess<u64, (u64, u64), (u64, Seller)> for LocalItemJoin {
    type Out = LocalItem;

    fn process_first(&mut self, (_, auction): (u64, u64), ctx: &mut KeyedContext<'_, u64, LocalItem>) -> Result<()> {
        match ctx.value_state::<Seller>("seller").get()? {
            Some(Seller::Local(name, city, state)) => ctx.emit(LocalItem {
                name,
                city,
                state,
                id: auction,
            }),
            Some(Seller::Elsewhere) => {}
            None => ctx.list_state::<u64>("waiting-auctions").add(&auction)?,
        }
        Ok(())
    }

    fn process_second(&mut self, (_, seller): (u64, Seller), ctx: &mut KeyedContext<'_, u64, LocalItem>) -> Result<()> {
        let waiting = ctx.list_state::<u64>("waiting-auctions").get()?;
        if let Seller::Local(name, city, state) = &seller {
            for id in waiting.iter().copied() {
                ctx.emit(LocalItem {
                    name: name.clone(),
                    city: city.clone(),
                    state: state.clone(),
                    id,
                });
            }
        }
        if !waiting.is_empty() {
            ctx.list_state::<u64>("waiting-auctions").clear()?;
        }
        ctx.value_state("seller").set(&seller)
    }
}

/// q3, local item suggestion: `SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER
/// JOIN person AS P ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'OR' OR P.state =
/// 'ID' OR P.state = 'CA')`. Emits each pair once, when its second row arrives.
pub fn q3(events: &Stream<Event>) -> Stream<LocalItem> {
    let auctions = events.flat_map("q3.auctions", |e| match e {
        Event::Auction(a) if a.category == Q3_CATEGORY => Some((a.seller, a.id)),
        _ => None,
    });
    let persons = events.flat_map("q3.persons", |e| {
        let p: Person = e.into_person()?;
        let seller = if Q3_STATES.contains(&p.state.as_str()) {
            Seller::Local(p.name, p.city, p.state)
        } else {
            Seller::Elsewhere
        };
        Some((p.id, seller))
    });
    auctions
        .connect(&persons)
        .key_by(
            "q3.by-seller",
            |(seller, _): &(u64, u64)| *seller,
            |(id, _): &(u64, Seller)| *id,
        )
        .process("q3.join", LocalItemJoin)
}

/// q20's result: a bid and its auction (the SQL's columns are the fields of both).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuctionBid {
    /// The bid.
    pub bid: Bid,
    /// The auction bid on, in category 10.
    pub auction: Auction,
}

/// An auction as q20's join keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Listing {
    /// In category 10: its bids match.
    InCategory(Auction),
    /// In another category: its bids match nothing.
    Other,
}

/// q20's join, keyed by auction id: bids (first input) and auctions (second).
#[derive(Clone)]
struct BidAuctionJoin;

impl KeyedCoProcess<u64, Bid, Auction> for BidAuctionJoin {
    type Out = AuctionBid;

    fn process_first(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, u64, AuctionBid>) -> Result<()> {
        match ctx.value_state::<Listing>("auction").get()? {
            Some(Listing::InCategory(auction)) => ctx.emit(AuctionBid { bid, auction }),
            Some(Listing::Other) => {}
            None => ctx.list_state::<Bid>("waiting-bids").add(&bid)?,
        }
        Ok(())
    }

    fn process_second(&mut self, auction: Auction, ctx: &mut KeyedContext<'_, u64, AuctionBid>) -> Result<()> {
        let waiting = ctx.list_state::<Bid>("waiting-bids").get()?;
        if !waiting.is_empty() {
            ctx.list_state::<Bid>("waiting-bids").clear()?;
        }
        let listing = if auction.category == Q3_CATEGORY {
            for bid in waiting {
                ctx.emit(AuctionBid {
                    bid,
                    auction: auction.clone(),
                });
            }
            Listing::InCategory(auction)
        } else {
            Listing::Other
        };
        ctx.value_state("auction").set(&listing)
    }
}

/// q20, bids expanded with their auction: `SELECT auction, bidder, price, channel, url,
/// B.dateTime, B.extra, itemName, description, initialBid, reserve, A.dateTime, expires,
/// seller, category, A.extra FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id WHERE
/// A.category = 10`. Emits each pair once, when its second row arrives.
pub fn q20(events: &Stream<Event>) -> Stream<AuctionBid> {
    let bids = events.flat_map("q20.bids", Event::into_bid);
    let auctions = events.flat_map("q20.auctions", Event::into_auction);
    bids.connect(&auctions)
        .key_by("q20.by-auction", |b: &Bid| b.auction, |a: &Auction| a.id)
        .process("q20.join", BidAuctionJoin)
}
