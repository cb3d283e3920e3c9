//! The recovery-time benchmark, shared by `examples/recovery.rs` and `benches/recovery.rs`:
//! [`workload`] (the job and its input schedule), [`worker`] (the worker process), [`run`]
//! (the supervisor: one run), [`analysis`] (phases), [`audit`] (RPO), [`report`] (table, CSV,
//! JSON), [`plot`] (PNG), [`cli`] (flags).

pub mod analysis;
pub mod audit;
pub mod cli;
pub mod plot;
pub mod report;
pub mod run;
pub mod worker;
pub mod workload;
