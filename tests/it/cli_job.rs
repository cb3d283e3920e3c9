//! The `weir` command against a running job's status server: status, checkpoints, savepoint,
//! stop, and a job that cannot be reached.

use std::process::Command;

use crate::cli::{stdout as ok, weir};
use crate::common::weir_bin;
use crate::status_page::{start_checkpointed, STEPS};

#[test]
fn status_checkpoints_savepoint_and_stop_of_a_running_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (handle, url) = start_checkpointed(tmp.path());

    let summary = ok(&weir(&["status", "--job", &url]));
    println!("{summary}");
    assert!(summary.starts_with("job status-probe: running"), "{summary}");
    for step in STEPS {
        assert!(summary.contains(step), "step {step} in:\n{summary}");
    }
    assert!(summary.contains("RPO 0"), "{summary}");

    // --json is the API's answer; WEIR_JOB names the job when --job does not.
    let json = Command::new(weir_bin())
        .args(["status", "--json"])
        .env("WEIR_JOB", url.trim_start_matches("http://"))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&ok(&json)).unwrap();
    assert_eq!(status["job"], "status-probe");
    assert_eq!(status["steps"].as_array().unwrap().len(), STEPS.len());

    let history = ok(&weir(&["checkpoints", "--job", &url]));
    assert!(history.lines().next().unwrap().contains("STATUS"), "{history}");
    assert!(history.contains("completed"), "{history}");

    let target = tmp.path().join("savepoint");
    let saved = ok(&weir(&["savepoint", "--job", &url, target.to_str().unwrap()]));
    assert!(saved.starts_with("savepoint "), "{saved}");
    let refused = weir(&["savepoint", "--job", &url, target.to_str().unwrap()]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a target holding a savepoint is refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"), "{refused:?}");

    let stopped = ok(&weir(&["stop", "--job", &url, "--json"]));
    let id = serde_json::from_str::<serde_json::Value>(&stopped).unwrap()["stopped_at"]
        .as_u64()
        .unwrap();
    let report = handle.join().unwrap();
    assert_eq!(report.stopped_at.map(|c| c.get()), Some(id), "{report}");
    // The final checkpoint is in the job's storage, where the storage commands read it.
    let listed = ok(&weir(&[
        "checkpoints",
        "list",
        tmp.path().join("checkpoints").to_str().unwrap(),
    ]));
    assert!(listed.contains(&id.to_string()), "{listed}");
}

#[test]
fn a_job_that_cannot_be_reached_is_a_clear_error() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["status", "--job", url.as_str()],
        vec!["stop", "--job", url.as_str()],
        vec!["checkpoints", "--job", url.as_str()],
    ] {
        let o = weir(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot reach the job at") && err.contains(&url), "{err}");
    }
    let o = weir(&["status"]);
    assert_eq!(o.status.code(), Some(2), "no job named: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("WEIR_JOB"), "{o:?}");
}
