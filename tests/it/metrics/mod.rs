//! Prometheus scrapes running Weir jobs: a real `/usr/bin/prometheus` on loopback scrapes the
//! job's `/metrics` every second, and the tests ask it, through its query API, whether the
//! records and checkpoint series arrive with the right labels and keep increasing. One test
//! runs the job in this process; the other on a local cluster, where the master and each
//! worker serve their own endpoint (the master on the given port, worker `i` on port + 1 + i).
//!
//! The scrape configuration sets `honor_labels: true`, so that Weir's `job` label is kept
//! (without it Prometheus renames it `exported_job`; see docs/metrics.md).

mod kafka;
mod prometheus;

use super::common::{self, Backend};
use prometheus::{free_port, Sample, TestPrometheus};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir::prelude::*;

/// How long a series may take to show up or grow (Prometheus scrapes every second).
const PATIENCE_SECS: u64 = 60;

fn values<'a>(samples: &'a [Sample], label: &str) -> BTreeSet<&'a str> {
    samples.iter().map(|s| s.label(label)).collect()
}

#[test]
fn prometheus_scrapes_records_and_checkpoints_of_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prom = TestPrometheus::start(&[addr]);
    let job = "metrics-in-process";
    let p = common::pipeline(job, Backend::Rocks, &dir)
        .parallelism(2)
        .checkpoint_storage(dir.path().join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(500))
        .metrics_addr(addr);
    p.source(
        "numbers",
        GeneratorSource::new(|i| (i % 50, 1u64))
            .splits(2)
            .rate_per_second(2_000.0),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .reduce("sum", |(k, a), (_, b)| (k, a + b))
    .sink("out", DiscardSink::new());
    let running = p.start().unwrap();

    // Checkpoints complete, and keep completing.
    let checkpoints = format!(r#"weir_checkpoints_completed_total{{job="{job}"}}"#);
    let (_, seen_checkpoints) = prom.increasing(&checkpoints, PATIENCE_SECS);

    // Records arrive at the keyed step, on both of its subtasks, and keep arriving.
    let sum_in = format!(r#"weir_records_in_total{{job="{job}",step="sum"}}"#);
    let samples = prom.wait_for(&sum_in, PATIENCE_SECS, |s| s.len() == 2);
    assert_eq!(values(&samples, "subtask"), BTreeSet::from(["0", "1"]));
    assert_eq!(values(&samples, "job"), BTreeSet::from([job]));
    let (first, second) = prom.increasing(&sum_in, PATIENCE_SECS);
    assert!(second > first);

    // Every step reports under its own name: the source's output, the sink's input.
    let out = prom.wait_for(
        &format!(r#"weir_records_out_total{{job="{job}",step="numbers"}} > 0"#),
        PATIENCE_SECS,
        |s| s.len() == 2,
    );
    assert_eq!(values(&out, "subtask"), BTreeSet::from(["0", "1"]));
    prom.wait_for(
        &format!(r#"weir_records_in_total{{job="{job}",step="out"}} > 0"#),
        PATIENCE_SECS,
        |s| s.len() == 2,
    );

    // Where the subtasks' time goes, and how old the last checkpoint is.
    for series in [
        "weir_subtask_busy_seconds_total",
        "weir_subtask_idle_seconds_total",
        "weir_subtask_backpressured_seconds_total",
    ] {
        let s = prom.wait_for(&format!(r#"{series}{{job="{job}"}}"#), PATIENCE_SECS, |s| {
            values(s, "step").contains("numbers") && values(s, "step").contains("sum")
        });
        assert!(s.iter().all(|s| s.value >= 0.0), "{series}: {s:?}");
    }
    // The rate-limited source both works and waits: its time is accounted for.
    prom.wait_for(
        &format!(
            r#"sum(weir_subtask_busy_seconds_total{{job="{job}",step="numbers"}}) > 0 and sum(weir_subtask_idle_seconds_total{{job="{job}",step="numbers"}}) > 0"#
        ),
        PATIENCE_SECS,
        |s| s.len() == 1,
    );
    prom.wait_for(
        &format!(r#"weir_time_since_last_checkpoint_seconds{{job="{job}"}}"#),
        PATIENCE_SECS,
        |s| s.len() == 1,
    );

    // The in-process view and the report keep working next to the metrics.
    assert!(running.progress().source_records > 0);
    running.cancel();
    let report = running.join().unwrap();
    assert!(report.operator("sum").unwrap().records_in as f64 >= second);
    assert!(report.checkpoints.len() as f64 >= seen_checkpoints);
}

/// Kills the local cluster's launcher when the test ends (its master and workers exit once
/// their supervisor is gone).
struct Launcher(Child);

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port `p` such that `p`, `p + 1` and `p + 2` are free.
fn three_free_ports() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX - 2 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

#[test]
fn on_a_cluster_the_master_and_every_worker_serve_their_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let base = three_free_ports();
    let master = format!("127.0.0.1:{base}");
    let workers = [format!("127.0.0.1:{}", base + 1), format!("127.0.0.1:{}", base + 2)];
    let targets: Vec<SocketAddr> = [&master, &workers[0], &workers[1]]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let prom = TestPrometheus::start(&targets);
    let mut c = Command::new(super::process_kill::example("wordcount"));
    c.args(["--sentences", "1000000", "--rate", "5000", "--checkpoint-ms", "300"])
        .args(["--parallelism", "2"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .arg("--output-dir")
        .arg(dir.path().join("output"))
        .env("WEIR_WORKERS", "2")
        .env("WEIR_SLOTS", "2")
        .env("WEIR_METRICS_ADDR", &master)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for k in ["WEIR_ROLE", "WEIR_MASTER", "WEIR_WORKER_ID"] {
        c.env_remove(k);
    }
    let _launcher = Launcher(c.spawn().unwrap());

    // The master completes checkpoints: its endpoint shows them.
    prom.increasing(
        &format!(r#"weir_checkpoints_completed_total{{job="wordcount",instance="{master}"}}"#),
        PATIENCE_SECS,
    );
    // Both workers run subtasks: each serves its records, and the master none.
    let records = prom.wait_for(r#"weir_records_in_total{job="wordcount"} > 0"#, PATIENCE_SECS, |s| {
        values(s, "instance").len() == 2
    });
    assert_eq!(
        values(&records, "instance"),
        workers.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    prom.increasing(
        &format!(
            r#"sum(weir_records_in_total{{job="wordcount",instance="{}"}})"#,
            workers[0]
        ),
        PATIENCE_SECS,
    );
}
