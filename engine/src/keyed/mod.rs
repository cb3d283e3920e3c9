//! Keyed state and timers as user functions see them.

pub mod context;
pub mod descriptors;
pub(crate) mod event_time;
pub mod handles;
pub mod restore_check;
pub mod schema;
pub mod scope;
pub mod sort_key;
pub mod sorted;
pub mod timers;

#[cfg(test)]
mod tests;

pub use context::{KeyedContext, Timer};
pub use descriptors::{
    ListStateDescriptor, MapStateDescriptor, SortedMapStateDescriptor, StateDeclaration, StateDescriptor, StateKind,
    ValueStateDescriptor,
};
pub use handles::{ListState, MapState, ValueState};
pub use schema::{Format, StateCodec};
pub use scope::Ttl;
pub use sort_key::SortKey;
pub use sorted::SortedMapState;
pub use timers::TimeDomain;
