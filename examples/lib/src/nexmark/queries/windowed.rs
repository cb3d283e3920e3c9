//! The window queries beyond q5 and q7: q8 (a window join of new persons and new auctions),
//! q11 (session windows) and q12 (processing-time windows).
//!
//! # Checkpointing
//! q8 and q11 are event-time windows (keyed state and timers): their results are the same
//! after any restore. q12's windows are keyed state plus processing-time timers; a restored
//! job fires the windows whose end passed while it was down at once, and puts replayed bids
//! into the windows of the time they are processed again, so each bid is counted once, in some
//! window.

use super::{bids, timed_events, Count};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir_engine::data::Timestamp;
use weir_engine::prelude::*;
use weir_engine::source::nexmark::{Bid, Event};

/// q8's tumbling window.
pub const Q8_WINDOW: Duration = Duration::from_secs(10);
/// q11's session gap.
pub const Q11_GAP: Duration = Duration::from_secs(10);
/// q12's tumbling window of processing time.
pub const Q12_WINDOW: Duration = Duration::from_secs(10);

/// q8's result: a person who opened an auction in the window in which they joined.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NewUser {
    /// The person.
    pub id: u64,
    /// Their name.
    pub name: String,
    /// Start of the window.
    pub start: Timestamp,
}

/// A q8 event: a person joining or an auction opening, keyed by the person.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Activity {
    /// A person joined (name).
    Joined(String),
    /// The person opened an auction.
    Sold,
}

/// What q8 keeps of a person's window: their name if they joined in it, and whether they
/// opened an auction in it.
struct JoinedAndSold;

impl AggregateFunction<(u64, Activity)> for JoinedAndSold {
    type Acc = (Option<String>, bool);
    type Out = (Option<String>, bool);
    fn create(&self) -> Self::Acc {
        (None, false)
    }
    fn add(&self, acc: &mut Self::Acc, (_, a): &(u64, Activity)) {
        match a {
            Activity::Joined(name) => acc.0 = Some(name.clone()),
            Activity::Sold => acc.1 = true,
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 = acc.0.take().or(other.0);
        acc.1 |= other.1;
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
}

/// q8, monitor new users: `SELECT P.id, P.name, P.starttime FROM (SELECT id, name,
/// window_start AS starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE person,
/// DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) GROUP BY id, name, window_start, window_end) P
/// JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM
/// TABLE(TUMBLE(TABLE auction, ...)) GROUP BY seller, window_start, window_end) A ON P.id =
/// A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime`.
///
/// Persons and auctions go to one event-time window per person id; the window emits the
/// person once if both a join and an auction of theirs fall in it.
pub fn q8(events: &Stream<Event>) -> Stream<NewUser> {
    timed_events(events)
        .flat_map("q8.persons-and-auctions", |e| match e {
            Event::Person(p) => Some((p.id, Activity::Joined(p.name))),
            Event::Auction(a) => Some((a.seller, Activity::Sold)),
            Event::Bid(_) => None,
        })
        .key_by("q8.by-person", |(id, _): &(u64, Activity)| *id)
        .window(TumblingEventTime::of(Q8_WINDOW))
        .aggregate("q8.joined-and-sold", JoinedAndSold)
        .flat_map("q8.new-users", |w: Windowed<u64, (Option<String>, bool)>| {
            match w.value {
                (Some(name), true) => Some(NewUser {
                    id: w.key,
                    name,
                    start: w.window.start,
                }),
                _ => None,
            }
        })
}

/// q11's result: a bidder's session and its number of bids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidderSession {
    /// The bidder.
    pub bidder: u64,
    /// Bids in the session.
    pub bid_count: u64,
    /// The session's first bid.
    pub start: Timestamp,
    /// The session's last bid plus the gap.
    pub end: Timestamp,
}

/// q11, user sessions: `SELECT B.bidder, count(*) AS bid_count, SESSION_START(B.dateTime,
/// INTERVAL '10' SECOND) AS starttime, SESSION_END(B.dateTime, INTERVAL '10' SECOND) AS
/// endtime FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)`: a
/// session goes on while the next bid comes within 10 s of the last (Flink's session windows:
/// `[first, last + gap)`).
pub fn q11(events: &Stream<Event>) -> Stream<BidderSession> {
    timed_events(events)
        .flat_map("q11.bids", Event::into_bid)
        .key_by("q11.by-bidder", |b: &Bid| b.bidder)
        .window(Session::with_gap(Q11_GAP))
        .aggregate("q11.sessions", Count)
        .map("q11.out", |w: Windowed<u64, u64>| BidderSession {
            bidder: w.key,
            bid_count: w.value,
            start: w.window.start,
            end: w.window.end,
        })
}

/// q12's result: a bidder's bids within one window of processing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BidderWindow {
    /// The bidder.
    pub bidder: u64,
    /// Bids processed in the window.
    pub bid_count: u64,
    /// Start of the window, wall-clock ms since the epoch.
    pub start: Timestamp,
    /// End of the window (exclusive).
    pub end: Timestamp,
}

/// Counts a bidder's bids per window of processing time, firing each window on a
/// processing-time timer at its end, and every open window at the end of a bounded input.
#[derive(Clone)]
struct ProcessingTimeCount {
    size: Timestamp,
}

impl ProcessingTimeCount {
    fn fire(&self, up_to: Timestamp, ctx: &mut KeyedContext<'_, u64, BidderWindow>) -> Result<()> {
        let bidder = *ctx.key();
        let mut windows = ctx.map_state::<Timestamp, u64>("windows");
        let mut due: Vec<(Timestamp, u64)> = windows
            .entries()?
            .into_iter()
            .filter(|(start, _)| start + self.size <= up_to)
            .collect();
        due.sort_unstable();
        for (start, _) in &due {
            windows.remove(start)?;
        }
        for (start, bid_count) in due {
            ctx.emit(BidderWindow {
                bidder,
                bid_count,
                start,
                end: start + self.size,
            });
        }
        Ok(())
    }
}

impl KeyedProcess<u64, Bid> for ProcessingTimeCount {
    type Out = BidderWindow;

    fn process(&mut self, _bid: Bid, ctx: &mut KeyedContext<'_, u64, BidderWindow>) -> Result<()> {
        let now = ctx.current_processing_time() as Timestamp;
        let start = now - now.rem_euclid(self.size);
        let mut windows = ctx.map_state::<Timestamp, u64>("windows");
        let n = windows.get(&start)?.unwrap_or(0);
        windows.put(&start, &(n + 1))?;
        if n == 0 {
            ctx.register_processing_time_timer(start + self.size)?;
            // The end of a bounded input (the final watermark) fires what is still open.
            ctx.register_event_time_timer(MAX_WATERMARK)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut KeyedContext<'_, u64, BidderWindow>) -> Result<()> {
        match timer.domain {
            TimeDomain::ProcessingTime => self.fire(timer.time, ctx),
            TimeDomain::EventTime => self.fire(MAX_WATERMARK, ctx),
        }
    }
}

/// q12, processing-time windows: `SELECT bidder, count(*) AS bid_count, window_start AS
/// starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE B, DESCRIPTOR(p_time), INTERVAL
/// '10' SECOND)) GROUP BY bidder, window_start, window_end`, with `p_time = PROCTIME()`.
///
/// Which window a bid lands in depends on when it is processed, so the result is not a
/// function of the input; what is (and what the tests check) is that every bid is counted in
/// exactly one window: per bidder, the counts add up to the bidder's bids, and no window of a
/// bidder appears twice. Weir has no injectable clock for processing time (timers and
/// `current_processing_time` read the wall clock), so the tests check these invariants
/// rather than fixing the windows. At the end of a bounded input, the windows still open
/// fire.
pub fn q12(events: &Stream<Event>) -> Stream<BidderWindow> {
    bids(events, "q12.bids")
        .key_by("q12.by-bidder", |b: &Bid| b.bidder)
        .process(
            "q12.windows",
            ProcessingTimeCount {
                size: Q12_WINDOW.as_millis() as Timestamp,
            },
        )
}
