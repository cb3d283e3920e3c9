//! A worker process: runs the subtasks the master assigns to it, exchanges data with the other
//! workers, and reports to the master.

pub(crate) mod attempt;
#[cfg(test)]
mod tests;
