//! Joins of two streams: the interval join (a keyed co-process buffering each side in sorted
//! map state by timestamp) and the window join and co-group (both inputs tagged into one
//! stream and grouped by the window operator).

pub mod interval;
pub(crate) mod window;
