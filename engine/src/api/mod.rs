//! The typed pipeline API: [`Pipeline`], [`Stream`], [`KeyedStream`], connected streams and
//! windows. Every step has a stable name; checkpointed state is addressed by it.

mod async_io;
pub mod broadcast;
pub mod configure;
pub mod connected;
mod fallible;
mod functions;
pub mod join;
pub mod keyed;
pub(crate) mod partition;
pub mod pipeline;
mod settings;
pub(crate) mod side_output;
pub mod stream;
pub mod window;

pub use broadcast::{BroadcastConnectedKeyedStream, BroadcastConnectedStream};
pub use connected::{ConnectedKeyedStreams, ConnectedStreams};
pub use join::{
    Groups, IntervalJoin, IntervalJoined, Pairs, WindowJoin, WindowJoinKeys, WindowJoinWhere, WindowedJoin,
};
pub use keyed::KeyedStream;
pub use pipeline::Pipeline;
pub use stream::{SinkStep, Stream};
pub use window::{
    Evictor, GlobalWindows, Session, SlidingEventTime, SlidingProcessingTime, Stamped, TimeWindow, Trigger,
    TriggerContext, TriggerResult, TumblingEventTime, TumblingProcessingTime, WindowAssigner, WindowTime, Windowed,
    WindowedStream,
};
