//! Restart strategies: whether, and after how long, a failed job restarts from its latest
//! completed checkpoint.

use std::collections::VecDeque;
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
    /// Restart after `delay` unless more than `max_failures` happened within `interval`.
    FailureRate {
        /// Failures tolerated within `interval`.
        max_failures: u32,
        /// The sliding window.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl Default for RestartStrategy {
    /// Fixed delay of 100 ms, up to 10 restarts.
    fn default() -> Self {
        RestartStrategy::FixedDelay {
            max_attempts: 10,
            delay: Duration::from_millis(100),
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
}

impl RestartTracker {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure; returns the delay before restarting, or `None` to give up.
    pub(crate) fn on_failure(&mut self) -> Option<Duration> {
        let now = Instant::now();
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
            } => {
                self.recent.push_back(now);
                while self.recent.front().is_some_and(|t| now.duration_since(*t) > *interval) {
                    self.recent.pop_front();
                }
                (self.recent.len() as u32 <= *max_failures).then_some(*delay)
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

    #[test]
    fn failure_rate_gives_up_when_too_many_failures_in_the_window() {
        let mut t = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: Duration::ZERO,
        });
        assert!(t.on_failure().is_some());
        assert!(t.on_failure().is_some());
        assert!(t.on_failure().is_none());
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
