//! Testing your functions and Weir itself.
//!
//! - [`harness`]: runs one user function (a keyed process function, a window, a map or
//!   flat-map, a fallible step) through the same operator code a pipeline runs, fed by hand:
//!   records, watermarks and processing time; its output, side outputs, keyed state and timers
//!   can be read, and it can be snapshotted and restored, also into another subtask range.
//! - [`WatchedServer`] (feature `testing`): real servers Weir's own tests start (a
//!   Kafka-protocol broker, etcd, an S3-compatible server).

pub mod harness;
#[cfg(any(test, feature = "testing"))]
mod servers;

#[cfg(any(test, feature = "testing"))]
pub use servers::WatchedServer;
