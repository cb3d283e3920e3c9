//! The typed pipeline API: [`Pipeline`], [`Stream`], [`KeyedStream`], connected streams and
//! windows. Every step has a stable name; checkpointed state is addressed by it.

pub mod configure;
pub mod connected;
pub mod join;
pub mod keyed;
pub(crate) mod partition;
pub mod pipeline;
mod settings;
pub mod stream;
pub mod window;

pub use connected::{ConnectedKeyedStreams, ConnectedStreams};
pub use join::{
    Groups, IntervalJoin, IntervalJoined, Pairs, WindowJoin, WindowJoinKeys, WindowJoinWhere, WindowedJoin,
};
pub use keyed::KeyedStream;
pub use pipeline::Pipeline;
pub use stream::{SinkStep, Stream};
pub use window::{Session, SlidingEventTime, TimeWindow, TumblingEventTime, WindowAssigner, Windowed, WindowedStream};
