//! What crosses a data connection between two worker processes, and how it is framed.
//!
//! A frame is a 4-byte little-endian length followed by the bincode encoding of one value.
//! A connection opens with a [`Hello`] from the sending worker and a [`HelloReply`]; then the
//! sender writes [`DataFrame`]s and the receiver writes [`CreditFrame`]s on the same socket.

use crate::data::{BatchCodec, Timestamp};
use crate::message::{Barrier, Message};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// The largest frame either side accepts: a bigger length means a peer that does not speak
/// this protocol (or a corrupt stream), not a large batch.
pub(crate) const MAX_FRAME_BYTES: usize = 256 << 20;

/// Version of this protocol; both sides must speak the same one.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// Identifies a worker process of a job (stable across its restarts).
pub type WorkerId = u32;

/// One channel of an attempt: from subtask `from` of the upstream step of `edge` to subtask
/// `to` of its downstream step. Every process derives the same ids from the same graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId {
    /// Index of the logical edge in the job graph.
    pub edge: u32,
    /// Upstream subtask.
    pub from: u32,
    /// Downstream subtask.
    pub to: u32,
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "edge {} [{} -> {}]", self.edge, self.from, self.to)
    }
}

/// The first frame of a data connection: who sends, for which job and attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) protocol: u32,
    pub(crate) job: String,
    /// Hash of the job graph and configuration: equal only when both run the same program.
    pub(crate) fingerprint: u64,
    pub(crate) attempt: u32,
    pub(crate) from: WorkerId,
}

/// The receiver's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HelloReply {
    Accepted,
    Refused(String),
}

/// A message of the data stream in its wire form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireMessage {
    /// Records, encoded by [`ErasedBatch::encode`](crate::data::ErasedBatch::encode).
    Batch(Vec<u8>),
    Watermark(Timestamp),
    Idle(bool),
    Barrier(Barrier),
    End,
    /// The upstream subtask stopped without ending its stream (it failed or was cancelled):
    /// the receiver disconnects the channel, as a local channel whose sender is dropped.
    Closed,
}

impl WireMessage {
    /// The wire form of `msg`.
    pub(crate) fn encode(msg: &Message) -> Result<Self> {
        Ok(match msg {
            Message::Batch(b) => WireMessage::Batch(b.encode()?),
            Message::Watermark(w) => WireMessage::Watermark(*w),
            Message::Idle(i) => WireMessage::Idle(*i),
            Message::Barrier(b) => WireMessage::Barrier(*b),
            Message::End => WireMessage::End,
        })
    }

    /// The message again; batches are decoded by the channel's codec.
    pub(crate) fn decode(self, codec: Option<&BatchCodec>) -> Result<Message> {
        Ok(match self {
            WireMessage::Batch(bytes) => match codec {
                Some(c) => Message::Batch(c.decode(&bytes)?),
                None => return Err(Error::internal("records arrived on a channel without a record type")),
            },
            WireMessage::Watermark(w) => Message::Watermark(w),
            WireMessage::Idle(i) => Message::Idle(i),
            WireMessage::Barrier(b) => Message::Barrier(b),
            WireMessage::End => Message::End,
            WireMessage::Closed => return Err(Error::internal("a closed channel has no message")),
        })
    }
}

/// From the sending worker to the receiving one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DataFrame {
    pub(crate) channel: ChannelId,
    pub(crate) message: WireMessage,
}

/// From the receiving worker to the sending one: `n` more messages may be sent on `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreditFrame {
    pub(crate) channel: ChannelId,
    pub(crate) n: u32,
}

/// Writes one frame (not flushed).
pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {} bytes exceeds the limit of {MAX_FRAME_BYTES}", body.len()),
        ));
    }
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)
}

/// Reads one frame; `None` when the peer closed the connection cleanly between frames.
pub(crate) fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame announces {len} bytes, above the limit of {MAX_FRAME_BYTES}: the peer does not speak Weir's data protocol"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let (value, read) = bincode::serde::decode_from_slice(&body, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if read != len {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes in a frame"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{erase, Record};
    use crate::message::{BarrierKind, CheckpointId};

    #[test]
    fn every_message_survives_the_wire_in_order() {
        let batch = erase(vec![
            Record::with_timestamp("a".to_string(), 5),
            Record::new("b".to_string()),
        ]);
        let barrier = Barrier {
            id: CheckpointId::new(3),
            kind: BarrierKind::Checkpoint,
            triggered_at_ms: 9,
        };
        let sent = [
            Message::Batch(batch),
            Message::Watermark(4),
            Message::Idle(true),
            Message::Barrier(barrier),
            Message::End,
        ];
        let mut wire = Vec::new();
        for (i, m) in sent.iter().enumerate() {
            let frame = DataFrame {
                channel: ChannelId {
                    edge: 1,
                    from: i as u32,
                    to: 0,
                },
                message: WireMessage::encode(m).unwrap(),
            };
            write_frame(&mut wire, &frame).unwrap();
        }
        let codec = BatchCodec::of::<String>();
        let mut r = wire.as_slice();
        let mut back = Vec::new();
        while let Some(f) = read_frame::<DataFrame>(&mut r).unwrap() {
            assert_eq!(f.channel.from as usize, back.len());
            back.push(f.message.decode(Some(&codec)).unwrap());
        }
        assert_eq!(back.len(), sent.len());
        let Message::Batch(b) = back.remove(0) else {
            panic!("not a batch")
        };
        let records = crate::data::downcast::<String>(b).unwrap();
        assert_eq!(
            records,
            vec![Record::with_timestamp("a".to_string(), 5), Record::new("b".to_string())]
        );
        assert!(matches!(back[0], Message::Watermark(4)));
        assert!(matches!(back[1], Message::Idle(true)));
        assert!(matches!(back[2], Message::Barrier(b) if b == barrier));
        assert!(matches!(back[3], Message::End));
    }

    #[test]
    fn a_batch_of_another_type_is_an_error_not_garbage() {
        let batch = erase(vec![Record::new(7u8)]);
        let wire = WireMessage::encode(&Message::Batch(batch)).unwrap();
        let e = wire.decode(Some(&BatchCodec::of::<(u64, u64)>())).unwrap_err();
        assert!(e.to_string().contains("same program"), "{e}");
    }

    #[test]
    fn a_stream_that_is_not_weir_is_refused() {
        let mut bytes = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let e = read_frame::<DataFrame>(&mut bytes.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("does not speak"), "{e}");
    }

    #[test]
    fn a_connection_cut_inside_a_frame_is_an_error_and_between_frames_an_end() {
        let mut wire = Vec::new();
        write_frame(
            &mut wire,
            &CreditFrame {
                channel: ChannelId {
                    edge: 0,
                    from: 0,
                    to: 0,
                },
                n: 3,
            },
        )
        .unwrap();
        assert!(read_frame::<CreditFrame>(&mut &wire[..]).unwrap().is_some());
        assert!(read_frame::<CreditFrame>(&mut &wire[..0]).unwrap().is_none());
        assert!(read_frame::<CreditFrame>(&mut &wire[..wire.len() - 1]).is_err());
        assert!(read_frame::<CreditFrame>(&mut &wire[..2]).is_err());
    }
}
