//! The window join and co-group: both inputs are tagged into one stream ([`Tagged`]), keyed
//! by their key functions and grouped by the window operator, whose process contents keep every
//! record of a window (as Flink's `CoGroupedStreams` over a tagged union). When a window fires,
//! its records are split back into the two sides. Window state, timers, allowed lateness and
//! clean-up are the window operator's: a window's records are dropped once the watermark passes
//! its end plus the allowed lateness, and all of it is keyed state, checkpointed and rescaled
//! like any other.

use serde::{Deserialize, Serialize};

/// A record of either input of a window join or co-group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Tagged<A, B> {
    /// A record of the first input.
    First(A),
    /// A record of the second input.
    Second(B),
}

/// The records of a window split by input, each in arrival order.
pub(crate) fn split<A, B>(records: Vec<Tagged<A, B>>) -> (Vec<A>, Vec<B>) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for r in records {
        match r {
            Tagged::First(a) => first.push(a),
            Tagged::Second(b) => second.push(b),
        }
    }
    (first, second)
}
