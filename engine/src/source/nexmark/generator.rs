//! Event `n` of the Nexmark stream as a pure function of `n`: its type from the proportions,
//! its ids from the published id arithmetic, its fields from a random stream seeded by the
//! event id. Any event can be produced alone, which is what makes the source splittable and
//! replayable.

use super::config::*;
use super::model::{Auction, Bid, Event, EventKind, Person};
use super::random::Random;
use crate::data::Timestamp;
use std::sync::Arc;

/// Produces Nexmark events by index (0 = the first event of the stream).
#[derive(Debug, Clone)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    /// `(channel, url)` of the ordinary channels, then of the hot channels.
    channels: Arc<Vec<(String, String)>>,
}

impl NexmarkGenerator {
    /// A generator for `config`.
    ///
    /// # Panics
    /// If a ratio or the event rate is zero (the source reports this as a configuration error
    /// instead).
    pub fn new(config: NexmarkConfig) -> Self {
        if let Err(msg) = config.validate() {
            panic!("{msg}");
        }
        let mut channels: Vec<(String, String)> = (0..CHANNELS)
            .map(|i| {
                let mut r = Random::new(config.seed ^ 0xC4A2_11E1, i);
                let mut url = base_url(&mut r);
                if r.below(10) > 0 {
                    url.push_str(&format!("&channel_id={}", (i as i32).reverse_bits().unsigned_abs()));
                }
                (format!("channel-{i}"), url)
            })
            .collect();
        for (i, hot) in HOT_CHANNELS.iter().enumerate() {
            let mut r = Random::new(config.seed ^ 0x407C_4A22, i as u64);
            channels.push((hot.to_string(), base_url(&mut r)));
        }
        NexmarkGenerator {
            config,
            channels: Arc::new(channels),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The id of event `index`.
    pub fn event_id(&self, index: u64) -> u64 {
        self.config.first_event_id + index
    }

    /// The type of event `index`.
    pub fn kind(&self, index: u64) -> EventKind {
        let rem = self.event_id(index) % PROPORTION_DENOMINATOR;
        if rem < PERSON_PROPORTION {
            EventKind::Person
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// The event time of event `index`.
    pub fn timestamp(&self, index: u64) -> Timestamp {
        let ms = (index as u128 * 1000 / self.config.events_per_second as u128) as i64;
        self.config.base_time.saturating_add(ms)
    }

    /// Event `index`.
    pub fn event(&self, index: u64) -> Event {
        let id = self.event_id(index);
        let time = self.timestamp(index);
        let mut r = Random::new(self.config.seed, id);
        match self.kind(index) {
            EventKind::Person => Event::Person(self.person(id, time, &mut r)),
            EventKind::Auction => Event::Auction(self.auction(index, id, time, &mut r)),
            EventKind::Bid => Event::Bid(self.bid(id, time, &mut r)),
        }
    }

    fn person(&self, id: u64, time: Timestamp, r: &mut Random) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[r.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[r.below(LAST_NAMES.len() as u64) as usize]
        );
        let email_address = format!("{}@{}.com", r.string(7), r.string(5));
        let credit_card = format!(
            "{:04} {:04} {:04} {:04}",
            r.below(10_000),
            r.below(10_000),
            r.below(10_000),
            r.below(10_000)
        );
        let city = US_CITIES[r.below(US_CITIES.len() as u64) as usize].to_string();
        let state = US_STATES[r.below(US_STATES.len() as u64) as usize].to_string();
        let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = r.extra(size as u64, self.config.avg_person_byte_size);
        Person {
            id: last_person(id) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: time,
            extra,
        }
    }

    fn auction(&self, index: u64, id: u64, time: Timestamp, r: &mut Random) -> Auction {
        let c = &self.config;
        let seller = if r.below(c.hot_seller_ratio) > 0 {
            last_person(id) / HOT_SELLER_BATCH * HOT_SELLER_BATCH
        } else {
            self.random_person(id, r)
        };
        let category = FIRST_CATEGORY_ID + r.below(NUM_CATEGORIES);
        let initial_bid = r.price();
        let expires = time + self.auction_length(index, time, r);
        let item_name = r.string(20);
        let description = r.string(100);
        let reserve = initial_bid + r.price();
        let size = 8 + item_name.len() as u64 + description.len() as u64 + 5 * 8;
        let extra = r.extra(size, c.avg_auction_byte_size);
        Auction {
            id: last_auction(id) + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: time,
            expires,
            seller: seller + FIRST_PERSON_ID,
            category,
            extra,
        }
    }

    fn bid(&self, id: u64, time: Timestamp, r: &mut Random) -> Bid {
        let c = &self.config;
        let auction = if r.below(c.hot_auction_ratio) > 0 {
            last_auction(id) / HOT_AUCTION_BATCH * HOT_AUCTION_BATCH
        } else {
            self.random_auction(id, r)
        };
        let bidder = if r.below(c.hot_bidder_ratio) > 0 {
            last_person(id) / HOT_BIDDER_BATCH * HOT_BIDDER_BATCH + 1
        } else {
            self.random_person(id, r)
        };
        let price = r.price();
        let channel = if r.below(c.hot_channel_ratio) > 0 {
            CHANNELS + r.below(HOT_CHANNELS.len() as u64)
        } else {
            r.below(CHANNELS)
        };
        let (channel, url) = self.channels[channel as usize].clone();
        let extra = r.extra(4 * 8, c.avg_bid_byte_size);
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            channel,
            url,
            date_time: time,
            extra,
        }
    }

    /// A random recent person (base 0): one of the last `active_people`, or up to
    /// [`PERSON_ID_LEAD`] ahead of the newest.
    fn random_person(&self, id: u64, r: &mut Random) -> u64 {
        let people = last_person(id) + 1;
        let active = people.min(self.config.active_people);
        people - active + r.below(active + PERSON_ID_LEAD)
    }

    /// A random auction in flight (base 0): one of the last `in_flight_auctions`, or up to
    /// [`AUCTION_ID_LEAD`] ahead of the newest.
    fn random_auction(&self, id: u64, r: &mut Random) -> u64 {
        let max = last_auction(id);
        let min = max.saturating_sub(self.config.in_flight_auctions);
        min + r.below(max - min + 1 + AUCTION_ID_LEAD)
    }

    /// How long an auction opened by event `index` at `time` runs: random up to twice the
    /// time it takes to open `in_flight_auctions` more auctions.
    fn auction_length(&self, index: u64, time: Timestamp, r: &mut Random) -> i64 {
        let events_for_auctions = self.config.in_flight_auctions * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
        let horizon = self.timestamp(index + events_for_auctions) - time;
        1 + r.below((horizon * 2).max(1) as u64) as i64
    }
}

/// The newest person id (base 0) at event `id`: the current one if the event is a person.
// The published formula, kept general in the proportions (with one person per cycle the
// `min` is always 0).
#[allow(clippy::unnecessary_min_or_max)]
fn last_person(id: u64) -> u64 {
    let epoch = id / PROPORTION_DENOMINATOR;
    let offset = (id % PROPORTION_DENOMINATOR).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The newest auction id (base 0) at event `id`: the current one if the event is an auction
/// (0 before the first auction).
fn last_auction(id: u64) -> u64 {
    let epoch = id / PROPORTION_DENOMINATOR;
    let offset = id % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        (epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1).saturating_sub(AUCTION_PROPORTION)
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        epoch * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else {
        epoch * AUCTION_PROPORTION + offset - PERSON_PROPORTION
    }
}

/// `https://www.nexmark.com/xxxx/xxxx/xxxx/item.htm?query=1` with random path parts.
fn base_url(r: &mut Random) -> String {
    let mut part = || {
        let len = r.below(5 - MIN_STRING_LENGTH) + MIN_STRING_LENGTH;
        r.string_with(len, '_')
    };
    let (a, b, c) = (part(), part(), part());
    format!("https://www.nexmark.com/{a}/{b}/{c}/item.htm?query=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_published_arithmetic() {
        let g = NexmarkGenerator::new(NexmarkConfig::default());
        // Event 0 is the first person, 1..=3 the first auctions, 4..=49 bids.
        assert!(matches!(g.event(0), Event::Person(Person { id: 1000, .. })));
        assert!(matches!(g.event(1), Event::Auction(Auction { id: 1000, .. })));
        assert!(matches!(g.event(3), Event::Auction(Auction { id: 1002, .. })));
        assert!(matches!(g.event(50), Event::Person(Person { id: 1001, .. })));
        assert!(matches!(g.event(51), Event::Auction(Auction { id: 1003, .. })));
        assert_eq!(last_auction(0), 0);
        assert_eq!(last_auction(50), 2);
        assert_eq!(last_auction(60), 5);
        assert_eq!(g.timestamp(0), BASE_TIME_MS);
        assert_eq!(g.timestamp(10_000), BASE_TIME_MS + 1000);
        assert_eq!(g.timestamp(9), BASE_TIME_MS);
        assert_eq!(g.timestamp(10), BASE_TIME_MS + 1);
    }
}
