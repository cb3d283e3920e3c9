//! One job on a master and several worker processes (real processes, real sockets): the word
//! count example launched with `WEIR_WORKERS=3` is drilled with `kill -9` of a worker, `kill -9`
//! of the master and a worker frozen with SIGSTOP past the heartbeat timeout, and must commit
//! exactly what an undisturbed single-process run commits. The word count has no
//! deduplication: an event processed twice changes a count and fails the audit.
//!
//! Bad input fails fast and says why: a worker given a wrong master address, a worker running
//! another version of the program than its master, a master whose port is taken.

use super::process_kill::{example, has_complete_checkpoint, sorted_output};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir::engine::cluster::ClusterPids;

const SENTENCES: &str = "120000";

fn wordcount(root: &Path, parallelism: u32) -> Command {
    let mut c = Command::new(example("wordcount"));
    c.args(["--sentences", SENTENCES, "--rate", "15000", "--checkpoint-ms", "100"])
        .args(["--parallelism", &parallelism.to_string()])
        .arg("--checkpoint-dir")
        .arg(root.join("checkpoints"))
        .arg("--output-dir")
        .arg(root.join("output"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in ["WEIR_ROLE", "WEIR_WORKERS", "WEIR_MASTER", "WEIR_WORKER_ID"] {
        c.env_remove(k);
    }
    c
}

/// Sends `signal` to `pid` with kill(1).
fn signal(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}

fn pids(file: &Path) -> ClusterPids {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(p) = ClusterPids::read(file) {
            if p.master != 0 && p.workers.len() == 3 {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "the launcher wrote no process list");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoints(root: &Path) -> usize {
    std::fs::read_dir(root.join("checkpoints"))
        .map(|d| d.flatten().filter(|e| e.path().join("_metadata").is_file()).count())
        .unwrap_or(0)
}

/// Waits for one more checkpoint to complete than `after` (the job makes progress again).
fn await_checkpoint(root: &Path, after: usize, child: &mut Child) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = checkpoints(root);
        if n > after {
            return n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the job ended during the drill");
        assert!(Instant::now() < deadline, "no checkpoint completed after a failure");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the job failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_job_on_three_workers_commits_exactly_once_through_worker_kill_master_kill_and_a_frozen_worker() {
    let reference = tempfile::tempdir().unwrap();
    let out = wordcount(reference.path(), 3).output().unwrap();
    assert!(out.status.success(), "reference run failed");
    let expected = sorted_output(reference.path());

    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids.json");
    let mut child = wordcount(dir.path(), 3)
        .env("WEIR_WORKERS", "3")
        .env("WEIR_SLOTS", "1")
        .env("WEIR_HEARTBEAT_MS", "100")
        .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")
        .env("WEIR_CLUSTER_PIDS", &pids_file)
        .spawn()
        .unwrap();
    let first = pids(&pids_file);
    let waited = Instant::now();
    while !has_complete_checkpoint(dir.path()) {
        assert!(waited.elapsed() < Duration::from_secs(60), "no checkpoint completed");
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = checkpoints(dir.path());

    // kill -9 of a worker: the launcher starts it again, the job restores and goes on.
    signal("-KILL", first.workers[&1]);
    let n = await_checkpoint(dir.path(), n, &mut child);
    let after_worker = pids(&pids_file);
    assert_ne!(after_worker.workers[&1], first.workers[&1], "worker 1 was restarted");

    // kill -9 of the master: started again, it restores; the workers register with it.
    signal("-KILL", after_worker.master);
    let n = await_checkpoint(dir.path(), n, &mut child);
    let after_master = pids(&pids_file);
    assert_ne!(after_master.master, after_worker.master, "the master was restarted");

    // A worker frozen past the heartbeat timeout is given up; when it thaws, it finds its
    // attempt over and must not write anything of it.
    let frozen = after_master.workers[&2];
    signal("-STOP", frozen);
    std::thread::sleep(Duration::from_millis(2500));
    signal("-CONT", frozen);
    await_checkpoint(dir.path(), n, &mut child);

    let stdout = finish(child);
    assert!(stdout.contains("audit passed"), "{stdout}");
    let got = sorted_output(dir.path());
    assert_eq!(got.len(), expected.len(), "committed line count");
    assert!(got == expected, "committed output differs from the single-process run");
    let pending = dir.path().join("output").join(".pending");
    let leftovers = std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "pending files left in {}", pending.display());
}

#[test]
fn a_worker_given_a_wrong_master_address_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = wordcount(dir.path(), 2)
        .env("WEIR_ROLE", "worker")
        .env("WEIR_WORKER_ID", "0")
        .env("WEIR_MASTER", format!("127.0.0.1:{port}"))
        .env("WEIR_MASTER_WAIT_MS", "1500")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a worker without a master must fail");
    assert!(
        stderr.contains(&format!("found no master at 127.0.0.1:{port}")) && stderr.contains("WEIR_MASTER"),
        "{stderr}"
    );
}

#[test]
fn a_worker_running_another_program_version_is_refused_by_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let master_addr = format!("127.0.0.1:{port}");
    let mut master = wordcount(dir.path(), 2)
        .env("WEIR_ROLE", "master")
        .env("WEIR_WORKERS", "1")
        .env("WEIR_MASTER", &master_addr)
        .spawn()
        .unwrap();
    // Parallelism 3 instead of 2: another physical plan, as another build would have.
    let out = wordcount(dir.path(), 3)
        .env("WEIR_ROLE", "worker")
        .env("WEIR_WORKER_ID", "0")
        .env("WEIR_MASTER", &master_addr)
        .env("WEIR_MASTER_WAIT_MS", "20000")
        .output()
        .unwrap();
    master.kill().unwrap();
    master.wait().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a worker of another program must fail");
    assert!(
        stderr.contains("refused worker 0") && stderr.contains("another version of the program"),
        "{stderr}"
    );
}

#[test]
fn a_master_whose_port_is_taken_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = wordcount(dir.path(), 2)
        .env("WEIR_ROLE", "master")
        .env("WEIR_WORKERS", "1")
        .env("WEIR_MASTER", addr.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a master without its port must fail");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

/// The `WEIR_*` settings of a Kubernetes manifest's container, as `{name: K, value: V}` lines.
fn manifest_env(file: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("- {name: ")?;
            let (k, rest) = l.split_once(", value: ")?;
            let v = rest.split('}').next()?.trim().trim_matches('"');
            k.starts_with("WEIR_").then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The manifests under deploy/kubernetes configure the processes with settings Weir accepts:
/// the master's as a master of as many workers as the StatefulSet has replicas, a worker pod's
/// (its number from its host name) as a worker of that master.
#[test]
fn the_kubernetes_manifests_use_settings_weir_accepts() {
    use weir::engine::cluster::Deployment;
    let master = manifest_env("master.yaml");
    let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let d = Deployment::from_vars(|k| get(&master, k)).unwrap();
    let Deployment::Master(m) = d else {
        panic!("master.yaml does not describe a master: {d:?}")
    };
    let workers_yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/workers.yaml")).unwrap();
    let replicas: u32 = workers_yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        m.workers, replicas,
        "WEIR_WORKERS of the master = replicas of the workers"
    );
    let mut worker = manifest_env("workers.yaml");
    worker.push(("HOSTNAME".into(), "weir-worker-2".into()));
    worker.push(("WEIR_ADVERTISE_HOST".into(), "10.0.0.7".into()));
    let d = Deployment::from_vars(|k| get(&worker, k)).unwrap();
    let Deployment::Worker(w) = d else {
        panic!("workers.yaml does not describe a worker: {d:?}")
    };
    assert_eq!(w.id, 2);
    assert_eq!(w.master, format!("weir-master:{}", m.bind.port()));
    assert_eq!(w.heartbeats, m.heartbeats, "master and workers agree on heartbeats");
}

/// The payment example on a master and 3 worker processes: its drill kills a worker and the
/// master with `kill -9` and freezes a worker, and its audit of the committed output against
/// the sequential model passes with RPO 0.
#[test]
fn the_payment_drill_on_three_workers_passes_its_audit_through_worker_and_master_kills() {
    let out = Command::new(example("payments"))
        .args(["--workers", "3", "--events", "150000", "--seed", "7"])
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the drill failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    assert!(stdout.contains("RPO: 0 events lost, 0 events duplicated"), "{stdout}");
    for kind in ["kill -9 of a worker process", "kill -9 of the master process"] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(kind))
            .unwrap_or_else(|| panic!("no drill row for {kind}: {stdout}"));
        assert!(row.contains(" ms"), "no RTO measured for {kind}: {row}");
    }
}
