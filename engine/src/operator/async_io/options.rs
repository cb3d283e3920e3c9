//! How an async step calls its service: result order, the bound on requests in flight, the
//! timeout of a request and its retries (Flink's `AsyncDataStream` arguments and
//! `AsyncRetryStrategy`).

use crate::side_output::BadRecordPolicy;
use crate::{Error, Result};
use std::time::Duration;

/// The order in which an async step emits results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultOrder {
    /// In input order (Flink's `orderedWait`): a slow request holds back the results of later
    /// records.
    Ordered,
    /// As requests complete (Flink's `unorderedWait`), but never across a watermark: results
    /// of records before a watermark are emitted before it, those after it after it.
    Unordered,
}

/// Retries of a request whose call returned an error (Flink's `AsyncRetryStrategy`). The
/// request's timeout covers all its attempts and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryStrategy {
    /// Calls per request at most, the first included (1: no retry).
    pub max_attempts: u32,
    /// The wait before the first retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Factor applied to the wait after each retry (1.0: a fixed delay).
    pub multiplier: f64,
}

impl RetryStrategy {
    /// No retry: an error of the call is the request's outcome.
    pub fn none() -> Self {
        Self::fixed_delay(1, Duration::ZERO)
    }

    /// Up to `max_attempts` calls, `delay` apart.
    pub fn fixed_delay(max_attempts: u32, delay: Duration) -> Self {
        RetryStrategy {
            max_attempts,
            initial_backoff: delay,
            max_backoff: delay,
            multiplier: 1.0,
        }
    }

    /// Up to `max_attempts` calls; the wait starts at `initial`, is multiplied by `multiplier`
    /// after each retry and never exceeds `max`.
    pub fn exponential(max_attempts: u32, initial: Duration, max: Duration, multiplier: f64) -> Self {
        RetryStrategy {
            max_attempts,
            initial_backoff: initial,
            max_backoff: max,
            multiplier,
        }
    }

    /// The wait after failed attempt `attempt` (1 for the first call).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
        let wait = self.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(wait.min(self.max_backoff.as_secs_f64()))
    }
}

/// The options of an async step (see [`Stream::async_map`](crate::api::Stream::async_map)).
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncOptions {
    /// Result order.
    pub order: ResultOrder,
    /// Records of one subtask whose results are not emitted yet, at most (Flink's
    /// `capacity`); also the bound on its concurrent calls. When full, the subtask waits for
    /// a result before it takes the next record: backpressure.
    pub capacity: usize,
    /// How long one request (all its attempts) may take before the function's
    /// [`timeout`](crate::functions::AsyncFunction::timeout) decides its outcome.
    pub timeout: Duration,
    /// Retries of a call that returned an error.
    pub retry: RetryStrategy,
    /// What happens to a record whose call failed (after its retries): fail the job, skip it,
    /// or send it to the dead letters.
    pub on_error: BadRecordPolicy,
}

impl AsyncOptions {
    /// Results in input order; capacity 100, no retry, errors fail the job.
    pub fn ordered(timeout: Duration) -> Self {
        AsyncOptions {
            order: ResultOrder::Ordered,
            capacity: 100,
            timeout,
            retry: RetryStrategy::none(),
            on_error: BadRecordPolicy::Fail,
        }
    }

    /// Results as they complete, within watermarks; otherwise as [`ordered`](Self::ordered).
    pub fn unordered(timeout: Duration) -> Self {
        AsyncOptions {
            order: ResultOrder::Unordered,
            ..Self::ordered(timeout)
        }
    }

    /// Sets the capacity (records in flight per subtask).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the retry strategy.
    pub fn retry(mut self, retry: RetryStrategy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the policy for records whose call failed.
    pub fn on_error(mut self, policy: BadRecordPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// Checks the options of step `step`.
    ///
    /// # Errors
    /// `Config` for a capacity of 0, a zero timeout, no attempt, or a backoff multiplier below 1.
    pub fn validate(&self, step: &str) -> Result<()> {
        let wrong = |what: String| Err(Error::config(format!("async step \"{step}\": {what}")));
        if self.capacity == 0 {
            return wrong("capacity must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return wrong("timeout must be longer than zero".into());
        }
        if self.retry.max_attempts == 0 {
            return wrong("the retry strategy must allow at least 1 attempt".into());
        }
        if self.retry.multiplier.is_nan() || self.retry.multiplier < 1.0 {
            return wrong(format!(
                "the retry backoff multiplier must be at least 1.0, not {}",
                self.retry.multiplier
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_grows_up_to_its_maximum() {
        let r = RetryStrategy::exponential(5, Duration::from_millis(10), Duration::from_millis(35), 2.0);
        let waits: Vec<_> = (1..=4).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![10, 20, 35, 35]);
        assert_eq!(
            RetryStrategy::fixed_delay(3, Duration::from_millis(7))
                .backoff(3)
                .as_millis(),
            7
        );
    }

    #[test]
    fn invalid_options_name_the_step() {
        let err = AsyncOptions::ordered(Duration::from_secs(1))
            .capacity(0)
            .validate("enrich")
            .unwrap_err();
        assert!(err.to_string().contains("async step \"enrich\": capacity"), "{err}");
        assert!(AsyncOptions::ordered(Duration::ZERO).validate("enrich").is_err());
        assert!(AsyncOptions::unordered(Duration::from_secs(1))
            .validate("enrich")
            .is_ok());
    }
}
