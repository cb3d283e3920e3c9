//! The cancellation flag of one attempt, as user code and connectors see it.
//!
//! When an attempt fails or the job is cancelled, the runtime raises the flag of every
//! subtask of that attempt. A call that can wait for long (a producer whose queue stays
//! full, a retry loop against an external service) checks [`Cancellation::is_cancelled`]
//! between tries and gives up when it is set, so that failover does not wait for it (the
//! runtime's cancellation timeout ends the process otherwise).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the attempt a sink or source subtask belongs to was cancelled. Cheap to clone;
/// every clone sees the same flag. The default is a flag nobody raises (for tests and for a
/// writer created outside a running job).
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the attempt was cancelled: stop waiting and return an error.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Raises the flag for every clone.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_the_flag() {
        let a = Cancellation::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
        assert!(!Cancellation::default().is_cancelled(), "a new flag is its own");
    }
}
