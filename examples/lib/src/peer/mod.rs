//! The peer workload: the keyed running sum `shared/peer/flink` runs on Apache Flink
//! (`PaymentSumJob.java`), on Weir's public API, with the same event formulas, the same
//! scenarios and the same figures under the same names, so that `benches/peer/compare.sh` can
//! put both engines side by side.
//!
//! ```text
//! generator (2 splits, contiguous halves of the index range, offsets checkpointed)
//!   event i: account = (i * 2654435761) mod KEYS, cents = 1 + mix64(i) mod 100000, seq = i
//! -> fail-once map (fails the attempt the first time it sees event FAIL_AT)
//! -> key_by(account) -> running sum in value state (pad > 0: 8-byte sum + pad bytes)
//! -> discarding sink
//! ```
//!
//! - [`args`]: the `key=value` arguments and their defaults (the Java job's names);
//! - [`workload`]: the event formulas, the fail-once map and the running sum;
//! - [`probe`]: the counters the operators bump and the sampler reads;
//! - [`figures`]: throughput, recovery and machine-load figures from the samples;
//! - [`run`]: one run of one scenario, printing `weir <key>=<value>` lines.

pub mod args;
pub mod figures;
pub mod probe;
pub mod run;
pub mod workload;
