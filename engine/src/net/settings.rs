//! Settings of a worker's data connections.

use std::time::Duration;

/// How data connections between workers behave.
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// Messages per channel in flight or queued at the receiver (the channel's credits).
    pub channel_capacity: u32,
    /// Longest wait to establish a connection to another worker.
    pub connect_timeout: Duration,
    /// How long a receiving worker waits for an attempt to be deployed on it when a sender
    /// of that attempt connects first.
    pub hello_wait: Duration,
    /// Data unacknowledged by the peer for this long fails the connection (`TCP_USER_TIMEOUT`;
    /// a send on a partitioned connection otherwise succeeds for minutes). Keepalive probes
    /// start after the same idle time.
    pub unacknowledged_timeout: Duration,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            channel_capacity: 16,
            connect_timeout: Duration::from_secs(5),
            hello_wait: Duration::from_secs(30),
            unacknowledged_timeout: Duration::from_secs(10),
        }
    }
}

impl NetSettings {
    /// Applies the socket options every data connection uses.
    pub(crate) fn configure(&self, stream: &std::net::TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let sock = socket2::SockRef::from(stream);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.unacknowledged_timeout)
            .with_interval(Duration::from_secs(1))
            .with_retries(3);
        sock.set_tcp_keepalive(&keepalive)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        sock.set_tcp_user_timeout(Some(self.unacknowledged_timeout))?;
        Ok(())
    }
}
