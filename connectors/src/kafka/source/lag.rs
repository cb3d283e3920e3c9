//! Consumer lag per partition, exported while the source reads: the partition's high
//! watermark minus the offset of the next record to hand out.
//!
//! High watermarks are asked of the broker (a ListOffsets request per partition) every five
//! seconds by a thread of the reader's own, with a consumer of its own, so a slow broker never
//! blocks reading. The reader turns them into lag gauges once a second. Nothing of this runs
//! when the process does not export metrics. A partition's gauge appears once its high
//! watermark is known.

use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_engine::connector::{ConsumerLag, OperatorMetrics};

/// How often the lag gauges are refreshed from the known high watermarks.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How often high watermarks are fetched.
const FETCH_INTERVAL: Duration = Duration::from_secs(5);

/// How long one partition's high watermark may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Not known yet.
const UNKNOWN: i64 = -1;

type Watched = Mutex<Vec<(String, i32, Arc<AtomicI64>)>>;

/// What the reader and its fetching thread share.
#[derive(Default)]
struct Shared {
    /// The partitions to fetch high watermarks of, and where to put them.
    partitions: Watched,
    stop: AtomicBool,
}

/// One partition's high watermark and gauge.
struct Tracked {
    topic: String,
    partition: i32,
    high: Arc<AtomicI64>,
    gauge: Option<ConsumerLag>,
}

/// The lag gauges of one reader's partitions.
pub(super) struct LagReporter {
    metrics: OperatorMetrics,
    tracked: Vec<Tracked>,
    shared: Arc<Shared>,
    next_report: Instant,
}

impl LagReporter {
    /// Starts fetching high watermarks with `consumer`; `None` when the process does not
    /// export metrics (nothing to report to).
    pub(super) fn start(metrics: &OperatorMetrics, consumer: BaseConsumer) -> Option<Self> {
        if !metrics.is_exported() {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let fetching = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-kafka-lag".into())
            .spawn(move || fetch_loop(&consumer, &fetching));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the Kafka source cannot report its lag: no thread");
            return None;
        }
        Some(LagReporter {
            metrics: metrics.clone(),
            tracked: Vec::new(),
            shared,
            next_report: Instant::now(),
        })
    }

    /// Refreshes the gauges when it is time: `partitions` are (topic, partition, next offset).
    pub(super) fn maybe_report<'a>(&mut self, partitions: impl Iterator<Item = (&'a str, i32, i64)>) {
        let now = Instant::now();
        if now < self.next_report {
            return;
        }
        self.next_report = now + REPORT_INTERVAL;
        for (topic, partition, next) in partitions {
            let i = match self
                .tracked
                .iter()
                .position(|t| t.partition == partition && t.topic == topic)
            {
                Some(i) => i,
                None => {
                    let high = Arc::new(AtomicI64::new(UNKNOWN));
                    self.shared.partitions.lock().unwrap_or_else(|e| e.into_inner()).push((
                        topic.to_string(),
                        partition,
                        high.clone(),
                    ));
                    self.tracked.push(Tracked {
                        topic: topic.to_string(),
                        partition,
                        high,
                        gauge: None,
                    });
                    self.tracked.len() - 1
                }
            };
            let t = &mut self.tracked[i];
            let high = t.high.load(Ordering::Relaxed);
            if high == UNKNOWN {
                continue;
            }
            let metrics = &self.metrics;
            t.gauge
                .get_or_insert_with(|| metrics.consumer_lag(topic, partition))
                .set(high - next.max(0));
        }
    }
}

impl Drop for LagReporter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn fetch_loop(consumer: &BaseConsumer, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let partitions = shared.partitions.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (topic, partition, high) in partitions {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match consumer.fetch_watermarks(&topic, partition, FETCH_TIMEOUT) {
                Ok((_, h)) => high.store(h, Ordering::Relaxed),
                Err(e) => tracing::debug!(error = %e, topic, partition, "fetching a high watermark for the lag failed"),
            }
        }
        // Soon again while the reader has named no partition yet, or one's high watermark is
        // still unknown.
        let pending = {
            let p = shared.partitions.lock().unwrap_or_else(|e| e.into_inner());
            p.is_empty() || p.iter().any(|(_, _, h)| h.load(Ordering::Relaxed) == UNKNOWN)
        };
        let wait = if pending {
            Duration::from_millis(100)
        } else {
            FETCH_INTERVAL
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
