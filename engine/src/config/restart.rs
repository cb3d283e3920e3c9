//! Restart strategies: whether, and after how long, a failed job restarts from its latest
//! completed checkpoint.
//!
//! The default is failure-rate based: a job that runs for months survives any number of
//! transient failures as long as they are rare, and gives up only in a crash loop. Delays
//! carry random jitter so that many jobs failing together (a broker restart) do not restart
//! in lockstep.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, Instant};

/// What to do when a job fails.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart after `delay`, at most `max_attempts` times.
    FixedDelay {
        /// Restarts allowed over the job's life.
        max_attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart with a delay that grows by `multiplier` from `initial` up to `max`.
    ExponentialBackoff {
        /// First delay.
        initial: Duration,
        /// Largest delay.
        max: Duration,
        /// Growth factor per restart (at least 1).
        multiplier: f64,
        /// Restarts allowed over the job's life.
        max_attempts: u32,
    },
    /// Restart unless more than `max_failures` failures happened within the last `interval`
    /// (a sliding window: failures older than `interval` are forgotten). The delay before a
    /// restart is `delay` doubled for every other failure still in the window, at most
    /// `max_delay`, then multiplied by a random factor in `[1 - jitter, 1 + jitter]`.
    FailureRate {
        /// Failures tolerated within `interval`.
        max_failures: u32,
        /// The sliding window.
        interval: Duration,
        /// Wait before a restart after a failure with no other failure in the window.
        delay: Duration,
        /// Largest wait (before jitter).
        max_delay: Duration,
        /// Relative random spread of each delay, between 0 (none) and 1.
        jitter: f64,
    },
}

impl Default for RestartStrategy {
    /// Failure rate: at most 10 failures within 5 minutes; delays from 100 ms doubling up to
    /// 10 s while failures keep coming, with ±20 % jitter. A crash loop gives up after about
    /// a minute; a job failing once a day never does.
    fn default() -> Self {
        RestartStrategy::FailureRate {
            max_failures: 10,
            interval: Duration::from_secs(300),
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl RestartStrategy {
    /// Checks the parameters.
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            RestartStrategy::ExponentialBackoff {
                initial,
                max,
                multiplier,
                ..
            } => {
                if !(*multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err(crate::Error::config(format!(
                        "exponential backoff multiplier must be a finite number >= 1, got {multiplier}"
                    )));
                }
                if initial > max {
                    return Err(crate::Error::config(
                        "exponential backoff: initial delay exceeds the maximum",
                    ));
                }
                Ok(())
            }
            RestartStrategy::FailureRate { max_failures: 0, .. } => Err(crate::Error::config(
                "failure-rate restart strategy needs max_failures >= 1",
            )),
            RestartStrategy::FailureRate {
                delay,
                max_delay,
                jitter,
                ..
            } => {
                if !(0.0..=1.0).contains(jitter) {
                    return Err(crate::Error::config(format!(
                        "failure-rate restart strategy: jitter must be between 0 and 1, got {jitter}"
                    )));
                }
                if delay > max_delay {
                    return Err(crate::Error::config(
                        "failure-rate restart strategy: delay exceeds max_delay",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Tracks failures and applies a [`RestartStrategy`].
#[derive(Debug)]
pub(crate) struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    recent: VecDeque<Instant>,
    /// Source of jitter: a randomly keyed hash of a draw counter (no global state).
    seed: RandomState,
    draws: u64,
}

impl RestartTracker {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
            seed: RandomState::new(),
            draws: 0,
        }
    }

    /// Records a failure; returns the delay before restarting, or `None` to give up.
    pub(crate) fn on_failure(&mut self) -> Option<Duration> {
        self.on_failure_at(Instant::now())
    }

    /// [`on_failure`](Self::on_failure) for a failure at `now`.
    pub(crate) fn on_failure_at(&mut self, now: Instant) -> Option<Duration> {
        let delay = match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { max_attempts, delay } => (self.restarts < *max_attempts).then_some(*delay),
            RestartStrategy::ExponentialBackoff {
                initial,
                max,
                multiplier,
                max_attempts,
            } => (self.restarts < *max_attempts).then(|| {
                let d = initial.as_secs_f64() * multiplier.powi(self.restarts as i32);
                Duration::from_secs_f64(d.min(max.as_secs_f64()))
            }),
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
                max_delay,
                jitter,
            } => {
                self.recent.push_back(now);
                while self.recent.front().is_some_and(|t| now.duration_since(*t) > *interval) {
                    self.recent.pop_front();
                }
                let in_window = self.recent.len() as u32;
                if in_window > *max_failures {
                    None
                } else {
                    let doublings = (in_window - 1).min(30) as i32;
                    let base = (delay.as_secs_f64() * 2f64.powi(doublings)).min(max_delay.as_secs_f64());
                    let factor = 1.0 + jitter * (2.0 * uniform(&self.seed, &mut self.draws) - 1.0);
                    Some(Duration::from_secs_f64(base * factor))
                }
            }
        };
        if delay.is_some() {
            self.restarts += 1;
        }
        delay
    }

    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Why the strategy gave up, after [`on_failure`](Self::on_failure) returned `None`.
    pub(crate) fn gave_up_because(&self) -> String {
        match &self.strategy {
            RestartStrategy::None => "the restart strategy is None".to_string(),
            RestartStrategy::FixedDelay { max_attempts, .. }
            | RestartStrategy::ExponentialBackoff { max_attempts, .. } => {
                format!("all {max_attempts} restarts allowed are used")
            }
            RestartStrategy::FailureRate {
                max_failures, interval, ..
            } => format!(
                "{} failures within {interval:?}, more than the {max_failures} tolerated",
                self.recent.len()
            ),
        }
    }
}

/// A uniformly distributed number in `[0, 1)`: the `draws`-th output of a randomly keyed hash.
fn uniform(seed: &RandomState, draws: &mut u64) -> f64 {
    *draws += 1;
    let mut h = seed.build_hasher();
    h.write_u64(*draws);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_stops_after_max_attempts() {
        let mut t = RestartTracker::new(RestartStrategy::FixedDelay {
            max_attempts: 2,
            delay: Duration::from_millis(5),
        });
        assert_eq!(t.on_failure(), Some(Duration::from_millis(5)));
        assert_eq!(t.on_failure(), Some(Duration::from_millis(5)));
        assert_eq!(t.on_failure(), None);
        assert_eq!(t.restarts(), 2);
    }

    #[test]
    fn exponential_backoff_grows_and_caps() {
        let mut t = RestartTracker::new(RestartStrategy::ExponentialBackoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(35),
            multiplier: 2.0,
            max_attempts: 5,
        });
        let ds: Vec<_> = (0..6).map(|_| t.on_failure()).collect();
        assert_eq!(
            ds,
            vec![
                Some(Duration::from_millis(10)),
                Some(Duration::from_millis(20)),
                Some(Duration::from_millis(35)),
                Some(Duration::from_millis(35)),
                Some(Duration::from_millis(35)),
                None
            ]
        );
    }

    fn failure_rate(max_failures: u32, interval_s: u64, jitter: f64) -> RestartStrategy {
        RestartStrategy::FailureRate {
            max_failures,
            interval: Duration::from_secs(interval_s),
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            jitter,
        }
    }

    #[test]
    fn failure_rate_gives_up_when_too_many_failures_in_the_window() {
        let mut t = RestartTracker::new(failure_rate(2, 60, 0.0));
        assert!(t.on_failure().is_some());
        assert!(t.on_failure().is_some());
        assert!(t.on_failure().is_none());
        assert_eq!(t.gave_up_because(), "3 failures within 60s, more than the 2 tolerated");
    }

    #[test]
    fn failure_rate_forgets_failures_older_than_the_window() {
        let mut t = RestartTracker::new(failure_rate(2, 60, 0.0));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(t.on_failure_at(at(0)).is_some());
        assert!(t.on_failure_at(at(30)).is_some());
        // Three failures within 60 s: too many.
        assert!(t.on_failure_at(at(59)).is_none());
        // The failures at 0 s and 30 s have left the window by 91 s: two in it, tolerated.
        assert_eq!(t.on_failure_at(at(91)), Some(Duration::from_millis(200)));
        // Hundreds of failures over a long life, each alone in its window, never give up.
        for day in 1..=500u64 {
            assert_eq!(
                t.on_failure_at(at(86_400 * day)),
                Some(Duration::from_millis(100)),
                "day {day}"
            );
        }
    }

    #[test]
    fn failure_rate_backs_off_while_failures_keep_coming_up_to_the_cap() {
        let mut t = RestartTracker::new(failure_rate(10, 300, 0.0));
        let t0 = Instant::now();
        let ds: Vec<u128> = (0..6)
            .map(|i| t.on_failure_at(t0 + Duration::from_secs(i)).unwrap().as_millis())
            .collect();
        assert_eq!(ds, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_varies() {
        let mut delays = Vec::new();
        for _ in 0..500 {
            // A new tracker per draw: every delay is a first failure's (base 100 ms).
            let mut t = RestartTracker::new(failure_rate(10, 300, 0.2));
            delays.push(t.on_failure().unwrap());
        }
        let (lo, hi) = (Duration::from_millis(80), Duration::from_millis(120));
        assert!(delays.iter().all(|d| *d >= lo && *d <= hi), "{delays:?}");
        let below = delays.iter().filter(|d| **d < Duration::from_millis(100)).count();
        assert!(
            (100..=400).contains(&below),
            "jitter should spread delays on both sides of 100 ms: {below} of 500 below"
        );
    }

    #[test]
    fn the_default_is_failure_rate_based_and_valid() {
        let d = RestartStrategy::default();
        assert!(
            matches!(d, RestartStrategy::FailureRate { max_failures: 10, .. }),
            "{d:?}"
        );
        d.validate().unwrap();
        assert!(failure_rate(1, 1, 1.5).validate().is_err());
    }

    #[test]
    fn none_never_restarts() {
        assert_eq!(RestartTracker::new(RestartStrategy::None).on_failure(), None);
    }

    #[test]
    fn invalid_parameters_are_config_errors() {
        let bad = RestartStrategy::ExponentialBackoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: 1,
        };
        assert_eq!(bad.validate().unwrap_err().kind(), crate::ErrorKind::Config);
    }
}
