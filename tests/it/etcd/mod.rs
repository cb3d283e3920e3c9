//! A real etcd for the tests, started on loopback on free ports (Debian's `etcd-server`,
//! installed by `.ci/setup`) and stopped when the test ends, under a
//! [`WatchedServer`]: by its `Drop` after a panic, and by its watchdog when the test process
//! died without running destructors.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use weir::engine::testing::WatchedServer;

/// A running etcd, killed (with its watchdog) on drop.
pub struct TestEtcd {
    _server: WatchedServer,
    port: u16,
    _data: tempfile::TempDir,
    log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestEtcd {
    /// A new single-member etcd with its data in a temporary directory. Fast elections
    /// (50 ms heartbeats, 500 ms election timeout) so that leases of one second are granted.
    pub fn start() -> Self {
        let (client, peer) = (free_port(), free_port());
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("etcd.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = WatchedServer::command("weir-test-etcd", &etcd_binary());
        command
            .args(["--name", "weir-test"])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("weir-test={peer_url}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "warn"])
            .stdout(out)
            .stderr(err);
        let child = WatchedServer::spawn(command)
            .expect("starting etcd: install it with `bash .ci/setup` (Debian's etcd-server)");
        let etcd = TestEtcd {
            _server: child,
            port: client,
            _data: data,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", client)).is_ok() && etcd.ctl(&["put", "/weir-test/ready", "1"]).is_ok()
            {
                return etcd;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 30 s: {}",
                std::fs::read_to_string(&etcd.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client endpoint, as `WEIR_ETCD_ENDPOINTS` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `etcdctl` with `args` against this etcd; its output.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoint())
            .args(["--command-timeout", "3s"])
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        let v = self.ctl(&["get", key, "--print-value-only"]).ok()?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// The JSON value of `key`, if set.
    pub fn get_json(&self, key: &str) -> Option<serde_json::Value> {
        self.get(key).and_then(|v| serde_json::from_str(&v).ok())
    }
}

fn etcd_binary() -> PathBuf {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
    {
        let p = dir.join("etcd");
        if p.is_file() {
            return p;
        }
    }
    panic!("no etcd binary: install it with `bash .ci/setup` (Debian's etcd-server)")
}
