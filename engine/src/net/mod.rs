//! The data plane between worker processes: the channels of an attempt whose upstream and
//! downstream subtasks run in different processes travel over TCP, one connection per pair
//! of workers and attempt, carrying records, watermarks, barriers and end of stream of every
//! channel in order, with per-channel credit-based flow control ([`credit`]).
//!
//! Channels between subtasks of one process stay in-memory queues. Records cross as bincode
//! batches and are decoded with the record type the receiving process knows from the same
//! graph ([`BatchCodec`](crate::data::BatchCodec)); a connection from another job, another
//! build of the program or an attempt that is over is refused at its first frame.

pub(crate) mod credit;
pub(crate) mod frame;
pub(crate) mod inbound;
pub(crate) mod outbound;
mod settings;
#[cfg(test)]
mod tests;

pub use frame::{ChannelId, WorkerId};
pub use settings::NetSettings;
