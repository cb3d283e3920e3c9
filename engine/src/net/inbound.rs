//! The receiving side of a worker's data plane: one listener for the worker's life; per
//! attempt, the channels whose downstream subtask runs on this worker.
//!
//! A sending worker opens one connection per attempt and sends a [`Hello`]; the connection is
//! accepted only for the job, program (fingerprint) and attempt deployed here, and only once
//! per sending worker. Its reader thread hands every message to the downstream subtask's
//! queue (which never blocks: credits bound it) and ends with the connection.
//!
//! # After a crash
//! Nothing here is durable. A connection that breaks disconnects the channels that had not
//! ended, so their subtasks fail like subtasks whose local upstream stopped; the attempt is
//! then cancelled and a new one deploys new channels. A connection for an attempt older than
//! the one deployed is refused, so a worker cut off from the job cannot feed the new attempt.

use super::credit::{CreditLink, CreditReturn};
use super::frame::{
    read_frame, write_frame, ChannelId, DataFrame, Hello, HelloReply, WireMessage, WorkerId, PROTOCOL_VERSION,
};
use super::settings::NetSettings;
use crate::data::BatchCodec;
use crate::message::Message;
use crate::{Error, Result};
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// One channel that ends on this worker.
#[derive(Debug, Clone)]
pub(crate) struct InboundChannel {
    pub(crate) channel: ChannelId,
    /// The worker its upstream subtask runs on.
    pub(crate) from: WorkerId,
    /// The record type of its batches.
    pub(crate) codec: Option<BatchCodec>,
}

/// What the downstream subtask reads a remote channel with.
#[derive(Debug)]
pub(crate) struct InboundEnd {
    pub(crate) rx: Receiver<Message>,
    pub(crate) credit: CreditReturn,
}

/// The channels of one attempt that come from one sending worker, until its connection
/// takes them.
struct FromPeer {
    link: Arc<CreditLink>,
    senders: Option<ChannelSenders>,
}

struct DeployedAttempt {
    job: String,
    fingerprint: u64,
    attempt: u32,
    peers: HashMap<WorkerId, FromPeer>,
    /// Accepted connections, shut down when the attempt is closed.
    streams: Vec<TcpStream>,
    closed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    deployed: Option<DeployedAttempt>,
    /// The newest attempt ever deployed or closed here: older ones are refused at once.
    newest: u32,
}

struct Shared {
    registry: Mutex<Registry>,
    changed: Condvar,
    settings: NetSettings,
    shutting_down: AtomicBool,
}

/// A worker's data-plane listener.
pub(crate) struct DataPlane {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").field("addr", &self.addr).finish()
    }
}

impl DataPlane {
    /// Listens on `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// `Config` when the address is in use or cannot be bound.
    pub(crate) fn bind(addr: SocketAddr, settings: NetSettings) -> Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "the address is in use (another process listens there; pick another port)".to_string()
            } else {
                e.to_string()
            };
            Error::config(format!("the data plane cannot listen on {addr}: {why}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the data plane's address", e))?;
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            changed: Condvar::new(),
            settings,
            shutting_down: AtomicBool::new(false),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("weir-data-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .map_err(|e| Error::io("spawning the data plane's listener thread", e))?
        };
        Ok(DataPlane {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where other workers connect.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Deploys the channels of `attempt` that end here (closing any older attempt) and
    /// returns what their subtasks read them with.
    pub(crate) fn open_attempt(
        &self,
        job: &str,
        fingerprint: u64,
        attempt: u32,
        channels: &[InboundChannel],
    ) -> Result<HashMap<ChannelId, InboundEnd>> {
        let mut reg = self.shared.registry.lock().unwrap_or_else(|e| e.into_inner());
        if attempt < reg.newest {
            return Err(Error::internal(format!(
                "attempt {attempt} cannot be deployed: attempt {} was deployed here already",
                reg.newest
            )));
        }
        if let Some(old) = reg.deployed.take() {
            close(old);
        }
        let capacity = self.shared.settings.channel_capacity;
        let mut peers: HashMap<WorkerId, FromPeer> = HashMap::new();
        let mut ends = HashMap::new();
        for c in channels {
            let peer = peers.entry(c.from).or_insert_with(|| FromPeer {
                link: Arc::new(CreditLink::default()),
                senders: Some(HashMap::new()),
            });
            let (tx, rx) = unbounded();
            peer.senders
                .as_mut()
                .expect("not taken yet")
                .insert(c.channel, (tx, c.codec));
            let credit = CreditReturn::new(c.channel, capacity, peer.link.clone());
            if ends.insert(c.channel, InboundEnd { rx, credit }).is_some() {
                return Err(Error::internal(format!("channel {} deployed twice", c.channel)));
            }
        }
        reg.newest = attempt;
        reg.deployed = Some(DeployedAttempt {
            job: job.to_string(),
            fingerprint,
            attempt,
            peers,
            streams: Vec::new(),
            closed: Arc::new(AtomicBool::new(false)),
        });
        drop(reg);
        self.shared.changed.notify_all();
        Ok(ends)
    }

    /// Closes `attempt`: its connections are shut down and later ones refused.
    pub(crate) fn close_attempt(&self, attempt: u32) {
        let mut reg = self.shared.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.newest = reg.newest.max(attempt);
        if reg.deployed.as_ref().is_some_and(|d| d.attempt <= attempt) {
            if let Some(d) = reg.deployed.take() {
                close(d);
            }
        }
        drop(reg);
        self.shared.changed.notify_all();
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        {
            let mut reg = self.shared.registry.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = reg.deployed.take() {
                close(d);
            }
        }
        self.shared.changed.notify_all();
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, std::time::Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn close(d: DeployedAttempt) {
    d.closed.store(true, Ordering::SeqCst);
    for s in &d.streams {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a data connection failed");
                continue;
            }
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-data-in".into())
            .spawn(move || serve(stream, shared));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "spawning a data connection's reader failed");
        }
    }
}

/// Where the messages of each channel from one worker go, and how they are decoded.
type ChannelSenders = HashMap<ChannelId, (Sender<Message>, Option<BatchCodec>)>;

/// What an accepted connection reads into.
struct Accepted {
    from: WorkerId,
    attempt: u32,
    senders: HashMap<ChannelId, (Sender<Message>, Option<BatchCodec>)>,
    closed: Arc<AtomicBool>,
    link: Arc<CreditLink>,
}

fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let accepted = match handshake(&mut stream, &shared) {
        Ok(a) => a,
        Err(reason) => {
            if !shared.shutting_down.load(Ordering::SeqCst) {
                tracing::warn!(%peer, %reason, "data connection refused");
            }
            let _ = write_frame(&mut stream, &HelloReply::Refused(reason)).and_then(|_| stream.flush());
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let Accepted {
        from,
        attempt,
        mut senders,
        closed,
        link,
    } = accepted;
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let ended = loop {
        let frame = match read_frame::<DataFrame>(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        };
        let Some((tx, codec)) = senders.get(&frame.channel) else {
            break Err(format!(
                "a message arrived on channel {} which does not end here",
                frame.channel
            ));
        };
        match frame.message {
            // The upstream subtask stopped without ending its stream: disconnect the channel.
            WireMessage::Closed => {
                senders.remove(&frame.channel);
            }
            WireMessage::End => {
                let _ = tx.send(Message::End);
                senders.remove(&frame.channel);
            }
            m => match m.decode(codec.as_ref()) {
                // A subtask that stopped reading dropped its queue: nothing to do.
                Ok(msg) => {
                    let _ = tx.send(msg);
                }
                Err(e) => break Err(e.to_string()),
            },
        }
    };
    let open = senders.len();
    if open > 0 && !closed.load(Ordering::SeqCst) {
        let why = match ended {
            Ok(()) => "the sending worker closed it".to_string(),
            Err(e) => e,
        };
        tracing::warn!(from, attempt, %peer, open_channels = open, "data connection lost: {why}");
    }
    // Dropping the senders disconnects the channels that did not end; closing ends the
    // sender's credit reader (no credit is owed for a channel that ended), after any credit
    // frame being written.
    link.close();
    let _ = reader.get_ref().shutdown(Shutdown::Both);
}

/// Reads the hello and takes the sending worker's channels, or says why not.
fn handshake(stream: &mut TcpStream, shared: &Shared) -> std::result::Result<Accepted, String> {
    let settings = &shared.settings;
    settings
        .configure(stream)
        .map_err(|e| format!("configuring the socket: {e}"))?;
    stream
        .set_read_timeout(Some(settings.connect_timeout))
        .map_err(|e| e.to_string())?;
    let hello: Hello = match read_frame(stream) {
        Ok(Some(h)) => h,
        Ok(None) => return Err("closed before its hello".into()),
        Err(e) => return Err(format!("no valid hello: {e}")),
    };
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    if hello.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "worker {} speaks data protocol {}, this worker {PROTOCOL_VERSION}: run the same Weir version everywhere",
            hello.from, hello.protocol
        ));
    }
    let deadline = Instant::now() + settings.hello_wait;
    let mut reg = shared.registry.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Err("this worker is shutting down".into());
        }
        if hello.attempt < reg.newest || reg.deployed.as_ref().is_some_and(|d| d.attempt > hello.attempt) {
            return Err(format!(
                "attempt {} is over: this worker runs attempt {}",
                hello.attempt, reg.newest
            ));
        }
        if reg.deployed.as_ref().is_some_and(|d| d.attempt == hello.attempt) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "attempt {} was not deployed on this worker within {:?}",
                hello.attempt, settings.hello_wait
            ));
        }
        reg = shared
            .changed
            .wait_timeout(reg, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let d = reg.deployed.as_mut().expect("checked above");
    if d.job != hello.job {
        return Err(format!("this worker runs job \"{}\", not \"{}\"", d.job, hello.job));
    }
    if d.fingerprint != hello.fingerprint {
        return Err(format!(
            "worker {} runs a different program (job graph {:016x}, here {:016x}): every process of a job must run the same build",
            hello.from, hello.fingerprint, d.fingerprint
        ));
    }
    let Some(peer) = d.peers.get_mut(&hello.from) else {
        return Err(format!(
            "no channel of attempt {} comes from worker {}",
            hello.attempt, hello.from
        ));
    };
    let Some(senders) = peer.senders.take() else {
        return Err(format!(
            "worker {} already connected for attempt {}; a broken connection fails the attempt",
            hello.from, hello.attempt
        ));
    };
    let credit_half = stream.try_clone().map_err(|e| e.to_string())?;
    peer.link.attach(credit_half);
    let link = peer.link.clone();
    d.streams.push(stream.try_clone().map_err(|e| e.to_string())?);
    let closed = d.closed.clone();
    drop(reg);
    write_frame(stream, &HelloReply::Accepted)
        .and_then(|_| stream.flush())
        .map_err(|e| e.to_string())?;
    Ok(Accepted {
        from: hello.from,
        attempt: hello.attempt,
        senders,
        closed,
        link,
    })
}
