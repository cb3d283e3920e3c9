//! The data plane over real loopback sockets: order, record types, per-channel flow control,
//! refusals and lost connections.

use super::frame::{ChannelId, Hello, PROTOCOL_VERSION};
use super::inbound::{DataPlane, InboundChannel, InboundEnd};
use super::outbound::OutboundConnection;
use super::NetSettings;
use crate::data::{downcast, erase, BatchCodec, Record};
use crate::message::Message;
use crate::{Error, ErrorKind};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JOB: &str = "net-test";
const FINGERPRINT: u64 = 0xfeed;
const WAIT: Duration = Duration::from_secs(20);

fn ch(edge: u32, from: u32, to: u32) -> ChannelId {
    ChannelId { edge, from, to }
}

fn settings() -> NetSettings {
    NetSettings {
        channel_capacity: 4,
        hello_wait: Duration::from_secs(5),
        ..NetSettings::default()
    }
}

fn hello(attempt: u32, fingerprint: u64) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        job: JOB.into(),
        fingerprint,
        attempt,
        from: 1,
    }
}

/// A receiving worker with `channels` of attempt `attempt`, all from worker 1, carrying u64s.
fn receiver(attempt: u32, channels: &[ChannelId]) -> (DataPlane, HashMap<ChannelId, InboundEnd>) {
    let plane = DataPlane::bind("127.0.0.1:0".parse().unwrap(), settings()).unwrap();
    let specs: Vec<InboundChannel> = channels
        .iter()
        .map(|&channel| InboundChannel {
            channel,
            from: 1,
            codec: Some(BatchCodec::of::<u64>()),
        })
        .collect();
    let ends = plane.open_attempt(JOB, FINGERPRINT, attempt, &specs).unwrap();
    (plane, ends)
}

/// Failures the sending side reported.
#[derive(Clone, Default)]
struct Failures(Arc<Mutex<Vec<Error>>>);

impl Failures {
    fn sink(&self) -> super::outbound::FailureSink {
        let me = self.0.clone();
        Arc::new(move |e| me.lock().unwrap().push(e))
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The sending worker: a bounded queue per channel (what its upstream subtasks send into).
fn sender(
    plane: &DataPlane,
    attempt: u32,
    fingerprint: u64,
    channels: &[ChannelId],
    failures: &Failures,
) -> crate::Result<(OutboundConnection, HashMap<ChannelId, Sender<Message>>)> {
    let mut queues = HashMap::new();
    let mut outgoing = Vec::new();
    for &c in channels {
        let (tx, rx) = bounded(4);
        queues.insert(c, tx);
        outgoing.push((c, rx));
    }
    let conn = OutboundConnection::open(
        plane.local_addr(),
        hello(attempt, fingerprint),
        outgoing,
        &settings(),
        failures.sink(),
    )?;
    Ok((conn, queues))
}

fn batch(values: std::ops::Range<u64>) -> Message {
    Message::Batch(erase(values.map(Record::new).collect::<Vec<_>>()))
}

/// The next message of a remote channel, giving its credit back as a subtask does.
fn take(end: &mut InboundEnd) -> Result<Message, RecvTimeoutError> {
    let m = end.rx.recv_timeout(WAIT)?;
    end.credit.taken();
    Ok(m)
}

fn values(m: Message) -> Vec<u64> {
    match m {
        Message::Batch(b) => downcast::<u64>(b).unwrap().into_iter().map(|r| r.value).collect(),
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn every_message_of_every_channel_arrives_in_order_with_its_type() {
    let (a, b) = (ch(0, 0, 0), ch(0, 1, 0));
    let (plane, mut ends) = receiver(1, &[a, b]);
    let failures = Failures::default();
    let (conn, queues) = sender(&plane, 1, FINGERPRINT, &[a, b], &failures).unwrap();
    let producers: Vec<_> = [a, b]
        .into_iter()
        .map(|c| {
            let tx = queues[&c].clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    tx.send(batch(i * 10..i * 10 + 10)).unwrap();
                    if i % 50 == 0 {
                        tx.send(Message::Watermark(i as i64)).unwrap();
                    }
                }
                tx.send(Message::End).unwrap();
            })
        })
        .collect();
    drop(queues);
    for c in [a, b] {
        let end = ends.get_mut(&c).unwrap();
        let mut seen = Vec::new();
        let mut watermarks = Vec::new();
        loop {
            match take(end).unwrap() {
                Message::End => break,
                Message::Watermark(w) => watermarks.push(w),
                m => seen.extend(values(m)),
            }
        }
        assert_eq!(seen, (0..2000).collect::<Vec<_>>(), "channel {c}");
        assert_eq!(watermarks, vec![0, 50, 100, 150], "channel {c}");
    }
    for p in producers {
        p.join().unwrap();
    }
    conn.join();
    assert_eq!(failures.count(), 0);
}

#[test]
fn a_channel_that_is_not_read_holds_back_only_its_own_sender() {
    // While a subtask aligns a barrier it stops reading one channel; the other channel on the
    // same connection must keep flowing (a shared window would deadlock alignment).
    let (held, flowing) = (ch(0, 0, 0), ch(0, 1, 0));
    let (plane, mut ends) = receiver(1, &[held, flowing]);
    let failures = Failures::default();
    let (conn, queues) = sender(&plane, 1, FINGERPRINT, &[held, flowing], &failures).unwrap();
    let sent_on_held = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let held_producer = {
        let (tx, sent) = (queues[&held].clone(), sent_on_held.clone());
        std::thread::spawn(move || {
            for i in 0..1000u64 {
                tx.send(batch(i..i + 1)).unwrap();
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            tx.send(Message::End).unwrap();
        })
    };
    let flowing_producer = {
        let tx = queues[&flowing].clone();
        std::thread::spawn(move || {
            for i in 0..10_000u64 {
                tx.send(batch(i..i + 1)).unwrap();
            }
            tx.send(Message::End).unwrap();
        })
    };
    drop(queues);
    let end = ends.get_mut(&flowing).unwrap();
    let mut n = 0u64;
    loop {
        match take(end).expect("the flowing channel stalled behind the held one") {
            Message::End => break,
            m => {
                assert_eq!(values(m), vec![n]);
                n += 1;
            }
        }
    }
    assert_eq!(n, 10_000);
    flowing_producer.join().unwrap();
    // The held channel's sender is blocked by its credits: at most its credits (4) in the
    // receiver's queue plus its local queue (4) plus one taken by the writer are out.
    let out = sent_on_held.load(std::sync::atomic::Ordering::SeqCst);
    assert!(out <= 9, "{out} messages left a sender whose receiver reads nothing");
    let end = ends.get_mut(&held).unwrap();
    for i in 0..1000u64 {
        assert_eq!(values(take(end).unwrap()), vec![i]);
    }
    assert!(matches!(take(end).unwrap(), Message::End));
    held_producer.join().unwrap();
    conn.join();
    assert_eq!(failures.count(), 0);
}

#[test]
fn a_sender_of_an_attempt_that_is_over_is_refused() {
    let c = ch(0, 0, 0);
    let (plane, _ends) = receiver(2, &[c]);
    let e = sender(&plane, 1, FINGERPRINT, &[c], &Failures::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("attempt 1 is over"), "{e}");
}

#[test]
fn a_sender_running_another_program_is_refused() {
    let c = ch(0, 0, 0);
    let (plane, _ends) = receiver(1, &[c]);
    let e = sender(&plane, 1, FINGERPRINT + 1, &[c], &Failures::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("different program"), "{e}");
}

#[test]
fn a_sender_that_connects_before_the_attempt_is_deployed_waits_for_it() {
    let c = ch(0, 0, 0);
    let plane = Arc::new(DataPlane::bind("127.0.0.1:0".parse().unwrap(), settings()).unwrap());
    let deploy = {
        let plane = plane.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let spec = InboundChannel {
                channel: c,
                from: 1,
                codec: Some(BatchCodec::of::<u64>()),
            };
            plane.open_attempt(JOB, FINGERPRINT, 1, &[spec]).unwrap()
        })
    };
    let failures = Failures::default();
    let (conn, queues) = sender(&plane, 1, FINGERPRINT, &[c], &failures).unwrap();
    queues[&c].send(batch(7..8)).unwrap();
    queues[&c].send(Message::End).unwrap();
    let mut ends = deploy.join().unwrap();
    let end = ends.get_mut(&c).unwrap();
    assert_eq!(values(take(end).unwrap()), vec![7]);
    assert!(matches!(take(end).unwrap(), Message::End));
    conn.join();
}

#[test]
fn a_lost_connection_disconnects_the_channels_that_had_not_ended() {
    let (done, open) = (ch(0, 0, 0), ch(0, 1, 0));
    let (plane, mut ends) = receiver(1, &[done, open]);
    let failures = Failures::default();
    let (conn, queues) = sender(&plane, 1, FINGERPRINT, &[done, open], &failures).unwrap();
    queues[&done].send(Message::End).unwrap();
    queues[&open].send(batch(1..2)).unwrap();
    assert!(matches!(take(ends.get_mut(&done).unwrap()).unwrap(), Message::End));
    let end = ends.get_mut(&open).unwrap();
    assert_eq!(values(take(end).unwrap()), vec![1]);
    // The sending worker goes away mid-stream.
    conn.abort();
    assert_eq!(
        end.rx.recv_timeout(WAIT).unwrap_err(),
        RecvTimeoutError::Disconnected,
        "the receiving subtask must learn that its upstream is gone"
    );
    conn.join();
    assert_eq!(failures.count(), 0, "an aborted connection reports nothing");
}

#[test]
fn an_upstream_that_stops_without_ending_disconnects_only_its_channel() {
    let (stopped, alive) = (ch(0, 0, 0), ch(0, 1, 0));
    let (plane, mut ends) = receiver(1, &[stopped, alive]);
    let failures = Failures::default();
    let (conn, mut queues) = sender(&plane, 1, FINGERPRINT, &[stopped, alive], &failures).unwrap();
    drop(queues.remove(&stopped));
    assert_eq!(
        ends.get_mut(&stopped).unwrap().rx.recv_timeout(WAIT).unwrap_err(),
        RecvTimeoutError::Disconnected
    );
    let tx = queues.remove(&alive).unwrap();
    tx.send(batch(3..5)).unwrap();
    tx.send(Message::End).unwrap();
    let end = ends.get_mut(&alive).unwrap();
    assert_eq!(values(take(end).unwrap()), vec![3, 4]);
    assert!(matches!(take(end).unwrap(), Message::End));
    conn.join();
    assert_eq!(failures.count(), 0);
}

#[test]
fn a_receiver_that_closes_the_attempt_fails_a_sender_with_open_channels() {
    let c = ch(0, 0, 0);
    let (plane, ends) = receiver(1, &[c]);
    let failures = Failures::default();
    let (conn, queues) = sender(&plane, 1, FINGERPRINT, &[c], &failures).unwrap();
    queues[&c].send(batch(0..1)).unwrap();
    plane.close_attempt(1);
    drop(ends);
    // The writer learns it at its next step at the latest.
    let mut i = 1u64;
    while failures.count() == 0 && i < 10_000 {
        if queues[&c]
            .send_timeout(batch(i..i + 1), Duration::from_millis(10))
            .is_ok()
        {
            i += 1;
        }
    }
    assert_eq!(failures.count(), 1, "the sender must report the lost connection once");
    let e = &failures.0.lock().unwrap()[0];
    assert_eq!(e.kind(), ErrorKind::External { retryable: true }, "{e}");
    drop(queues);
    conn.abort();
    conn.join();
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let first = DataPlane::bind("127.0.0.1:0".parse().unwrap(), settings()).unwrap();
    let e = DataPlane::bind(first.local_addr(), settings()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn an_unreachable_worker_is_a_retryable_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_tx, rx): (Sender<Message>, Receiver<Message>) = bounded(1);
    let e = OutboundConnection::open(
        addr,
        hello(1, FINGERPRINT),
        vec![(ch(0, 0, 0), rx)],
        &settings(),
        Failures::default().sink(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::External { retryable: true }, "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
