//! Nexmark on Weir: the queries ([`queries`]), the throughput harness shared with the benches
//! ([`harness`]), and the example's command line ([`cli`]).

pub mod cli;
pub mod harness;
pub mod queries;
