//! # Weir
//!
//! An exactly-once stream processing engine. This facade re-exports the engine
//! ([`engine`], with its [`prelude`]), the connectors ([`connectors`]) and checkpoint storage
//! on object stores ([`object_storage`]).
//!
//! ```no_run
//! use weir::prelude::*;
//!
//! let p = Pipeline::new("running-sum").parallelism(2);
//! p.source("numbers", GeneratorSource::new(|i| (i % 10, i)).bounded(1_000))
//!     .key_by("by-key", |(k, _)| *k)
//!     .reduce("sum", |(k, a), (_, b)| (k, a + b))
//!     .sink("out", DiscardSink::new());
//! println!("{}", p.run().unwrap());
//! ```
#![warn(missing_docs)]
#![doc = ""]
#![doc = "---"]
#![doc = include_str!("../README.md")]

pub use weir_connectors as connectors;
pub use weir_engine as engine;
pub use weir_engine::prelude;
pub use weir_object_storage as object_storage;

/// The pages under `docs/`, compiled and run as doctests like the README, so that their code
/// keeps matching the API.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../docs/benchmarks.md")]
    mod benchmarks {}
    #[doc = include_str!("../docs/checkpoints.md")]
    mod checkpoints {}
    #[doc = include_str!("../docs/cluster.md")]
    mod cluster {}
    #[doc = include_str!("../docs/configuration.md")]
    mod configuration {}
    #[doc = include_str!("../docs/guide.md")]
    mod guide {}
    #[doc = include_str!("../docs/kafka.md")]
    mod kafka {}
    #[doc = include_str!("../docs/metrics.md")]
    mod metrics {}
    #[doc = include_str!("../docs/operations.md")]
    mod operations {}
    #[doc = include_str!("../docs/payments.md")]
    mod payments {}
}
