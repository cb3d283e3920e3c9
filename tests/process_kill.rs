//! Process-level recovery: the real example binary is killed with SIGKILL (`kill -9`) at
//! seeded random moments, restarted each time with the same flags, and its committed output
//! must equal that of a run that was never killed.

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
