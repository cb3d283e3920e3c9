//! A highly available master: two masters elect their leader in a real etcd (started on
//! loopback by each test). `kill -9` of the leader: the standby leads with the next term, the
//! workers register with it, the job restores the checkpoint etcd's pointer names, and the
//! committed output equals an undisturbed single-process run (the word count has no
//! deduplication). A leader frozen with SIGSTOP past its lease and thawed with SIGCONT cannot
//! move the pointer, nor make a sink commit. An etcd that cannot be reached is a clear error at
//! start, never a fresh start over an earlier run.
//!
//! The aborts of the leader mid-checkpoint and mid-commit at fail points, with the
//! count-sensitive pipeline, are in `exactly_once.rs`.

use super::cluster::{assert_no_pending, checkpoints, finish, free_port, signal, wordcount};
use super::etcd::TestEtcd;
use super::process_kill::{has_complete_checkpoint, sorted_output};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use weir::engine::cluster::ClusterPids;

const LEADER: &str = "/weir/jobs/wordcount/leader";
const LATEST: &str = "/weir/jobs/wordcount/latest";

/// Starts `program` as a local cluster of 2 masters (through `etcd`, 1 s lease) and 3 workers
/// (1 slot each, 1 s heartbeat timeout) that lists its processes in `pids_file`.
fn on_two_masters(mut program: Command, etcd: &TestEtcd, pids_file: &Path) -> Child {
    program
        .env("WEIR_WORKERS", "3")
        .env("WEIR_MASTERS", "2")
        .env("WEIR_SLOTS", "1")
        .env("WEIR_HEARTBEAT_MS", "100")
        .env("WEIR_HEARTBEAT_TIMEOUT_MS", "1000")
        .env("WEIR_ETCD_ENDPOINTS", etcd.endpoint())
        .env("WEIR_HA_LEASE_MS", "1000")
        .env("WEIR_CLUSTER_PIDS", pids_file)
        .spawn()
        .unwrap()
}

/// The leader etcd names: (term, pid).
fn leader(etcd: &TestEtcd) -> Option<(u64, u32)> {
    let v = etcd.get_json(LEADER)?;
    Some((v["term"].as_u64()?, v["pid"].as_u64()? as u32))
}

/// The pointer etcd holds: (checkpoint, term).
fn pointer(etcd: &TestEtcd) -> Option<(u64, u64)> {
    let v = etcd.get_json(LATEST)?;
    Some((v["checkpoint"].as_u64()?, v["term"].as_u64()?))
}

/// Waits until `f` gives a value, failing after `secs` or when the job ended.
fn await_some<T>(what: &str, secs: u64, child: &mut Child, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended while waiting for {what}"
        );
        assert!(Instant::now() < deadline, "no {what} within {secs} s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn masters(pids_file: &Path) -> Vec<u32> {
    ClusterPids::read(pids_file).map(|p| p.masters).unwrap_or_default()
}

/// The reference: the word count in one process, undisturbed.
fn reference() -> Vec<String> {
    let reference = tempfile::tempdir().unwrap();
    let out = wordcount(reference.path(), 3).output().unwrap();
    assert!(out.status.success(), "reference run failed");
    sorted_output(reference.path())
}

fn assert_same_output(dir: &Path, expected: &[String]) {
    let got = sorted_output(dir);
    assert_eq!(got.len(), expected.len(), "committed line count");
    assert!(got == expected, "committed output differs from the single-process run");
    assert_no_pending(dir);
}

/// `kill -9` of the leader, twice: each time the standby leads with the next term, the job
/// restores the checkpoint etcd names and goes on; the killed master comes back as a standby.
/// Prints the failover RTO: from the kill until a checkpoint of the new term completed.
#[test]
fn the_standby_master_leads_after_kill_9_of_the_leader_and_the_output_equals_an_undisturbed_run() {
    let expected = reference();
    let etcd = TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids.json");
    let mut child = on_two_masters(wordcount(dir.path(), 3), &etcd, &pids_file);
    let waited = Instant::now();
    while !has_complete_checkpoint(dir.path()) {
        assert!(waited.elapsed() < Duration::from_secs(60), "no checkpoint completed");
        assert!(child.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rtos = Vec::new();
    for round in 0..2 {
        let (term, pid) = await_some("leader", 30, &mut child, || leader(&etcd));
        await_some("pointer of the leader's term", 30, &mut child, || {
            pointer(&etcd).filter(|&(_, t)| t == term)
        });
        assert!(
            masters(&pids_file).contains(&pid),
            "the leader is one of the launcher's masters"
        );
        signal("-KILL", pid);
        let killed = Instant::now();
        let (new_term, new_pid) = await_some("new leader", 30, &mut child, || {
            leader(&etcd).filter(|&(t, _)| t > term)
        });
        let elected = killed.elapsed();
        assert_eq!(new_term, term + 1, "the next term");
        assert_ne!(new_pid, pid);
        let (ckpt, _) = await_some("checkpoint of the new term", 60, &mut child, || {
            pointer(&etcd).filter(|&(_, t)| t == new_term)
        });
        let rto = killed.elapsed();
        eprintln!(
            "failover {round}: term {term} (pid {pid}) killed; term {new_term} elected after {} ms, \
             checkpoint {ckpt} of term {new_term} complete after {} ms",
            elected.as_millis(),
            rto.as_millis()
        );
        rtos.push(rto);
        // The launcher starts the killed master again, as a standby.
        await_some("the killed master restarted", 30, &mut child, || {
            let m = masters(&pids_file);
            (m.len() == 2 && !m.contains(&pid)).then_some(())
        });
    }
    let stdout = finish(child);
    assert!(stdout.contains("audit passed"), "{stdout}");
    assert_same_output(dir.path(), &expected);
    eprintln!("master failover RTO (kill -9 → a checkpoint of the new term complete): {rtos:?}");
}

/// A leader frozen with SIGSTOP past its lease: the standby leads with the next term and the
/// workers follow it. Thawed with SIGCONT, the old leader finds its lease over and ends: etcd's
/// pointer only ever shows the new term from then on, and its sinks' commits never reach a
/// worker (the output equals an undisturbed run: nothing doubled).
#[test]
fn a_paused_old_leader_cannot_move_the_pointer_or_make_a_sink_commit() {
    let expected = reference();
    let etcd = TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids.json");
    let mut child = on_two_masters(wordcount(dir.path(), 3), &etcd, &pids_file);
    let (term, pid) = await_some("leader", 30, &mut child, || leader(&etcd));
    await_some("pointer of the leader's term", 60, &mut child, || {
        pointer(&etcd).filter(|&(_, t)| t == term)
    });
    signal("-STOP", pid);
    let (new_term, _) = await_some("new leader", 30, &mut child, || {
        leader(&etcd).filter(|&(t, _)| t > term)
    });
    let (ckpt, _) = await_some("checkpoint of the new term", 60, &mut child, || {
        pointer(&etcd).filter(|&(_, t)| t == new_term)
    });
    let n = checkpoints(dir.path());
    signal("-CONT", pid);
    // For 2 s after the thaw the pointer never goes back to the old term nor an older checkpoint.
    let thawed = Instant::now();
    let mut last = ckpt;
    while thawed.elapsed() < Duration::from_secs(2) {
        if let Some((c, t)) = pointer(&etcd) {
            assert!(
                t >= new_term,
                "the old leader (term {term}) moved the pointer to checkpoint {c}"
            );
            assert!(c >= last, "the pointer went back from {last} to {c}");
            last = c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The old leader ended itself (the launcher started it again as a standby).
    await_some("the old leader ended", 10, &mut child, || {
        (!masters(&pids_file).contains(&pid)).then_some(())
    });
    assert!(checkpoints(dir.path()) >= n);
    let stdout = finish(child);
    assert!(stdout.contains("audit passed"), "{stdout}");
    assert_same_output(dir.path(), &expected);
}

/// An etcd that cannot be reached: a master fails at once, naming the endpoint and the
/// variable, and writes nothing over an earlier run's checkpoints and output.
#[test]
fn an_etcd_that_cannot_be_reached_is_a_clear_error_at_start_and_never_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = Command::new(super::process_kill::example("wordcount"))
        .args(["--sentences", "3000", "--checkpoint-ms", "50", "--parallelism", "2"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .arg("--output-dir")
        .arg(dir.path().join("output"))
        .env_remove("WEIR_ROLE")
        .env_remove("WEIR_WORKERS")
        .output()
        .unwrap();
    assert!(earlier.status.success(), "the earlier run failed");
    let listing = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let (before, output) = (listing(&dir.path().join("checkpoints")), sorted_output(dir.path()));
    let port = free_port("127.0.0.1");
    let started = Instant::now();
    let out = wordcount(dir.path(), 2)
        .env("WEIR_ROLE", "master")
        .env("WEIR_WORKERS", "1")
        .env("WEIR_MASTER", format!("127.0.0.1:{}", free_port("127.0.0.1")))
        .env("WEIR_ETCD_ENDPOINTS", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a master without its etcd must fail");
    assert!(
        stderr.contains(&format!("etcd at http://127.0.0.1:{port}")) && stderr.contains("WEIR_ETCD_ENDPOINTS"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "it failed at start");
    assert_eq!(
        listing(&dir.path().join("checkpoints")),
        before,
        "nothing written to the checkpoints"
    );
    assert_eq!(sorted_output(dir.path()), output, "nothing written to the output");
}

/// etcd naming a latest checkpoint the storage does not hold (another job's etcd, or the
/// storage was replaced): the master refuses to start rather than start afresh.
#[test]
fn a_pointer_naming_a_checkpoint_the_storage_lacks_is_refused() {
    let etcd = TestEtcd::start();
    etcd.ctl(&["put", LATEST, r#"{"checkpoint":999,"term":1}"#]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = wordcount(dir.path(), 2)
        .env("WEIR_ROLE", "master")
        .env("WEIR_WORKERS", "1")
        .env("WEIR_MASTER", format!("127.0.0.1:{}", free_port("127.0.0.1")))
        .env("WEIR_ETCD_ENDPOINTS", etcd.endpoint())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the master must refuse");
    assert!(
        stderr.contains("names checkpoint 999") && stderr.contains("holds no completed checkpoint 999"),
        "{stderr}"
    );
}
