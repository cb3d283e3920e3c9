//! Real parts for tests: an S3-compatible server on loopback, and a TCP proxy in front of it
//! that can drop or stall connections.
//!
//! The server is moto's server mode (PyPI `moto[server]`, installed by `.ci/setup` into
//! `/opt/weir-s3`). It speaks S3's REST protocol with real HTTP: signed requests, multipart
//! uploads, `If-None-Match: *` (create-only PUT, 412 when the key exists) and `If-Match`
//! (compare-and-swap on an ETag). It keeps objects in memory and does not check credentials:
//! what the tests show is Weir's protocol against a real S3 wire implementation, not S3's
//! durability, consistency under load or IAM.

use crate::location::Location;
use crate::storage::ObjectStoreStorage;
use object_store::aws::AmazonS3Builder;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_engine::checkpoint::CheckpointStorage;
use weir_engine::testing::WatchedServer;
use weir_engine::{Error, Result};

/// Path of the moto server binary, if it is not on `PATH` or in `/opt/weir-s3/bin`.
pub const MOTO_ENV: &str = "WEIR_MOTO_SERVER";
/// The access key the test server accepts (moto accepts any).
pub const ACCESS_KEY: &str = "weir-test";
/// The secret key of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "weir-test-secret";

static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// An S3-compatible server on a loopback port, stopped (with its data) on drop, and by a
/// watchdog when the test process dies without running destructors.
pub struct S3Server {
    port: u16,
    child: WatchedServer,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server").field("port", &self.port).finish()
    }
}

impl S3Server {
    /// Starts a server on a free loopback port and waits until it answers.
    ///
    /// # Errors
    /// `Config` when moto is not installed (with how to install it); `External` when it does
    /// not come up within 90 s (a port another process took meanwhile is retried on another).
    pub fn start() -> Result<Self> {
        let mut tries = 0;
        loop {
            match Self::start_on(free_port()?) {
                Err(e) if tries < 3 && e.to_string().contains("exited") => tries += 1,
                other => return other,
            }
        }
    }

    /// Starts a server on `port` (to restart one on the same address).
    pub fn start_on(port: u16) -> Result<Self> {
        Self::start_with(port, &[])
    }

    /// Starts a server that checks credentials after the test's first `free_actions`
    /// requests: moto then accepts only keys created through its IAM API, so every key a test
    /// has is wrong. (The readiness probe is one more request, counted here.)
    pub fn start_checking_credentials(free_actions: u32) -> Result<Self> {
        let count = (free_actions + 1).to_string();
        Self::start_with(free_port()?, &[("INITIAL_NO_AUTH_ACTION_COUNT", &count)])
    }

    fn start_with(port: u16, env: &[(&str, &str)]) -> Result<Self> {
        let bin = find_moto()?;
        let mut command = WatchedServer::command("weir-test-s3", &bin);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = WatchedServer::spawn(command)
            .map_err(|e| Error::io(format!("starting the S3 test server ({})", bin.display()), e))?;
        let mut server = S3Server { port, child };
        // moto is a Python server: under a loaded test run it can take a while to come up.
        let deadline = Instant::now() + Duration::from_secs(90);
        while http(port, "GET", "/", b"").is_err() {
            // A server that exited could not bind its port (another process took it since
            // `free_port` released it): say so at once rather than wait.
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Error::external(
                    true,
                    format!("the S3 test server exited ({status}) before answering on port {port}"),
                ));
            }
            if Instant::now() > deadline {
                return Err(Error::external(
                    true,
                    format!("the S3 test server did not answer on port {port} within 90 s"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a unique name starting with `prefix`; returns its name.
    pub fn create_bucket(&self, prefix: &str) -> Result<String> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket_named(&name)?;
        Ok(name)
    }

    /// Creates bucket `name`.
    pub fn create_bucket_named(&self, name: &str) -> Result<()> {
        let status = http(self.port, "PUT", &format!("/{name}"), b"")
            .map_err(|e| Error::io(format!("creating bucket {name}"), e))?;
        if status != 200 {
            return Err(Error::external(false, format!("creating bucket {name}: HTTP {status}")));
        }
        Ok(())
    }

    /// The environment a Weir process needs to reach this server (`AWS_ENDPOINT_URL`, keys,
    /// region).
    pub fn env(&self) -> Vec<(String, String)> {
        env_for(&self.endpoint())
    }

    /// Checkpoint storage at `s3://bucket/prefix` on this server.
    pub fn storage(&self, bucket: &str, prefix: &str) -> Result<Arc<dyn CheckpointStorage>> {
        storage_at(&self.endpoint(), bucket, prefix)
    }

    /// Kills the server; its objects are gone.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}

/// The environment variables for an S3 endpoint with the test keys.
pub fn env_for(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// Checkpoint storage at `s3://bucket/prefix` on the S3 endpoint `endpoint` (explicit
/// settings: the process environment is not read), with short timeouts so that tests of
/// failures do not wait long.
pub fn storage_at(endpoint: &str, bucket: &str, prefix: &str) -> Result<Arc<dyn CheckpointStorage>> {
    Ok(Arc::new(object_storage_at(endpoint, bucket, prefix)?))
}

/// [`storage_at`] as the concrete type (for [`ObjectStoreStorage::delete_everything`]).
pub fn object_storage_at(endpoint: &str, bucket: &str, prefix: &str) -> Result<ObjectStoreStorage> {
    let location = Location::parse(&format!("s3://{bucket}/{prefix}"))?;
    let settings = crate::ClientSettings {
        request_timeout: Duration::from_secs(5),
        max_retries: 6,
        retry_timeout: Duration::from_secs(20),
    };
    let store = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_retry(settings.retry())
        .with_client_options(settings.client(true))
        .build()
        .map_err(|e| Error::config(format!("test S3 client: {e}")))?;
    ObjectStoreStorage::new(Arc::new(store), &location)
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

/// One plain HTTP/1.1 request to the server; returns the status code.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text}")))
}

/// `WEIR_MOTO_SERVER`, then `moto_server` on `PATH`, then `/opt/weir-s3/bin/moto_server`.
fn find_moto() -> Result<PathBuf> {
    if let Ok(p) = std::env::var(MOTO_ENV) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/opt/weir-s3/bin/moto_server")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("moto_server")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/weir-s3/bin/moto_server"));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::config(format!(
            "no S3-compatible server for tests: install moto with `bash .ci/setup` (from PyPI) or point \
             {MOTO_ENV} at its moto_server"
        ))
    })
}

/// What a [`FaultProxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass = 0,
    /// Close new connections at once, and cut the open ones.
    Drop = 1,
    /// Accept, read, never answer (a server that hangs).
    Stall = 2,
}

/// A TCP proxy on loopback in front of `target` whose behaviour a test switches at any time:
/// the server "returning errors or stalling for a while" without touching the server.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Connections cut or stalled so far.
    faults: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on a free loopback port, in [`ProxyMode::Pass`].
    pub fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding the fault proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("binding the fault proxy", e))?;
        let mode = Arc::new(AtomicU8::new(ProxyMode::Pass as u8));
        let faults = Arc::new(AtomicU64::new(0));
        let (m, f) = (mode.clone(), faults.clone());
        std::thread::Builder::new()
            .name("weir-fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (m, f) = (m.clone(), f.clone());
                    std::thread::spawn(move || serve(conn, target, m, f));
                }
            })
            .map_err(|e| Error::io("starting the fault proxy", e))?;
        Ok(FaultProxy { addr, mode, faults })
    }

    /// The endpoint URL clients use (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the proxy's behaviour.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Connections cut or stalled so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }
}

fn current(mode: &AtomicU8) -> ProxyMode {
    match mode.load(Ordering::SeqCst) {
        1 => ProxyMode::Drop,
        2 => ProxyMode::Stall,
        _ => ProxyMode::Pass,
    }
}

/// Serves one client connection according to the mode, re-checked while it is open.
fn serve(client: TcpStream, target: SocketAddr, mode: Arc<AtomicU8>, faults: Arc<AtomicU64>) {
    match current(&mode) {
        ProxyMode::Drop => {
            faults.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        ProxyMode::Stall => {
            faults.fetch_add(1, Ordering::SeqCst);
            // Hold the connection without answering until the client gives up or the mode
            // changes; then cut it (the client sees a timeout or a reset).
            let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
            let mut sink = [0u8; 16 << 10];
            let mut c = &client;
            while current(&mode) == ProxyMode::Stall {
                match c.read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        ProxyMode::Pass => {}
    }
    let Ok(server) = TcpStream::connect(target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let pump = |mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>, faults: Arc<AtomicU64>| {
        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if current(&mode) != ProxyMode::Pass {
                faults.fetch_add(1, Ordering::SeqCst);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            match from.read(&mut buf) {
                Ok(0) => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => {
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    };
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let (m2, f2) = (mode.clone(), faults.clone());
    let up = std::thread::spawn(move || pump(c2, s2, m2, f2));
    pump(server, client, mode, faults);
    let _ = up.join();
}
