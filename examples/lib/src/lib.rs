//! Weir's example jobs as a library, shared by the example programs (`examples/*.rs`), the
//! benches (`benches/*.rs`) and the integration tests (`tests/it/`):
//!
//! - [`payments`]: card payments, exactly once, through a disaster-recovery drill, verified
//!   against a sequential model;
//! - [`recovery`]: the recovery-time benchmark (RTO phase by phase, RPO audit);
//! - [`nexmark`]: Nexmark queries q0, q1, q2, q5 and q7 and the throughput harness;
//! - [`wordcount`]: word count on keyed state with exactly-once file output and its audit;
//! - [`peer`]: the keyed running sum of the Flink peer (`shared/peer/flink`), same formulas and figures;
//! - [`running_sum`]: the keyed running sum the throughput and cluster benchmarks measure;
//! - [`latest_value`]: the latest value per key, the state-heavy workload of the cluster and
//!   object storage benchmarks.
//!
//! The crate uses the engine, the connectors and the object storage directly (`weir-engine`,
//! `weir-connectors`, `weir-object-storage`),
//! not the `weir` facade, which has it as a dev-dependency.

pub mod latest_value;
pub mod logging;
pub mod nexmark;
pub mod payments;
pub mod peer;
pub mod recovery;
pub mod running_sum;
pub mod wordcount;
