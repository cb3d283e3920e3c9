//! Process-level recovery: the real example binary is killed with SIGKILL (`kill -9`) at
//! seeded random moments, restarted each time with the same flags, and its committed output
//! must equal that of a run that was never killed.

#[path = "../examples/wordcount/audit.rs"]
mod wordcount_audit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir::engine::sink::read_committed_lines;
use weir::engine::source::generator::mix;

fn example(name: &str) -> PathBuf {
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

fn sorted_output(root: &Path) -> Vec<String> {
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
