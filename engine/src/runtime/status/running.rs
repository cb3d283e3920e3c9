//! The handle on a running status server (started by `runtime::status_server`): dropping it
//! stops the server.

use std::net::SocketAddr;
use std::thread::JoinHandle;

/// A running status server; dropping it stops it (requests still open get a short grace).
pub struct StatusServer {
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusServer").field("addr", &self.addr).finish()
    }
}

impl StatusServer {
    /// A server listening on `addr`, run by `thread` until `shutdown` says `true`.
    pub(crate) fn new(addr: SocketAddr, shutdown: tokio::sync::watch::Sender<bool>, thread: JoinHandle<()>) -> Self {
        StatusServer {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
