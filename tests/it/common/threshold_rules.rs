//! The threshold-rules workload of the broadcast-state tests (`broadcast_state`,
//! `broadcast_evolution`): transactions of a few accounts, and a broadcast stream of rules
//! that set, from an event time on, the amount above which a transaction is flagged; and the
//! sequential model the committed decisions are checked against.
//!
//! The decisions carry each account's running count with no deduplication before it, so a
//! transaction decided twice or lost changes the committed counts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir::engine::api::BroadcastConnectedKeyedStream;
use weir::engine::source::generator::mix;
use weir::prelude::*;

/// The limit before the first rule takes effect.
pub const DEFAULT_LIMIT: i64 = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub id: u64,
    pub account: u64,
    pub cents: i64,
    pub ts: i64,
}

/// A rule change: from event time `from` on, amounts above `limit` are flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub from: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub id: u64,
    pub account: u64,
    pub flagged: bool,
    /// The account's decided transactions so far, this one included.
    pub count: u64,
}

/// One test's sizes and generator seeds.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub events: u64,
    pub accounts: u64,
    pub rules: u64,
    pub txn_seed: u64,
    pub rule_seed: u64,
}

impl Workload {
    /// Transaction `i`: event times rise by 2 per transaction, ±50 out of order.
    pub fn txn(&self, i: u64) -> Txn {
        let r = mix(self.txn_seed, i);
        Txn {
            id: i,
            account: (r >> 8) % self.accounts,
            cents: 1 + ((r >> 16) % 1_000) as i64,
            ts: 1_000_000 + 2 * i as i64 + ((r >> 24) % 100) as i64 - 50,
        }
    }

    /// Rule `j`: the rules spread evenly over the transactions' event times.
    pub fn rule(&self, j: u64) -> Rule {
        Rule {
            from: 1_000_000 + (j * 2 * self.events / self.rules) as i64,
            limit: 100 + (mix(self.rule_seed, j) % 900) as i64,
        }
    }

    /// The transactions (4 splits at `rate` per second, watermarks 100 ms behind) keyed by
    /// account and connected to the broadcast rules (one split that ends after the last rule).
    pub fn connect(self, p: &Pipeline, rate: f64) -> BroadcastConnectedKeyedStream<u64, Txn, Rule> {
        let rules = p
            .source(
                "rules",
                GeneratorSource::new(move |j| self.rule(j))
                    .bounded(self.rules)
                    .splits(1),
            )
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO).with_timestamp_assigner(|r: &Rule| r.from),
            );
        p.source(
            "txns",
            GeneratorSource::new(move |i| self.txn(i))
                .bounded(self.events)
                .splits(4)
                .rate_per_second(rate),
        )
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100))
                .with_timestamp_assigner(|t: &Txn| t.ts),
        )
        .key_by("by-account", |t: &Txn| t.account)
        .connect_broadcast(&rules)
    }

    /// Checks the decisions committed to `dir/decisions` against the sequential model: every
    /// transaction decided once, with the limit in force at its time, each account's counts
    /// exactly `1..=n`, and the rules changing at least one decision.
    pub fn check(&self, dir: &Path, ctx: &str) {
        let rules: BTreeMap<i64, i64> = (0..self.rules)
            .map(|j| self.rule(j))
            .map(|r| (r.from, r.limit))
            .collect();
        let mut decided: BTreeMap<u64, Decision> = BTreeMap::new();
        let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for line in weir::engine::sink::read_committed_lines(dir.join("decisions")).unwrap() {
            let d: Decision = serde_json::from_str(&line).unwrap();
            counts.entry(d.account).or_default().push(d.count);
            let id = d.id;
            assert!(decided.insert(id, d).is_none(), "{ctx}: transaction {id} decided twice");
        }
        assert_eq!(
            decided.len() as u64,
            self.events,
            "{ctx}: every transaction decided once"
        );
        let mut per_account: BTreeMap<u64, u64> = BTreeMap::new();
        let mut flagged = 0;
        for i in 0..self.events {
            let t = self.txn(i);
            *per_account.entry(t.account).or_default() += 1;
            let limit = rules.range(..=t.ts).next_back().map_or(DEFAULT_LIMIT, |(_, l)| *l);
            let want = t.cents > limit;
            flagged += usize::from(want);
            assert_eq!(
                decided[&i].flagged, want,
                "{ctx}: transaction {i} decided with the wrong rule"
            );
        }
        for (account, n) in per_account {
            let mut got = counts.remove(&account).unwrap_or_default();
            got.sort_unstable();
            assert_eq!(got, (1..=n).collect::<Vec<_>>(), "{ctx}: account {account}: counts");
        }
        // The rules matter: the default alone would decide differently.
        let default_flagged = (0..self.events).filter(|&i| self.txn(i).cents > DEFAULT_LIMIT).count();
        assert_ne!(flagged, default_flagged, "{ctx}: the rules must change decisions");
    }
}
