//! Fraud rules that change while the job runs: the risk team publishes a new rule set every
//! [`RULES_PERIOD_MS`] of event time, each effective from a point in event time, on a rules
//! stream that the job broadcasts to every `authorize` subtask.
//!
//! A change is published ahead of the payments it governs and says how far ahead the rules are
//! known: [`RuleChange::published_through`], the event time up to which no other change can
//! take effect. A payment at event time `t` is decided by the rule set in force at `t` (the
//! change with the latest `effective_from <= t`), and only once the rules are published through
//! `t`; until then `authorize` holds it back. That is what makes decisions independent of when
//! the broadcast records happen to arrive, and lets the sequential model apply the same changes
//! ([`rules_at`]) and expect exactly the same decisions.

use super::domain::EventTime;
use super::generator::{Workload, START_MS, STEP_MS};
use serde::{Deserialize, Serialize};
use weir_engine::prelude::GeneratorSource;
use weir_engine::source::generator::mix;

/// Event time between two rule changes: five minutes.
pub const RULES_PERIOD_MS: EventTime = 5 * 60_000;
/// `published_through` of the last change: its rule set holds for the rest of the stream.
pub const FOREVER: EventTime = EventTime::MAX / 2;

/// The parameters of the fraud rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudRules {
    /// Which rule set this is (the change's number): fraud alerts name it.
    pub version: u32,
    /// Approved payments allowed within the velocity window; one more is declined as fraud.
    pub velocity_max_approved: usize,
    /// Approved payments needed before the amount-spike rule applies.
    pub spike_min_history: u64,
    /// A payment above this multiple of the customer's average approved amount is a spike.
    pub spike_factor: i64,
}

/// One record of the rules stream: a rule set, in force from `effective_from` until the next
/// change, and the promise that no other change takes effect up to `published_through`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    pub effective_from: EventTime,
    pub published_through: EventTime,
    pub rules: FraudRules,
}

/// The rule set of change `k` of the workload seeded `seed`: the velocity limit between 4 and 8
/// approved payments a minute, the spike factor between 6 and 10 (the first change keeps the
/// long-standing 6 and 8).
pub fn rules_of(seed: u64, k: u32) -> FraudRules {
    if k == 0 {
        return FraudRules {
            version: 0,
            velocity_max_approved: 6,
            spike_min_history: 5,
            spike_factor: 8,
        };
    }
    let m = mix(seed ^ 0x00F2_A0D5, k as u64);
    FraudRules {
        version: k,
        velocity_max_approved: 4 + (m % 5) as usize,
        spike_min_history: 3 + (m >> 8) % 4,
        spike_factor: 6 + ((m >> 16) % 5) as i64,
    }
}

/// How many changes the rules stream of `w` carries: one per period of the input's event time,
/// and the first in force from the start.
pub fn change_count(w: &Workload) -> u32 {
    let span = w.events.max(1) as EventTime * STEP_MS;
    (span / RULES_PERIOD_MS + 1) as u32
}

/// Change `k` of `w`'s rules stream (`k < change_count(w)`).
pub fn change(w: &Workload, k: u32) -> RuleChange {
    let last = change_count(w) - 1;
    RuleChange {
        effective_from: if k == 0 {
            EventTime::MIN
        } else {
            START_MS + k as EventTime * RULES_PERIOD_MS
        },
        published_through: if k >= last {
            FOREVER
        } else {
            START_MS + (k as EventTime + 1) * RULES_PERIOD_MS - 1
        },
        rules: rules_of(w.seed, k),
    }
}

/// The rule set in force at event time `t`: what the sequential model applies.
pub fn rules_at(w: &Workload, t: EventTime) -> FraudRules {
    let k = if t < START_MS + RULES_PERIOD_MS {
        0
    } else {
        ((t - START_MS) / RULES_PERIOD_MS).min(change_count(w) as EventTime - 1) as u32
    };
    rules_of(w.seed, k)
}

/// The rules stream of `w`, in order (one split), optionally paced at `rate` changes per
/// second (default: all at once, as a schedule published in advance).
pub fn source(w: &Workload, rate: Option<f64>) -> GeneratorSource<RuleChange> {
    let workload = *w;
    let source = GeneratorSource::new(move |k| change(&workload, k as u32)).bounded(change_count(w) as u64);
    match rate {
        Some(r) => source.rate_per_second(r),
        None => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changes_tile_event_time_and_agree_with_rules_at() {
        let w = Workload {
            events: 60_000,
            seed: 7,
        };
        let n = change_count(&w);
        assert_eq!(n, 5, "60k events of 20 ms are 20 minutes: four periods and the first");
        for k in 0..n {
            let c = change(&w, k);
            assert!(c.published_through >= c.effective_from);
            if k + 1 < n {
                assert_eq!(change(&w, k + 1).effective_from, c.published_through + 1);
            }
            assert_eq!(
                rules_at(&w, c.published_through.min(START_MS + 10 * RULES_PERIOD_MS)),
                c.rules
            );
            if k > 0 {
                assert_eq!(rules_at(&w, c.effective_from), c.rules);
                assert_eq!(rules_at(&w, c.effective_from - 1), change(&w, k - 1).rules);
            }
        }
        assert_eq!(change(&w, n - 1).published_through, FOREVER);
        assert_eq!(rules_at(&w, START_MS - 1_000_000), rules_of(7, 0));
    }

    #[test]
    fn the_rules_change_over_the_stream() {
        let w = Workload {
            events: 600_000,
            seed: 3,
        };
        let distinct: std::collections::BTreeSet<(usize, i64)> = (0..change_count(&w))
            .map(|k| {
                let r = rules_of(w.seed, k);
                (r.velocity_max_approved, r.spike_factor)
            })
            .collect();
        assert!(distinct.len() > 3, "{distinct:?}");
    }
}
