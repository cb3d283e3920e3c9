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

pub(crate) const SENTENCES: &str = "120000";

pub(crate) fn wordcount(root: &Path, parallelism: u32) -> Command {
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

/// Starts `program` as a local cluster of a master and 3 workers (1 slot each, 1 s heartbeat
/// timeout) that lists its processes in `pids_file`.
fn on_three_workers(mut program: Command, pids_file: &Path) -> Child {
    program
        .env("WEIR_WORKERS", "3")
        .env("WEIR_SLOTS", "1")
        .env("WEIR_HEARTBEAT_MS", "100")
        .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")
        .env("WEIR_CLUSTER_PIDS", pids_file)
        .spawn()
        .unwrap()
}

/// Sends `signal` to `pid` with kill(1).
pub(crate) fn signal(signal: &str, pid: u32) {
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

/// The id of the newest completed checkpoint in `root/checkpoints` (0: none).
pub(crate) fn checkpoints(root: &Path) -> usize {
    std::fs::read_dir(root.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_metadata").is_file())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse::<usize>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Waits for a checkpoint newer than checkpoint `after` to complete (the job makes progress
/// again). Ids, not counts: retention keeps the count at 3.
pub(crate) fn await_checkpoint(root: &Path, after: usize, child: &mut Child) -> usize {
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

/// A port nobody listens on at `ip` (free when this returns).
pub(crate) fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nothing pre-committed is left behind once the job finished.
pub(crate) fn assert_no_pending(root: &Path) {
    let pending = root.join("output").join(".pending");
    let leftovers = std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "pending files left in {}", pending.display());
}

pub(crate) fn finish(child: Child) -> String {
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
    let mut child = on_three_workers(wordcount(dir.path(), 3), &pids_file);
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
    assert_no_pending(dir.path());
}

#[test]
fn a_worker_given_a_wrong_master_address_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
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
    let port = free_port("127.0.0.1");
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
    // The highly available masters: two replicas electing their leader in etcd, advertising
    // their pod's IP (from the downward API), as many workers and the same heartbeats.
    let mut ha_master = manifest_env("ha/master.yaml");
    ha_master.push(("WEIR_ADVERTISE_HOST".into(), "10.0.0.9".into()));
    let d = Deployment::from_vars(|k| get(&ha_master, k)).unwrap();
    let Deployment::Master(h) = d else {
        panic!("ha/master.yaml does not describe a master: {d:?}")
    };
    let ha = h.ha.as_ref().expect("ha/master.yaml names etcd");
    assert_eq!(ha.endpoints.len(), 3, "{ha:?}");
    assert!(
        ha.lease < m.heartbeats.timeout * 2,
        "a standby takes over soon after the leader dies"
    );
    assert_eq!((h.workers, h.heartbeats), (m.workers, m.heartbeats));
    assert_eq!(h.advertised_address(), format!("10.0.0.9:{}", h.bind.port()));
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

/// Network namespaces for the partition test: worker `i` lives in `weir-<pid>-w<i>`, linked
/// to this (root) namespace by a veth pair `wr<pid>-<i>` / `wn<pid>-<i>` on 10.<j>.<i>.0/24;
/// the root namespace routes between them and runs the master. Removed on drop.
struct Hosts {
    names: Vec<String>,
    host_links: Vec<String>,
    subnet: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// `n` hosts, or why they cannot be made here (not root, no `ip netns`).
    fn new(n: usize) -> Result<Self, String> {
        let pid = std::process::id();
        let subnet = 100 + (pid % 100) as u8;
        let mut hosts = Hosts {
            names: Vec::new(),
            host_links: Vec::new(),
            subnet,
        };
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("enabling IP forwarding: {e}"))?;
        for i in 0..n {
            let ns = format!("weir-{pid}-w{i}");
            let (host, inner) = (format!("wr{pid}-{i}"), format!("wn{pid}-{i}"));
            ip(&["netns", "add", &ns])?;
            hosts.names.push(ns.clone());
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            hosts.host_links.push(host.clone());
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["addr", "add", &format!("10.{subnet}.{i}.1/24"), "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{subnet}.{i}.2/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{subnet}.{i}.1"),
            ])?;
        }
        Ok(hosts)
    }

    fn worker_ip(&self, i: usize) -> String {
        format!("10.{}.{i}.2", self.subnet)
    }

    fn master_ip(&self) -> String {
        format!("10.{}.0.1", self.subnet)
    }

    /// Cuts (or heals) host `i`'s only link: its packets are dropped, no reset is sent.
    fn link(&self, i: usize, up: bool) {
        ip(&["link", "set", &self.host_links[i], if up { "up" } else { "down" }]).unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for l in &self.host_links {
            let _ = ip(&["link", "del", l]);
        }
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Kills its processes on drop, so that a failing test leaves none behind.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A worker cut off from the master and the other workers in the middle of the job (its link
/// down: packets dropped, no reset) is given up after the heartbeat timeout; the job restores
/// on the other workers and goes on; the cut-off worker cancels its attempt on its own. Healed
/// later, it registers again. The committed output equals an undisturbed run: nothing lost,
/// nothing doubled, nothing of the cut-off worker's attempt committed.
#[test]
fn a_worker_cut_off_by_the_network_is_given_up_and_its_attempt_writes_nothing() {
    let hosts = match Hosts::new(3) {
        Ok(h) => h,
        Err(why) => {
            eprintln!("skipped: network namespaces cannot be made here ({why}); run as root with iproute2");
            return;
        }
    };
    let reference = tempfile::tempdir().unwrap();
    let out = wordcount(reference.path(), 3).output().unwrap();
    assert!(out.status.success(), "reference run failed");
    let expected = sorted_output(reference.path());

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let heartbeats = [("WEIR_HEARTBEAT_MS", "100"), ("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")];
    let master = wordcount(dir.path(), 3)
        .env("WEIR_ROLE", "master")
        .env("WEIR_WORKERS", "3")
        .env("WEIR_MASTER", format!("0.0.0.0:{port}"))
        .envs(heartbeats)
        .spawn()
        .unwrap();
    let mut procs = Processes(vec![master]);
    for i in 0..3 {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &hosts.names[i]])
            .arg(example("wordcount"))
            .args([
                "--sentences",
                SENTENCES,
                "--rate",
                "15000",
                "--checkpoint-ms",
                "100",
                "--parallelism",
                "3",
            ])
            .arg("--checkpoint-dir")
            .arg(dir.path().join("checkpoints"))
            .arg("--output-dir")
            .arg(dir.path().join("output"))
            .env("WEIR_ROLE", "worker")
            .env("WEIR_WORKER_ID", i.to_string())
            .env("WEIR_SLOTS", "2")
            .env("WEIR_MASTER", format!("{}:{port}", hosts.master_ip()))
            .env("WEIR_DATA_ADDR", format!("{}:0", hosts.worker_ip(i)))
            .envs(heartbeats)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        procs.0.push(c.spawn().unwrap());
    }
    let waited = Instant::now();
    while !has_complete_checkpoint(dir.path()) {
        assert!(waited.elapsed() < Duration::from_secs(60), "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = checkpoints(dir.path());
    // Cut worker 1 off in the middle of the job (its subtasks are busy, checkpoints in flight).
    hosts.link(1, false);
    let cut = Instant::now();
    let n = await_checkpoint(dir.path(), n, &mut procs.0[0]);
    let recovered_after = cut.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    hosts.link(1, true);
    await_checkpoint(dir.path(), n, &mut procs.0[0]);

    let master = procs.0.remove(0);
    let stdout = finish(master);
    assert!(stdout.contains("audit passed"), "{stdout}");
    let restarts: u32 = stdout
        .lines()
        .find_map(|l| {
            l.split(" (")
                .nth(1)?
                .strip_suffix(" checkpoints)")?
                .split(" restarts")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no report line: {stdout}"));
    assert!(restarts >= 1, "the cut-off worker's loss restarted the job: {stdout}");
    assert!(
        recovered_after < Duration::from_secs(30),
        "the job did not go on without the cut-off worker"
    );
    let got = sorted_output(dir.path());
    assert_eq!(got.len(), expected.len(), "committed line count");
    assert!(got == expected, "committed output differs from the single-process run");
    assert_no_pending(dir.path());
    // The workers end when the master ends the job.
    let deadline = Instant::now() + Duration::from_secs(30);
    for w in &mut procs.0 {
        while w.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "a worker did not end with the job");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The environment variable that makes this binary a process of the backpressure job.
const BACKPRESSURE_DIR: &str = "WEIR_TEST_BACKPRESSURE_DIR";
const BACKPRESSURE_EVENTS: u64 = 6_000;

/// The backpressure job: two sources, their union broadcast to a slow step on every worker
/// (every record crosses the network to the other worker), and an exactly-once file sink.
fn backpressure_job(dir: &Path) -> weir::prelude::Pipeline {
    use weir::prelude::*;
    // Small batches and channels: a barrier waits behind little data (aligned checkpoints
    // cannot overtake what is queued), so checkpoints complete while the slow step lags.
    let p = Pipeline::new("backpressure")
        .parallelism(2)
        .batch_size(16)
        .channel_capacity(4)
        .checkpoint_storage(dir.join("checkpoints"))
        .checkpoint_interval(Duration::from_millis(50));
    // 2 × 3,000 records/s in, while each slow subtask takes 6,000 × 250 µs = 1.5 s per second
    // of input: backpressured.
    let a = p.source(
        "a",
        GeneratorSource::new(|i| i)
            .bounded(BACKPRESSURE_EVENTS)
            .splits(2)
            .rate_per_second(3_000.0),
    );
    let b = p.source(
        "b",
        GeneratorSource::new(|i| 1_000_000 + i)
            .bounded(BACKPRESSURE_EVENTS)
            .splits(2)
            .rate_per_second(3_000.0),
    );
    a.union(&b)
        .broadcast()
        .map("slow", |x: u64| {
            std::thread::sleep(Duration::from_micros(250));
            x
        })
        .sink("out", FileSink::exactly_once(dir.join("output")));
    p
}

/// A process of the backpressure job (this test binary, re-run with `BACKPRESSURE_DIR`): the
/// launcher, whose master and workers are this test again.
#[test]
fn backpressure_child_process() {
    let Some(dir) = std::env::var_os(BACKPRESSURE_DIR) else {
        return; // not a child: nothing to do
    };
    let dir = std::path::PathBuf::from(dir);
    let report = backpressure_job(&dir).run().expect("the backpressure job");
    std::fs::write(dir.join("checkpoints-completed"), report.checkpoints.len().to_string()).unwrap();
}

/// A slow step fed by a broadcast of a union, across two workers: the data connections carry
/// every channel with its own credit, so the channels barrier alignment holds back never stall
/// the others; the job neither deadlocks nor stops checkpointing, and commits every record once
/// per subtask.
#[test]
fn backpressure_across_workers_with_alignment_neither_deadlocks_nor_stops_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "cluster::backpressure_child_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(BACKPRESSURE_DIR, dir.path())
        .env("WEIR_WORKERS", "2")
        .env("WEIR_SLOTS", "1")
        .env_remove("WEIR_ROLE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job did not finish within 180 s: deadlocked under backpressure");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let completed: usize = std::fs::read_to_string(dir.path().join("checkpoints-completed"))
        .unwrap()
        .parse()
        .unwrap();
    // The slow step needs ~3 s per subtask: a checkpoint every 50 ms must keep completing.
    assert!(
        completed >= 10,
        "only {completed} checkpoints completed under backpressure"
    );
    let mut counts: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    for line in weir::engine::sink::read_committed_lines(dir.path().join("output")).unwrap() {
        *counts.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len() as u64, 2 * BACKPRESSURE_EVENTS, "every record committed");
    assert!(
        counts.values().all(|&n| n == 2),
        "every record once per subtask of the broadcast step"
    );
}

/// Keys of every keyed file checkpoint `chk` references, from its metadata.
fn keyed_file_keys(chk: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(chk.join("_metadata")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys = Vec::new();
    let ops = meta.pointer("/metadata/operators");
    for op in ops.and_then(|o| o.as_array()).into_iter().flatten() {
        for st in op["subtasks"].as_array().into_iter().flatten() {
            for f in st["keyed_files"].as_array().into_iter().flatten() {
                keys.push(f["key"].as_str().unwrap().to_string());
            }
        }
    }
    keys
}

/// A worker that finds the restored checkpoint corrupt (a file failing its checksum where it
/// fetched it) fails the restore as one process would: without the fallback opt-in the job
/// stops with a `Config` error naming the checkpoint, and never restores an older one silently.
#[test]
fn a_checkpoint_a_worker_finds_corrupt_stops_the_job_without_the_fallback_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids.json");
    let mut child = on_three_workers(wordcount(dir.path(), 3), &pids_file);
    let first = pids(&pids_file);
    await_checkpoint(dir.path(), 1, &mut child);
    // The master frozen: no checkpoint completes while the newest one is corrupted.
    signal("-STOP", first.master);
    let newest = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .max_by_key(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("chk-")?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .unwrap()
        .path();
    let keys = keyed_file_keys(&newest);
    assert!(!keys.is_empty(), "the checkpoint has keyed files");
    for key in &keys {
        let path = dir.path().join("checkpoints").join(key);
        let mut bytes = std::fs::read(&path).unwrap();
        match bytes.last_mut() {
            Some(b) => *b ^= 0xff, // same size, another checksum
            None => bytes.push(0),
        }
        std::fs::write(&path, bytes).unwrap();
    }
    // Every worker restarts (no local copy left): their restore fetches the corrupt files.
    for pid in first.workers.values() {
        signal("-KILL", *pid);
    }
    signal("-CONT", first.master);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job must stop on a corrupt checkpoint");
    assert!(
        stderr.contains("is corrupt") && stderr.contains("fallback_to_older_checkpoint_reproducing_output"),
        "{stderr}"
    );
}
