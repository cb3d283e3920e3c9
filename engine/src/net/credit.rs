//! Credit-based flow control, per channel (as in Flink since 1.5): a sender may have at most
//! `capacity` messages of a channel in flight or queued at the receiver; the receiver gives
//! credits back as its subtask takes messages out. A channel whose receiver stops reading
//! (during barrier alignment, or backpressure) runs out of credits and holds only its own
//! upstream subtask: the other channels on the same connection keep flowing.
//!
//! Invariant per channel: `sender credits + in flight + queued at the receiver + taken but not
//! yet returned = capacity`. Credits go back in batches of `capacity / 2` (rounded up), so a
//! receiver waiting on an empty channel always leaves the sender at least one credit.

use super::frame::{write_frame, ChannelId, CreditFrame};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};

/// How many taken messages the receiver gives back at once.
pub(crate) fn batch_threshold(capacity: u32) -> u32 {
    capacity.div_ceil(2).max(1)
}

/// The credit direction of one data connection (receiver to sender). Set once the sending
/// worker connected; before that nothing can have arrived, so nothing is owed.
#[derive(Debug, Default)]
pub(crate) struct CreditLink {
    stream: Mutex<Option<TcpStream>>,
}

impl CreditLink {
    /// Starts sending credits on `stream`.
    pub(crate) fn attach(&self, stream: TcpStream) {
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
    }

    /// Closes the connection, never inside a credit frame.
    pub(crate) fn close(&self) {
        if let Some(s) = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Gives `n` credits of `channel` back. A failed write closes the connection: the reader
    /// on this side sees it end and disconnects the connection's channels.
    fn give(&self, channel: ChannelId, n: u32) {
        let mut frame = Vec::with_capacity(16);
        if write_frame(&mut frame, &CreditFrame { channel, n }).is_err() {
            return;
        }
        let mut guard = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = guard.as_mut() {
            let sent = s.write_all(&frame).and_then(|_| s.flush());
            if let Err(e) = sent {
                tracing::debug!(%channel, error = %e, "giving credits back failed; closing the data connection");
                let _ = s.shutdown(Shutdown::Both);
                *guard = None;
            }
        }
    }
}

/// The receiving subtask's side of one remote channel: counts what it took and gives the
/// credits back in batches.
#[derive(Debug)]
pub(crate) struct CreditReturn {
    channel: ChannelId,
    taken: u32,
    threshold: u32,
    link: Arc<CreditLink>,
}

impl CreditReturn {
    pub(crate) fn new(channel: ChannelId, capacity: u32, link: Arc<CreditLink>) -> Self {
        CreditReturn {
            channel,
            taken: 0,
            threshold: batch_threshold(capacity),
            link,
        }
    }

    /// The subtask took one message of the channel out of its queue.
    pub(crate) fn taken(&mut self) {
        self.taken += 1;
        if self.taken >= self.threshold {
            self.link.give(self.channel, self.taken);
            self.taken = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_receiver_always_leaves_the_sender_a_credit() {
        for capacity in 1..=64u32 {
            let t = batch_threshold(capacity);
            assert!(t >= 1 && t <= capacity, "capacity {capacity}: threshold {t}");
            // The receiver waits with at most t - 1 taken and not returned, nothing queued and
            // nothing in flight: the sender holds the rest.
            assert!(capacity - (t - 1) >= 1, "capacity {capacity}");
        }
    }
}
