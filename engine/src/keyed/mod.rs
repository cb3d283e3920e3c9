//! Keyed state and timers as user functions see them.

pub mod context;
pub(crate) mod event_time;
pub mod handles;
pub mod scope;
pub mod sort_key;
pub mod sorted;
pub mod timers;

pub use context::{KeyedContext, Timer};
pub use handles::{ListState, MapState, ValueState};
pub use scope::Ttl;
pub use sort_key::SortKey;
pub use sorted::SortedMapState;
pub use timers::TimeDomain;
