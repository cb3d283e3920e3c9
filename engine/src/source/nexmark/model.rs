//! The Nexmark schema: an online auction where persons open auctions and place bids. Field
//! names and meanings are the published ones (Beam's and Flink's `Person`, `Auction`, `Bid`);
//! times are milliseconds since the epoch, prices are in cents.

use crate::data::Timestamp;
use serde::{Deserialize, Serialize};

/// A person who joined the auction site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Person {
    /// Unique person id (from [`FIRST_PERSON_ID`](super::FIRST_PERSON_ID) on).
    pub id: u64,
    /// Full name, "First Last".
    pub name: String,
    /// Email address.
    pub email_address: String,
    /// Credit card number, four groups of four digits.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// Two-letter US state.
    pub state: String,
    /// When the person joined (the event time).
    pub date_time: Timestamp,
    /// Padding towards the configured average size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Auction {
    /// Unique auction id (from [`FIRST_AUCTION_ID`](super::FIRST_AUCTION_ID) on).
    pub id: u64,
    /// Name of the item.
    pub item_name: String,
    /// Description of the item.
    pub description: String,
    /// Opening price, in cents.
    pub initial_bid: u64,
    /// Lowest price at which the item sells, in cents.
    pub reserve: u64,
    /// When the auction opened (the event time).
    pub date_time: Timestamp,
    /// When the auction closes.
    pub expires: Timestamp,
    /// Id of the person selling.
    pub seller: u64,
    /// Category id.
    pub category: u64,
    /// Padding towards the configured average size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bid {
    /// Id of the auction bid on.
    pub auction: u64,
    /// Id of the person bidding.
    pub bidder: u64,
    /// Price offered, in cents (US dollars).
    pub price: u64,
    /// Channel the bid came through.
    pub channel: String,
    /// URL the bid came from.
    pub url: String,
    /// When the bid was placed (the event time).
    pub date_time: Timestamp,
    /// Padding towards the configured average size.
    pub extra: String,
}

/// One event of the stream: a new person, a new auction or a bid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Event {
    /// A person joined.
    Person(Person),
    /// An auction opened.
    Auction(Auction),
    /// A bid was placed.
    Bid(Bid),
}

/// Which of the three event types an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// [`Event::Person`].
    Person,
    /// [`Event::Auction`].
    Auction,
    /// [`Event::Bid`].
    Bid,
}

impl Event {
    /// The event time.
    pub fn date_time(&self) -> Timestamp {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event's type.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Person(_) => EventKind::Person,
            Event::Auction(_) => EventKind::Auction,
            Event::Bid(_) => EventKind::Bid,
        }
    }

    /// The bid, if this is one.
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }

    /// The auction, if this is one.
    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(a),
            _ => None,
        }
    }

    /// The person, if this is one.
    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(p),
            _ => None,
        }
    }
}
