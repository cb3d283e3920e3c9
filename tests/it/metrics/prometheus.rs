//! A real Prometheus for the tests (Debian's `prometheus`, installed by `.ci/setup`), started
//! on loopback on a free port with its storage in a temporary directory, scraping the given
//! targets every second, and stopped when the test ends under a [`WatchedServer`]: by its
//! `Drop` after a panic, by its watchdog when the test process died without running
//! destructors.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir::engine::testing::WatchedServer;

/// A free port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One series of a query's answer: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A running Prometheus, killed (with its watchdog) on drop.
pub struct TestPrometheus {
    _server: WatchedServer,
    port: u16,
    _data: tempfile::TempDir,
    log: PathBuf,
}

impl TestPrometheus {
    /// Starts Prometheus scraping `targets` (`/metrics`) every second; returns once it is ready.
    pub fn start(targets: &[SocketAddr]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = data.path().join("prometheus.yml");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: weir\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let log = data.path().join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = WatchedServer::command("weir-test-prometheus", &PathBuf::from("/usr/bin/prometheus"));
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(out)
            .stderr(err);
        let server = WatchedServer::spawn(command)
            .expect("starting prometheus: install it with `bash .ci/setup` (Debian's prometheus)");
        let p = TestPrometheus {
            _server: server,
            port,
            _data: data,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !p.get("/-/ready", &[]).is_ok_and(|(status, _)| status == 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready within 60 s: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, String), String> {
        let mut req = ureq::get(format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let mut res = req.call().map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// The answer to the instant query `promql` (`/api/v1/query`): one sample per series.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let (status, body) = self
            .get("/api/v1/query", &[("query", promql)])
            .unwrap_or_else(|e| panic!("querying {promql}: {e}"));
        assert_eq!(status, 200, "query {promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "query {promql}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {promql}: no result in {body}"))
            .iter()
            .map(|s| Sample {
                labels: s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                value: s["value"][1].as_str().unwrap().parse().unwrap(),
            })
            .collect()
    }

    /// Queries `promql` until `done` holds for its samples; panics after `secs`.
    pub fn wait_for(&self, promql: &str, secs: u64, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let samples = self.query(promql);
            if done(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} did not reach the expected state within {secs} s; last answer {samples:?}; \
                 targets: {}; log: {}",
                self.get("/api/v1/targets", &[]).map(|(_, b)| b).unwrap_or_default(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The sum of `promql`'s samples once it has some, then again once that sum grew: both.
    pub fn increasing(&self, promql: &str, secs: u64) -> (f64, f64) {
        let sum = |s: &[Sample]| s.iter().map(|s| s.value).sum::<f64>();
        let first = sum(&self.wait_for(promql, secs, |s| !s.is_empty()));
        let second = sum(&self.wait_for(promql, secs, |s| sum(s) > first));
        (first, second)
    }
}
