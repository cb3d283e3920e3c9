//! The decisions of leader election and fencing, apart from any I/O: terms, the leader's own
//! view of its lease, and the gate that makes workers ignore an older term. The etcd adapter
//! ([`super::etcd`]) carries them out.
//!
//! # After a crash
//! Terms only grow: each leader takes the term after the highest ever recorded, in the same
//! etcd transaction that makes it leader. A leader that cannot renew its lease in time stops
//! acting before etcd expires the lease (its clock starts when a renewal is *sent*, etcd's when
//! it is received), so no two masters act as leaders at once; a frozen leader that runs again
//! finds its lease over and stops before anything else it does is accepted.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A leader's term: 1 for the job's first leader, one more for every later one.
pub type Term = u64;

/// The term after the highest recorded (`None`: no leader ever).
pub fn next_term(recorded: Option<Term>) -> Term {
    recorded.map_or(1, |t| t + 1)
}

/// What the leader key holds: who leads, in which term, where workers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leader's term.
    pub term: Term,
    /// The master's control address (`host:port`) workers register with.
    pub address: String,
    /// The master's process id (for drills and logs).
    pub pid: u32,
}

/// What the latest-checkpoint pointer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerRecord {
    /// The latest completed checkpoint.
    pub checkpoint: u64,
    /// The term of the leader that completed it.
    pub term: Term,
}

/// The leader's own view of its lease: valid until the last acknowledged renewal's *sending*
/// time plus the TTL, less a margin for clock drift. etcd counts from when it received the
/// renewal, later, so the leader always gives up first.
#[derive(Debug, Clone, Copy)]
pub struct LeaseClock {
    ttl: Duration,
    valid_until: Instant,
    /// Lost for good: nothing renews it any more.
    lost: bool,
}

impl LeaseClock {
    /// A lease of `ttl` granted by a request sent at `sent_at`.
    pub fn granted(sent_at: Instant, ttl: Duration) -> Self {
        LeaseClock {
            ttl,
            valid_until: sent_at + ttl.saturating_sub(Self::margin(ttl)),
            lost: false,
        }
    }

    /// What the leader keeps aside for clock drift and scheduling delays.
    fn margin(ttl: Duration) -> Duration {
        (ttl / 10).max(Duration::from_millis(50)).min(ttl / 2)
    }

    /// A renewal sent at `sent_at` was acknowledged with `ttl` left (zero: the lease is gone).
    pub fn renewed(&mut self, sent_at: Instant, ttl: Duration) {
        if ttl.is_zero() {
            self.lost();
            return;
        }
        self.ttl = ttl;
        let until = sent_at + ttl.saturating_sub(Self::margin(ttl));
        self.valid_until = self.valid_until.max(until);
    }

    /// The lease is gone (revoked, expired, or a fenced write failed).
    pub fn lost(&mut self) {
        self.lost = true;
    }

    /// Whether the leader may still act at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        !self.lost && now < self.valid_until
    }

    /// How often to renew: a third of the TTL, so that two renewals may fail in a row.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(50))
    }
}

/// A worker's record of the newest term it has seen: commands of an older term are refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct TermGate {
    newest: Term,
}

impl TermGate {
    /// Whether a command of `term` may act; a newer term becomes the newest seen.
    pub fn admit(&mut self, term: Term) -> bool {
        if term < self.newest {
            return false;
        }
        self.newest = term;
        true
    }

    /// Whether a command of `term` would be admitted, without recording it.
    pub fn would_admit(&self, term: Term) -> bool {
        term >= self.newest
    }

    /// The newest term seen (0: none).
    pub fn newest(&self) -> Term {
        self.newest
    }
}

/// What a master that wants to lead does after looking at the leader key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignStep {
    /// A leader holds the key (its lease alive): wait, look again.
    Wait {
        /// The current leader.
        leader: LeaderRecord,
    },
    /// Nobody leads: try to take `term` (after the highest recorded).
    Claim {
        /// The term to claim.
        term: Term,
    },
}

/// The step after seeing `leader` in the leader key and `recorded` in the term counter.
pub fn campaign_step(leader: Option<LeaderRecord>, recorded: Option<Term>) -> CampaignStep {
    match leader {
        Some(leader) => CampaignStep::Wait { leader },
        None => CampaignStep::Claim {
            term: next_term(recorded),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn terms_start_at_one_and_only_grow() {
        assert_eq!(next_term(None), 1);
        assert_eq!(next_term(Some(4)), 5);
        let leader = LeaderRecord {
            term: 4,
            address: "m:1".into(),
            pid: 9,
        };
        assert_eq!(
            campaign_step(Some(leader.clone()), Some(4)),
            CampaignStep::Wait { leader }
        );
        assert_eq!(campaign_step(None, Some(4)), CampaignStep::Claim { term: 5 });
        assert_eq!(campaign_step(None, None), CampaignStep::Claim { term: 1 });
    }

    #[test]
    fn the_leader_gives_up_before_etcd_expires_its_lease() {
        let t0 = Instant::now();
        let ttl = ms(1000);
        let mut clock = LeaseClock::granted(t0, ttl);
        assert!(clock.valid_at(t0 + ms(850)));
        // The margin: the leader stops before the TTL counted from when it sent the request,
        // which is before etcd received it.
        assert!(!clock.valid_at(t0 + ms(900)));
        assert!(!clock.valid_at(t0 + ttl));
        // A renewal sent at 300 ms extends it from then, not from its answer.
        clock.renewed(t0 + ms(300), ttl);
        assert!(clock.valid_at(t0 + ms(1150)));
        assert!(!clock.valid_at(t0 + ms(1200)));
        // An older renewal answered late never shortens it.
        clock.renewed(t0 + ms(100), ttl);
        assert!(clock.valid_at(t0 + ms(1150)));
        assert_eq!(clock.renew_every(), ms(1000) / 3);
    }

    #[test]
    fn a_frozen_leader_finds_its_lease_over_when_it_runs_again() {
        let t0 = Instant::now();
        let clock = LeaseClock::granted(t0, ms(1000));
        // SIGSTOP for 3 s: the monotonic clock went on; nothing renewed the lease.
        assert!(!clock.valid_at(t0 + ms(3000)));
    }

    #[test]
    fn a_lease_etcd_answers_with_no_time_left_is_lost_at_once() {
        let t0 = Instant::now();
        let mut clock = LeaseClock::granted(t0, ms(60_000));
        assert!(clock.valid_at(Instant::now()));
        clock.renewed(Instant::now(), Duration::ZERO);
        assert!(!clock.valid_at(Instant::now()));
        let mut clock = LeaseClock::granted(Instant::now(), ms(60_000));
        clock.lost();
        assert!(!clock.valid_at(Instant::now()));
        // Lost stays lost: a renewal answered late cannot revive it.
        clock.renewed(Instant::now(), ms(60_000));
        assert!(!clock.valid_at(Instant::now()));
    }

    #[test]
    fn workers_refuse_commands_of_an_older_term() {
        let mut gate = TermGate::default();
        assert!(gate.admit(1));
        assert!(gate.admit(1), "the same term again");
        assert!(gate.admit(3), "a newer leader");
        assert_eq!(gate.newest(), 3);
        assert!(!gate.admit(2), "the old leader, run again after a pause");
        assert!(!gate.would_admit(1));
        assert!(gate.would_admit(3));
        assert_eq!(gate.newest(), 3);
    }

    #[test]
    fn records_round_trip_as_json() {
        let l = LeaderRecord {
            term: 2,
            address: "127.0.0.1:6123".into(),
            pid: 42,
        };
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<LeaderRecord>(&s).unwrap(), l);
        let p = PointerRecord {
            checkpoint: 17,
            term: 2,
        };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"checkpoint":17,"term":2}"#);
    }
}
