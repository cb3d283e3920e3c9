//! The generator's parameters: the published Nexmark generator's defaults (Beam's
//! `NexmarkConfiguration` and `GeneratorConfig`, as also used by Flink's and RisingWave's
//! ports), named here so that a reader can check them against the spec.

use crate::data::Timestamp;

/// Persons among every [`PROPORTION_DENOMINATOR`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions among every [`PROPORTION_DENOMINATOR`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids among every [`PROPORTION_DENOMINATOR`] events.
pub const BID_PROPORTION: u64 = 46;
/// Events per proportion cycle: event `id % 50` is a person at 0, an auction at 1..=3 and a
/// bid at 4..=49.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/// The first person id; ids start above zero so that queries find matches on small inputs.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Number of auction categories.
pub const NUM_CATEGORIES: u64 = 5;
/// How far past the newest person a randomly chosen person id may reach (a bid or auction may
/// name a person not created yet, as in the published generator).
pub const PERSON_ID_LEAD: u64 = 10;
/// How far past the newest auction a randomly chosen auction id may reach.
pub const AUCTION_ID_LEAD: u64 = 10;
/// A hot auction is the first of each batch of this many auctions.
pub const HOT_AUCTION_BATCH: u64 = 100;
/// A hot seller is the first of each batch of this many persons.
pub const HOT_SELLER_BATCH: u64 = 100;
/// A hot bidder is the second of each batch of this many persons (so that hot bidders and hot
/// sellers differ).
pub const HOT_BIDDER_BATCH: u64 = 100;
/// Shortest random string (names, descriptions).
pub const MIN_STRING_LENGTH: u64 = 3;

/// The hot channels of bids (Flink's generator); each has one fixed URL.
pub const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Number of ordinary channels `channel-0 .. channel-9999` (Flink's generator).
pub const CHANNELS: u64 = 10_000;
/// First names of persons.
pub const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
/// Last names of persons.
pub const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
/// Cities of persons.
pub const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
/// States of persons.
pub const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// Event time of the first event: 2015-07-15T00:00:00Z. The published generators take the
/// wall clock at start; a fixed base keeps every run, and every replay, identical.
pub const BASE_TIME_MS: Timestamp = 1_436_918_400_000;
/// Events per second of event time (the published default first and next event rate):
/// consecutive events are 100 µs apart, so a 10 s window holds 100,000 events.
pub const EVENTS_PER_SECOND: u64 = 10_000;

/// What the generator produces. The defaults are the published generator's; only `seed` and
/// `base_time` are Weir's additions (the published generator seeds each event with its id and
/// starts at the wall clock).
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkConfig {
    /// Mixed into every event's random seed: two seeds give two different, equally shaped
    /// streams. The ids and timestamps do not depend on it.
    pub seed: u64,
    /// Id of the first event (event ids drive person and auction ids).
    pub first_event_id: u64,
    /// Event time of the first event.
    pub base_time: Timestamp,
    /// Events per second of event time: event `n` is at `base_time + n * 1000 / rate` ms.
    pub events_per_second: u64,
    /// Persons considered active when a bid or auction picks a random person (default 1000).
    pub active_people: u64,
    /// Auctions in flight when a bid picks a random auction (default 100).
    pub in_flight_auctions: u64,
    /// Average size of a person in bytes; `extra` pads towards it (default 200).
    pub avg_person_byte_size: u64,
    /// Average size of an auction in bytes (default 500).
    pub avg_auction_byte_size: u64,
    /// Average size of a bid in bytes (default 100).
    pub avg_bid_byte_size: u64,
    /// An auction is by a hot seller with probability `1 - 1/ratio` (default 4).
    pub hot_seller_ratio: u64,
    /// A bid is on a hot auction with probability `1 - 1/ratio` (default 2).
    pub hot_auction_ratio: u64,
    /// A bid is by a hot bidder with probability `1 - 1/ratio` (default 4).
    pub hot_bidder_ratio: u64,
    /// A bid comes through a hot channel with probability `1 - 1/ratio` (default 2).
    pub hot_channel_ratio: u64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            seed: 0,
            first_event_id: 0,
            base_time: BASE_TIME_MS,
            events_per_second: EVENTS_PER_SECOND,
            active_people: 1000,
            in_flight_auctions: 100,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
            hot_seller_ratio: 4,
            hot_auction_ratio: 2,
            hot_bidder_ratio: 4,
            hot_channel_ratio: 2,
        }
    }
}

impl NexmarkConfig {
    /// The default configuration with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        NexmarkConfig {
            seed,
            ..Self::default()
        }
    }

    /// Checks that every ratio and rate is positive.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("events_per_second", self.events_per_second),
            ("active_people", self.active_people),
            ("hot_seller_ratio", self.hot_seller_ratio),
            ("hot_auction_ratio", self.hot_auction_ratio),
            ("hot_bidder_ratio", self.hot_bidder_ratio),
            ("hot_channel_ratio", self.hot_channel_ratio),
        ];
        match positive.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!("nexmark {name} must be at least 1")),
            None => Ok(()),
        }
    }
}
