//! Event time: how timestamps are assigned and watermarks generated.

use crate::data::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// Extracts a record's event time.
pub type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// How a stream's records get timestamps and how its watermarks follow them.
///
/// The watermark after a batch is `max timestamp seen - out_of_orderness - 1`: a record more
/// than `out_of_orderness` older than the newest one seen may be late. With idleness set, a
/// subtask that saw no record for that long declares itself idle so it does not hold back
/// event time downstream; its next record makes it active again.
///
/// The largest timestamp seen is part of every checkpoint: after a restore the assigner
/// continues from it, so its watermarks after each record are those of a run without failure
/// (idleness, which follows the wall clock, starts again as active).
pub struct WatermarkStrategy<T> {
    pub(crate) timestamp: Option<TimestampFn<T>>,
    pub(crate) out_of_orderness: Duration,
    pub(crate) idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamp: self.timestamp.clone(),
            out_of_orderness: self.out_of_orderness,
            idleness: self.idleness,
        }
    }
}

impl<T> std::fmt::Debug for WatermarkStrategy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("out_of_orderness", &self.out_of_orderness)
            .field("idleness", &self.idleness)
            .finish()
    }
}

impl<T> WatermarkStrategy<T> {
    /// Records arrive at most `d` out of order.
    pub fn bounded_out_of_orderness(d: Duration) -> Self {
        WatermarkStrategy {
            timestamp: None,
            out_of_orderness: d,
            idleness: None,
        }
    }

    /// Timestamps never decrease.
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(Duration::ZERO)
    }

    /// Takes each record's timestamp from `f` (otherwise the source's timestamp is kept).
    pub fn with_timestamp_assigner(mut self, f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(f));
        self
    }

    /// Declares a subtask idle after `d` without records.
    pub fn with_idleness(mut self, d: Duration) -> Self {
        self.idleness = Some(d);
        self
    }
}

/// The event time of one input channel of a subtask, as its input gate saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelWatermark {
    /// The highest watermark the channel delivered.
    pub watermark: Timestamp,
    /// Whether the channel was idle (left out of the combined watermark).
    pub idle: bool,
}
