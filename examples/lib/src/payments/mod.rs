//! Card payments, exactly once, through a disaster-recovery drill: [`domain`] (events and
//! outputs), [`rules`] (authorization, fraud and refund rules), [`fraud_rules`] (the rules stream), [`generator`], [`pipeline`]
//! (the Weir job), [`kafka`] (the job against Kafka), [`model`] (the sequential model),
//! [`audit`] (verification), [`drill`] (supervisor and failure injection), [`savepoints`]
//! (savepoints on request), [`rescale`] (the rescale drill), [`report`]
//! (progress bar and summary tables), [`cli`] (the example's flags and its runs),
//! [`configuration`] (`--config FILE` under the flags).

pub mod audit;
pub mod cli;
pub mod configuration;
pub mod domain;
pub mod dr;
pub mod drill;
pub mod fraud_rules;
pub mod generator;
pub mod kafka;
#[cfg(test)]
mod logic_tests;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod rescale;
pub mod rules;
pub mod savepoints;
