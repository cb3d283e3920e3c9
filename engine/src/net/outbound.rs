//! The sending side of a data connection: one connection per attempt from this worker to each
//! worker that runs downstream subtasks of its channels.
//!
//! Upstream subtasks send into a bounded local queue per channel, exactly as for a local
//! channel. The connection's writer thread takes from a queue only while the channel has
//! credits, so a channel whose receiver stopped reading backs up into its own queue and
//! blocks only its own upstream subtask. A second thread reads the credits the receiver
//! gives back.
//!
//! # After a crash
//! Nothing here is durable. When the connection fails while channels are still open, the
//! failure is reported once (the attempt then fails over); when the attempt is cancelled,
//! [`OutboundConnection::abort`] unblocks a writer stuck on a peer that stopped reading.

use super::frame::{read_frame, write_frame, ChannelId, CreditFrame, DataFrame, Hello, HelloReply, WireMessage};
use super::settings::NetSettings;
use crate::message::Message;
use crate::{Error, Result};
use crossbeam_channel::{unbounded, Receiver, Select, TryRecvError};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Flush the writer at least every this many buffered bytes.
const FLUSH_BYTES: usize = 64 << 10;

/// A running connection to one receiving worker.
pub(crate) struct OutboundConnection {
    peer: SocketAddr,
    stream: TcpStream,
    aborted: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for OutboundConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConnection").field("peer", &self.peer).finish()
    }
}

/// Reports the first failure of a connection (to the worker, which fails the attempt).
pub(crate) type FailureSink = Arc<dyn Fn(Error) + Send + Sync>;

impl OutboundConnection {
    /// Connects to the worker at `peer`, introduces itself with `hello`, and starts moving the
    /// messages of `channels` (each read from its upstream subtask's queue).
    ///
    /// # Errors
    /// `External` (retryable) when the peer cannot be reached; `Config` when it refuses the
    /// connection (another job, another program, an attempt that is over).
    pub(crate) fn open(
        peer: SocketAddr,
        hello: Hello,
        channels: Vec<(ChannelId, Receiver<Message>)>,
        settings: &NetSettings,
        on_failure: FailureSink,
    ) -> Result<Self> {
        let from = hello.from;
        let mut stream = TcpStream::connect_timeout(&peer, settings.connect_timeout).map_err(|e| {
            Error::external(
                true,
                format!("worker {from} cannot open a data connection to {peer}: {e}"),
            )
        })?;
        let io = |what: &'static str| {
            move |e: std::io::Error| Error::external(true, format!("data connection to {peer}: {what}: {e}"))
        };
        settings.configure(&stream).map_err(io("configuring the socket"))?;
        write_frame(&mut stream, &hello)
            .and_then(|_| stream.flush())
            .map_err(io("sending the hello"))?;
        // The receiver may wait for its attempt to be deployed before it answers.
        stream
            .set_read_timeout(Some(settings.hello_wait + settings.connect_timeout))
            .map_err(io("setting a timeout"))?;
        match read_frame::<HelloReply>(&mut stream) {
            Ok(Some(HelloReply::Accepted)) => {}
            Ok(Some(HelloReply::Refused(reason))) => {
                return Err(Error::config(format!(
                    "the worker at {peer} refused the data connection of attempt {}: {reason}",
                    hello.attempt
                )))
            }
            Ok(None) => {
                return Err(Error::external(
                    true,
                    format!("the worker at {peer} closed the data connection before answering"),
                ))
            }
            Err(e) => return Err(io("reading the answer to the hello")(e)),
        }
        stream.set_read_timeout(None).map_err(io("clearing the timeout"))?;

        let aborted = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        // Set once every channel ended: the receiver then closes the connection, which is
        // no failure.
        let finished = Arc::new(AtomicBool::new(false));
        let report = {
            let (aborted, failed, finished) = (aborted.clone(), failed.clone(), finished.clone());
            move |e: Error| {
                if !aborted.load(Ordering::SeqCst)
                    && !finished.load(Ordering::SeqCst)
                    && !failed.swap(true, Ordering::SeqCst)
                {
                    on_failure(e);
                }
            }
        };
        let report: Arc<dyn Fn(Error) + Send + Sync> = Arc::new(report);
        let (credit_tx, credit_rx) = unbounded::<CreditFrame>();
        let credits_thread = {
            let mut read_half = stream.try_clone().map_err(io("cloning the socket"))?;
            let report = report.clone();
            std::thread::Builder::new()
                .name("weir-data-credits".into())
                .spawn(move || loop {
                    match read_frame::<CreditFrame>(&mut read_half) {
                        Ok(Some(c)) => {
                            if credit_tx.send(c).is_err() {
                                return;
                            }
                        }
                        // The writer closes the credit channel when it is done.
                        Ok(None) => return,
                        Err(e) => {
                            report(Error::external(
                                true,
                                format!("the data connection to {peer} failed: {e}"),
                            ));
                            return;
                        }
                    }
                })
                .map_err(|e| Error::io("spawning a data connection's credit reader", e))?
        };
        let writer_thread = {
            let write_half = stream.try_clone().map_err(io("cloning the socket"))?;
            let capacity = settings.channel_capacity;
            let report = report.clone();
            std::thread::Builder::new()
                .name("weir-data-out".into())
                .spawn(move || {
                    let mut w = Writer::new(write_half, channels, capacity, credit_rx);
                    match w.run() {
                        Ok(()) => finished.store(true, Ordering::SeqCst),
                        Err(e) => report(Error::external(
                            true,
                            format!("the data connection to {peer} failed: {e}"),
                        )),
                    }
                    let _ = w.out.get_ref().shutdown(Shutdown::Write);
                })
                .map_err(|e| Error::io("spawning a data connection's writer", e))?
        };
        Ok(OutboundConnection {
            peer,
            stream,
            aborted,
            threads: vec![credits_thread, writer_thread],
        })
    }

    /// Stops the connection at once (the attempt is being cancelled): unblocks a writer held
    /// by a peer that stopped reading. Failures after this are not reported.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Waits for the connection's threads: after every channel ended, or after `abort`.
    pub(crate) fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One channel as the writer sees it.
struct Outgoing {
    id: ChannelId,
    rx: Receiver<Message>,
    credits: u32,
    done: bool,
}

/// Moves messages from the channels' queues to the socket, within their credits.
struct Writer {
    out: BufWriter<TcpStream>,
    channels: Vec<Outgoing>,
    index: HashMap<ChannelId, usize>,
    capacity: u32,
    credits: Receiver<CreditFrame>,
    next: usize,
    buffered: usize,
}

impl Writer {
    fn new(
        stream: TcpStream,
        channels: Vec<(ChannelId, Receiver<Message>)>,
        capacity: u32,
        credits: Receiver<CreditFrame>,
    ) -> Self {
        let index = channels.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        Writer {
            out: BufWriter::with_capacity(FLUSH_BYTES * 2, stream),
            channels: channels
                .into_iter()
                .map(|(id, rx)| Outgoing {
                    id,
                    rx,
                    credits: capacity,
                    done: false,
                })
                .collect(),
            index,
            capacity,
            credits,
            next: 0,
            buffered: 0,
        }
    }

    fn run(&mut self) -> std::io::Result<()> {
        loop {
            self.take_credits()?;
            if self.channels.iter().all(|c| c.done) {
                return self.out.flush();
            }
            if self.drain_ready()? {
                if self.buffered >= FLUSH_BYTES {
                    self.flush()?;
                }
                continue;
            }
            self.flush()?;
            self.wait()?;
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.buffered = 0;
        self.out.flush()
    }

    fn take_credits(&mut self) -> std::io::Result<()> {
        loop {
            match self.credits.try_recv() {
                Ok(c) => self.credit(c)?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(peer_gone()),
            }
        }
    }

    fn credit(&mut self, c: CreditFrame) -> std::io::Result<()> {
        let Some(&i) = self.index.get(&c.channel) else {
            return Err(protocol(format!(
                "credits for channel {} which this connection does not carry",
                c.channel
            )));
        };
        let ch = &mut self.channels[i];
        ch.credits = ch.credits.saturating_add(c.n);
        if ch.credits > self.capacity {
            return Err(protocol(format!(
                "{} credits for channel {}, above its capacity {}",
                ch.credits, c.channel, self.capacity
            )));
        }
        Ok(())
    }

    fn sendable(&self, i: usize) -> bool {
        let c = &self.channels[i];
        !c.done && c.credits > 0
    }

    /// Writes one message of every channel that has one queued and credits; true if any did.
    fn drain_ready(&mut self) -> std::io::Result<bool> {
        let n = self.channels.len();
        let mut wrote = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.sendable(i) {
                continue;
            }
            match self.channels[i].rx.try_recv() {
                Ok(m) => {
                    self.write(i, Some(m))?;
                    wrote = true;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.write(i, None)?;
                    wrote = true;
                }
            }
        }
        self.next = (self.next + 1) % n.max(1);
        Ok(wrote)
    }

    /// Blocks until a channel with credits has a message or credits arrive.
    fn wait(&mut self) -> std::io::Result<()> {
        let mut sel = Select::new();
        let mut which = Vec::new();
        for i in 0..self.channels.len() {
            if self.sendable(i) {
                sel.recv(&self.channels[i].rx);
                which.push(i);
            }
        }
        let credit_op = sel.recv(&self.credits);
        let op = sel.select();
        if op.index() == credit_op {
            return match op.recv(&self.credits) {
                Ok(c) => self.credit(c),
                Err(_) => Err(peer_gone()),
            };
        }
        let i = which[op.index()];
        let got = op.recv(&self.channels[i].rx).ok();
        self.write(i, got)
    }

    /// Writes `msg` on channel `i`; `None` means its upstream subtask stopped without ending.
    fn write(&mut self, i: usize, msg: Option<Message>) -> std::io::Result<()> {
        let message = match &msg {
            Some(m) => WireMessage::encode(m).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            None => WireMessage::Closed,
        };
        let last = matches!(message, WireMessage::End | WireMessage::Closed);
        let ch = &mut self.channels[i];
        let frame = DataFrame {
            channel: ch.id,
            message,
        };
        ch.credits -= 1;
        ch.done = last;
        let before = self.out.buffer().len();
        write_frame(&mut self.out, &frame)?;
        self.buffered += self.out.buffer().len().saturating_sub(before).max(1);
        if last {
            // Ends are rare and the receiver may be waiting on them: do not hold them back.
            self.flush()?;
        }
        Ok(())
    }
}

/// The credit reader ended while channels were open: the receiver closed or lost the connection.
fn peer_gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the receiving worker closed the connection",
    )
}

fn protocol(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}
