//! Rates over the last few seconds: the status server samples every subtask's counters
//! periodically and compares the newest sample with the oldest one in the window.

use super::SubtaskCounters;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far back rates look.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);

/// A subtask's rates: records in/s, records out/s, fraction of time blocked sending.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    pub(crate) rate_in: f64,
    pub(crate) rate_out: f64,
    pub(crate) backpressure: f64,
}

struct Sample {
    at: Instant,
    attempt: u32,
    counters: HashMap<(u32, u32), SubtaskCounters>,
}

/// Samples of one attempt's counters within [`WINDOW`].
#[derive(Default)]
pub(crate) struct RateWindow {
    samples: VecDeque<Sample>,
}

impl RateWindow {
    /// Adds a sample taken at `at`; a new attempt (its counters start at 0) starts over.
    pub(crate) fn sample(&mut self, at: Instant, attempt: u32, counters: &[SubtaskCounters]) {
        if self.samples.back().is_some_and(|s| s.attempt != attempt) {
            self.samples.clear();
        }
        self.samples.push_back(Sample {
            at,
            attempt,
            counters: counters.iter().map(|c| ((c.step, c.subtask), *c)).collect(),
        });
        // Keep one sample older than the window, so that the window is always covered.
        while self.samples.len() > 2 && self.samples[1].at + WINDOW <= at {
            self.samples.pop_front();
        }
    }

    /// The rates of every subtask between the oldest and the newest sample (none before two
    /// samples of the same attempt).
    pub(crate) fn rates(&self) -> HashMap<(u32, u32), Rates> {
        let (Some(old), Some(new)) = (self.samples.front(), self.samples.back()) else {
            return HashMap::new();
        };
        let secs = new.at.saturating_duration_since(old.at).as_secs_f64();
        if secs <= 0.0 {
            return HashMap::new();
        }
        new.counters
            .iter()
            .map(|(k, n)| {
                let o = old.counters.get(k).copied().unwrap_or_default();
                let blocked = n.blocked_ns.saturating_sub(o.blocked_ns) as f64 / 1e9;
                (
                    *k,
                    Rates {
                        rate_in: n.records_in.saturating_sub(o.records_in) as f64 / secs,
                        rate_out: n.records_out.saturating_sub(o.records_out) as f64 / secs,
                        backpressure: (blocked / secs).clamp(0.0, 1.0),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(records: u64, blocked_ns: u64) -> SubtaskCounters {
        SubtaskCounters {
            records_in: records,
            records_out: records * 2,
            blocked_ns,
            ..Default::default()
        }
    }

    #[test]
    fn rates_over_the_window_and_reset_on_a_new_attempt() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        assert!(w.rates().is_empty());
        w.sample(t0, 1, &[c(0, 0)]);
        w.sample(t0 + Duration::from_secs(2), 1, &[c(1000, 500_000_000)]);
        let r = w.rates()[&(0, 0)];
        assert_eq!(r.rate_in, 500.0);
        assert_eq!(r.rate_out, 1000.0);
        assert_eq!(r.backpressure, 0.25);
        // Old samples leave the window.
        w.sample(t0 + Duration::from_secs(8), 1, &[c(1000, 500_000_000)]);
        w.sample(t0 + Duration::from_secs(14), 1, &[c(7000, 500_000_000)]);
        assert_eq!(w.rates()[&(0, 0)].rate_in, 1000.0);
        // A new attempt's counters start at 0: no negative rates.
        w.sample(t0 + Duration::from_secs(15), 2, &[c(10, 0)]);
        assert!(w.rates().values().all(|r| r.rate_in == 0.0));
    }
}
