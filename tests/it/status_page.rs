//! The status server of a running job: the page rendered by a real browser (headless
//! Chromium), the JSON API read while the job runs, a stop through the API, and a bad address.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use weir::engine::connector::WatchedServer;
use weir::prelude::*;

use crate::common::wait_until;

/// The steps of [`job`], in graph order.
pub(crate) const STEPS: [&str; 4] = ["readings", "calibrate", "per-sensor-total", "totals-out"];

/// A checkpointed job that runs until it is stopped: readings at 4000/s, a map, a keyed sum.
pub(crate) fn job(dir: &Path) -> Pipeline {
    let p = Pipeline::new("status-probe")
        .parallelism(2)
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(200))
        .status_addr("127.0.0.1:0".parse().unwrap());
    p.source(
        STEPS[0],
        GeneratorSource::new(|i| (i % 7, i)).splits(2).rate_per_second(4_000.0),
    )
    .map(STEPS[1], |(sensor, v): (u64, u64)| (sensor, v * 2))
    .key_by("by-sensor", |(sensor, _): &(u64, u64)| *sensor)
    .reduce(STEPS[2], |(k, a), (_, b)| (k, a + b))
    .sink(STEPS[3], DiscardSink::new());
    p
}

/// Starts [`job`] and waits until it completed a checkpoint; returns it and its status URL.
pub(crate) fn start_checkpointed(dir: &Path) -> (JobHandle, String) {
    let handle = job(dir).start().unwrap();
    let addr: SocketAddr = handle.status_addr().expect("the job serves its status");
    wait_until("the job completed a checkpoint", 60, || {
        handle.progress().last_checkpoint.is_some()
    });
    (handle, format!("http://{addr}"))
}

/// `GET url`, as JSON.
pub(crate) fn get(url: &str) -> Value {
    let mut r = ureq::get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// `POST url` with `body`: the HTTP status and the JSON answer.
pub(crate) fn post(url: &str, body: &str) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent.post(url).send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

/// The ids of the completed checkpoints in a checkpoint history.
fn completed_ids(history: &Value) -> Vec<u64> {
    history
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "completed")
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

/// The page as headless Chromium renders it, its scripts run for 5 s of virtual time.
fn rendered_dom(url: &str, out: &Path) -> String {
    let file = std::fs::File::create(out).unwrap();
    let mut c = WatchedServer::command("weir-test-chromium", Path::new("/usr/bin/chromium"));
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ])
    .stdout(file)
    .stderr(Stdio::null());
    let mut browser = WatchedServer::spawn(c).expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    while browser.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "chromium did not render the page within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn chromium_renders_the_steps_and_checkpoints_of_a_running_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, url) = start_checkpointed(tmp.path());
    let dom = rendered_dom(&format!("{url}/"), &tmp.path().join("dom.html"));
    assert!(!handle.is_finished(), "the job ran while the page was rendered");
    // Rendered by the page's script from /api/status, not in the HTML served.
    for step in STEPS {
        assert!(
            dom.contains(&format!("data-step=\"{step}\"")),
            "step {step} is drawn:\n{dom}"
        );
    }
    assert!(dom.contains("status-probe"), "{dom}");
    let completed = completed_ids(&get(&format!("{url}/api/checkpoints")));
    let shown: Vec<u64> = dom
        .split("<span class=\"ckpt-id\">")
        .skip(1)
        .filter_map(|s| s.split('<').next()?.parse().ok())
        .collect();
    assert!(
        shown.iter().any(|id| completed.contains(id)),
        "the page shows a completed checkpoint (shown {shown:?}, completed {completed:?}):\n{dom}"
    );
    assert!(dom.contains("completed"), "{dom}");
    handle.cancel();
    handle.join().unwrap();
}

#[test]
fn the_status_api_follows_the_job_and_stops_it_at_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, url) = start_checkpointed(tmp.path());
    let first = get(&format!("{url}/api/status"));
    assert_eq!(first["job"], "status-probe");
    assert_eq!(first["checkpointing"], true);
    let names: Vec<&str> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STEPS);
    assert!(first["steps"].as_array().unwrap().iter().all(|s| s["parallelism"] == 2));
    let edges: Vec<(String, String, String)> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("from"), s("to"), s("partitioning"))
        })
        .collect();
    assert!(
        edges.contains(&("calibrate".into(), "per-sensor-total".into(), "hash".into())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&("readings".into(), "calibrate".into(), "forward".into())),
        "{edges:?}"
    );
    // The counters, the uptime, the checkpoints and the rates move while the job runs.
    let mut latest = first.clone();
    wait_until("the status moved", 60, || {
        latest = get(&format!("{url}/api/status"));
        latest["source_records"].as_u64() > first["source_records"].as_u64()
            && latest["uptime_ms"].as_u64() > first["uptime_ms"].as_u64()
            && latest["last_checkpoint"].as_u64() > first["last_checkpoint"].as_u64()
            && latest["steps"][0]["rate_out"].as_f64().unwrap() > 0.0
    });
    assert_eq!(latest["state"], "running");
    let source = &latest["steps"][0];
    assert_eq!(source["subtasks"].as_array().unwrap().len(), 2);
    assert!(source["records_out"].as_u64().unwrap() > 0);
    let sink = &latest["steps"][3];
    assert!(sink["records_in"].as_u64().unwrap() > 0, "{sink}");
    let checkpoint = latest["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "completed")
        .expect("a completed checkpoint in the history")
        .clone();
    assert!(checkpoint["state_bytes"].as_u64().unwrap() > 0, "{checkpoint}");
    assert!(checkpoint["duration_ms"].as_f64().unwrap() > 0.0, "{checkpoint}");
    assert_eq!(checkpoint["kind"], "checkpoint");

    // A savepoint through the API.
    let target = tmp.path().join("savepoint");
    let (code, sp) = post(&format!("{url}/api/savepoint"), target.to_str().unwrap());
    assert_eq!(code, 200, "{sp}");
    assert!(
        target.join(format!("chk-{}", sp["id"])).join("_metadata").exists(),
        "{sp}"
    );
    let (code, again) = post(&format!("{url}/api/savepoint"), target.to_str().unwrap());
    assert_eq!(code, 400, "a target that holds a savepoint is refused: {again}");
    assert!(again["error"].as_str().unwrap().contains("savepoint"), "{again}");
    let (code, empty) = post(&format!("{url}/api/savepoint"), "");
    assert_eq!(code, 400, "{empty}");

    // A graceful stop through the API.
    let (code, stopped) = post(&format!("{url}/api/stop"), "");
    assert_eq!(code, 200, "{stopped}");
    let id = stopped["stopped_at"].as_u64().unwrap();
    // The server shows the final state until the handle is joined.
    wait_until("the job ended", 60, || handle.is_finished());
    let last = get(&format!("{url}/api/status"));
    assert_eq!(last["state"], "finished", "{}", last["state"]);
    assert!(completed_ids(&last["checkpoints"]).contains(&id));
    assert!(last["savepoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == sp["id"]));
    let (code, late) = post(&format!("{url}/api/cancel"), "");
    assert_eq!(code, 409, "{late}");
    let report = handle.join().unwrap();
    assert_eq!(report.stopped_at.map(|c| c.get()), Some(id));
    assert!(!report.cancelled);
    assert!(
        ureq::get(&format!("{url}/api/status")).call().is_err(),
        "the server stops when the handle is joined"
    );
}

#[test]
fn cancel_through_the_api_cancels_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, url) = start_checkpointed(tmp.path());
    let (code, answer) = post(&format!("{url}/api/cancel"), "");
    assert_eq!(code, 202, "{answer}");
    let report = handle.join().unwrap();
    assert!(report.cancelled);
}

#[test]
fn an_address_in_use_is_a_config_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = job(tmp.path()).status_addr(addr).start().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// A local cluster (a master and 2 worker processes): the master process serves the status,
/// with the workers and every subtask's counters from their heartbeats, and stops the job.
#[test]
fn the_master_process_of_a_cluster_serves_the_status_with_its_workers() {
    use crate::cluster::free_port;
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let url = format!("http://{addr}");
    let mut c = std::process::Command::new(crate::process_kill::example("wordcount"));
    // The input takes ~40 s at this rate: the job runs until it is stopped.
    c.args(["--sentences", "400000", "--rate", "10000", "--checkpoint-ms", "100"])
        .args(["--parallelism", "2"])
        .arg("--checkpoint-dir")
        .arg(tmp.path().join("checkpoints"))
        .arg("--output-dir")
        .arg(tmp.path().join("output"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in ["WEIR_ROLE", "WEIR_MASTER", "WEIR_WORKER_ID"] {
        c.env_remove(k);
    }
    c.env("WEIR_WORKERS", "2")
        .env("WEIR_SLOTS", "1")
        .env("WEIR_HEARTBEAT_MS", "100")
        .env("WEIR_STATUS_ADDR", &addr);
    let mut child = c.spawn().unwrap();
    let mut status = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        assert!(
            Instant::now() < deadline,
            "the master never showed a running job: {status}"
        );
        if let Ok(mut r) = ureq::get(&format!("{url}/api/status")).call() {
            status = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
            let workers = status["workers"].as_array().unwrap();
            let counted = status["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["subtasks"].as_array().unwrap().len() == s["parallelism"].as_u64().unwrap() as usize);
            if status["state"] == "running"
                && workers.len() == 2
                && workers.iter().all(|w| w["alive"] == true)
                && counted
                && status["steps"][0]["records_out"].as_u64().unwrap() > 0
                && status["last_checkpoint"].is_u64()
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut pids: Vec<u64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 2, "two worker processes: {status}");
    let (code, stopped) = post(&format!("{url}/api/stop"), "");
    assert_eq!(code, 200, "{stopped}");
    // The example audits its output against its whole input after the job: a stopped run
    // fails that audit, but its report says how it ended.
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("stopped at a final checkpoint"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A recovery is reported when the recovered attempt runs, not when it ends: the status shows
/// it (RTO, checkpoint restored) while the job keeps running.
#[test]
fn a_recovery_shows_in_the_status_while_the_job_keeps_running() {
    use weir::engine::fail::{self, FailAction, FailPoints};
    let tmp = tempfile::tempdir().unwrap();
    let points = FailPoints::new();
    let handle = job(tmp.path()).fail_points(points.clone()).start().unwrap();
    let url = format!("http://{}", handle.status_addr().expect("the job serves its status"));
    wait_until("the job completed a checkpoint", 60, || {
        handle.progress().last_checkpoint.is_some()
    });
    points.arm(fail::PROCESS_RECORD, 1, FailAction::Panic);
    let mut status = Value::Null;
    wait_until("the status lists the recovery while the job runs", 60, || {
        status = get(&format!("{url}/api/status"));
        status["recoveries"].as_array().is_some_and(|r| r.len() == 1) && status["state"] == "running"
    });
    let recovery = &status["recoveries"][0];
    assert_eq!(recovery["attempt"], 2, "{recovery}");
    assert!(recovery["checkpoint"].as_u64().is_some(), "{recovery}");
    assert!(
        recovery["detect_to_running_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{recovery}"
    );
    assert_eq!(status["restarts"], 1, "{status}");
    let (code, answer) = post(&format!("{url}/api/stop"), "");
    assert_eq!(code, 200, "{answer}");
    let report = handle.join().unwrap();
    assert_eq!(report.restores.len(), 1, "{report}");
}
