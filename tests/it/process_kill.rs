//! Process-level recovery: the real example binary is killed with SIGKILL (`kill -9`) at
//! seeded random moments, restarted each time with the same flags, and its committed output
//! must equal that of a run that was never killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir::engine::sink::read_committed_lines;
use weir::engine::source::generator::mix;
use weir_examples::wordcount::audit as wordcount_audit;

pub(crate) fn example(name: &str) -> PathBuf {
    // target/release/deps/<test> -> target/release/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --release` builds the examples first",
        path.display()
    );
    path
}

fn command(root: &Path) -> Command {
    let mut c = Command::new(example("wordcount"));
    c.args([
        "--sentences",
        "60000",
        "--rate",
        "12000",
        "--checkpoint-ms",
        "100",
        "--parallelism",
        "2",
    ])
    .arg("--checkpoint-dir")
    .arg(root.join("checkpoints"))
    .arg("--output-dir")
    .arg(root.join("output"))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    c
}

pub(crate) fn sorted_output(root: &Path) -> Vec<String> {
    let mut lines = read_committed_lines(root.join("output")).unwrap();
    lines.sort();
    lines
}

#[test]
fn kill_9_at_random_moments_and_restart_commits_exactly_the_failure_free_output() {
    let reference = tempfile::tempdir().unwrap();
    let out = command(reference.path()).output().unwrap();
    assert!(
        out.status.success(),
        "reference run failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let expected = sorted_output(reference.path());
    assert!(
        expected.len() > 100_000,
        "reference output too small: {}",
        expected.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut kills = 0;
    let mut runs = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    let stdout = loop {
        assert!(Instant::now() < deadline, "the job did not finish after {kills} kills");
        let mut child = command(dir.path()).spawn().unwrap();
        runs += 1;
        if kills < 6 {
            let wait = Duration::from_millis(200 + mix(42, runs) % 500);
            std::thread::sleep(wait);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL: no unwinding, no flushing, no cleanup
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "final run failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        break String::from_utf8_lossy(&out.stdout).into_owned();
    };
    assert!(kills >= 5, "only {kills} kills happened");
    assert!(stdout.contains("audit passed"), "{stdout}");
    let got = sorted_output(dir.path());
    assert_eq!(got.len(), expected.len(), "committed line count after {kills} kills");
    assert!(got == expected, "committed output differs after {kills} kills");
    // Nothing pre-committed is left behind once the job finished.
    let pending = dir.path().join("output").join(".pending");
    let leftovers = std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "pending files left in {}", pending.display());
}

/// The word count's audit accepts exactly the counts `1..=total` of every word, once each.
#[test]
fn the_wordcount_audit_rejects_a_count_beyond_the_total() {
    let expected: BTreeMap<String, u64> = [("ledger".to_string(), 3), ("replay".to_string(), 1)].into();
    let audit = |ledger: &[u64], replay: &[u64]| {
        let updates: BTreeMap<String, Vec<u64>> = [
            ("ledger".to_string(), ledger.to_vec()),
            ("replay".to_string(), replay.to_vec()),
        ]
        .into();
        wordcount_audit::audit(&expected, updates)
    };
    let exact = audit(&[1, 2, 3], &[1]);
    assert!(exact.passed(), "{exact:?}");
    assert_eq!((exact.words, exact.expected_updates), (2, 4));

    // One update too many: the input has 3 "ledger", a committed count of 4 double-counts one.
    let over = audit(&[1, 2, 3, 4], &[1]);
    assert!(!over.passed(), "a count of total + 1 must fail the audit: {over:?}");
    assert_eq!(over.unexpected, 1, "{over:?}");
    let zero = audit(&[0, 1, 2, 3], &[1]);
    assert!(!zero.passed(), "{zero:?}");

    let lost = audit(&[1, 3], &[1]);
    assert_eq!((lost.lost, lost.doubled, lost.unexpected), (1, 0, 0), "{lost:?}");
    let doubled = audit(&[1, 2, 2, 3], &[1, 1]);
    assert_eq!(
        (doubled.lost, doubled.doubled, doubled.unexpected),
        (0, 2, 0),
        "{doubled:?}"
    );
    let mut updates: BTreeMap<String, Vec<u64>> =
        [("ledger".to_string(), vec![1, 2, 3]), ("replay".to_string(), vec![1])].into();
    updates.insert("unknown".into(), vec![1]);
    let unknown = wordcount_audit::audit(&expected, updates);
    assert_eq!(unknown.unexpected, 1, "{unknown:?}");
}

/// Whether a checkpoint of the job under `root` is complete.
pub(crate) fn has_complete_checkpoint(root: &Path) -> bool {
    std::fs::read_dir(root.join("checkpoints"))
        .map(|d| d.flatten().any(|e| e.path().join("_metadata").is_file()))
        .unwrap_or(false)
}

/// Records the job's source step read in this run, from the report the example prints.
fn source_records(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sentences ") && !l.contains('['))
        .unwrap_or_else(|| panic!("no source line in the report: {stdout}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

fn reference_output() -> Vec<String> {
    let reference = tempfile::tempdir().unwrap();
    let out = command(reference.path()).output().unwrap();
    assert!(out.status.success(), "reference run failed");
    sorted_output(reference.path())
}

/// One writer per directory: a second process of the job started on the same checkpoint and
/// output directories while the first runs (a double-scheduled pod) fails at once, naming the
/// first, and leaves the first's output and checkpoints intact.
#[test]
fn a_second_process_on_the_same_directories_fails_fast_naming_the_first() {
    let expected = reference_output();
    let dir = tempfile::tempdir().unwrap();
    let first = command(dir.path()).spawn().unwrap();
    let waited = Instant::now();
    while !has_complete_checkpoint(dir.path()) {
        assert!(waited.elapsed() < Duration::from_secs(30), "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let second = command(dir.path()).stderr(Stdio::piped()).output().unwrap();
    let took = started.elapsed();
    let second_err = String::from_utf8_lossy(&second.stderr).into_owned();
    let second_out = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(
        !second.status.success(),
        "the second process must be refused, but it ran: {second_out}"
    );
    assert!(
        second_err.contains(&format!("pid {}", first.id())),
        "the error names the first process (pid {}): {second_err}",
        first.id()
    );
    assert!(second_err.contains("in use by another process"), "{second_err}");
    assert!(took < Duration::from_secs(3), "fails fast: took {took:?}");

    let out = first.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "first process failed: {stdout}");
    assert!(stdout.contains("audit passed"), "{stdout}");
    let got = sorted_output(dir.path());
    assert_eq!(got.len(), expected.len(), "committed line count");
    assert!(got == expected, "committed output differs from the model");
    // Its checkpoints are intact: a new run restores the final one and commits nothing more.
    let again = command(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "resuming the finished job failed: {stdout}");
    assert_eq!(source_records(&stdout), 0, "nothing read again: {stdout}");
    assert!(sorted_output(dir.path()) == expected);
}

/// The lock dies with its process: after `kill -9`, the next process takes over at once and
/// resumes from the killed one's checkpoint.
#[test]
fn after_kill_9_the_next_process_takes_over_at_once() {
    let expected = reference_output();
    let dir = tempfile::tempdir().unwrap();
    let mut first = command(dir.path()).spawn().unwrap();
    let waited = Instant::now();
    while !has_complete_checkpoint(dir.path()) {
        assert!(waited.elapsed() < Duration::from_secs(30), "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let out = command(dir.path()).stderr(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the next process failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit passed"), "{stdout}");
    let read = source_records(&stdout);
    assert!(read < 60_000, "resumed from a checkpoint, read {read} sentences");
    assert!(
        sorted_output(dir.path()) == expected,
        "committed output differs from the model"
    );
}
