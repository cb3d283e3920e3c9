//! The payments example end to end: a drill with mixed failures must pass its audit with
//! RPO 0/0, the verifier must catch a deliberately corrupted committed output, a run stopped
//! with a savepoint and resumed from a moved copy must pass its audit, and the CLI must
//! document its flags and reject bad values.
//!
//! The tests run the built example binary (`target/release/examples/payments`), and call the
//! verifier as a library: `weir_examples::payments`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use weir::engine::sink::file::committed_files;
use weir_examples::payments::{audit, domain};

/// The example binary, built once per test run if it is missing or stale.
fn example() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // `cargo test --release` builds the examples first; `cargo test --test payments` does
        // not, so make sure (a no-op when the binary is up to date).
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--example", "payments"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the payments example failed");
        // target/release/deps/<test> -> target/release/examples/payments
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join("payments");
        assert!(path.exists(), "{} is missing", path.display());
        path
    })
}

fn run(args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(example())
        .args(args)
        .output()
        .expect("running the payments example")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_drill_with_mixed_failures_passes_the_audit_with_zero_rpo() {
    let out = run(&[
        "--drill",
        "5",
        "--verify",
        "--events",
        "120000",
        "--seed",
        "7",
        "--checkpoint-ms",
        "100",
        // The fraud rules change nine times; published slowly, payments overtake them and
        // wait in `authorize` until their rules arrive, across every failure.
        "--rules-rate",
        "2",
    ]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "drill failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    assert!(stdout.contains("failures injected: 5 ("), "{stdout}");
    for kind in [
        "panic in a subtask",
        "kill -9 of the process",
        "crash after checkpoint, before commit",
    ] {
        assert!(stdout.contains(&format!("× {kind}")), "no {kind} injected:\n{stdout}");
    }
    assert!(
        stdout.contains("RPO: 0 events lost, 0 events duplicated (from the audit"),
        "{stdout}"
    );
    assert!(!stdout.contains("NOT PLANNED"), "{stdout}");
    let restarts = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("restarts: "))
        .and_then(|r| r.split(' ').next()?.parse::<u32>().ok())
        .expect("a restarts line");
    assert_eq!(restarts, 5, "one restart per injected failure:\n{stdout}");
}

/// A copy of `from` (an output directory) in `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Rewrites the first committed file of `output/sub` that `edit` changes.
fn corrupt(output: &Path, sub: &str, edit: impl Fn(Vec<String>) -> Option<Vec<String>>) {
    for f in committed_files(output.join(sub)).unwrap() {
        let lines: Vec<String> = std::fs::read_to_string(&f.path)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        if let Some(changed) = edit(lines) {
            std::fs::write(&f.path, changed.join("\n") + "\n").unwrap();
            return;
        }
    }
    panic!("nothing to corrupt in {sub}");
}

#[test]
fn the_verifier_detects_a_dropped_a_duplicated_and_an_altered_committed_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (output, checkpoints) = (tmp.path().join("output"), tmp.path().join("checkpoints"));
    let out = Command::new(example())
        .args(["--drill", "0", "--no-verify", "--events", "20000", "--memory"])
        .arg("--output-dir")
        .arg(&output)
        .arg("--checkpoint-dir")
        .arg(&checkpoints)
        .output()
        .unwrap();
    assert!(out.status.success(), "the job failed: {:?}", text(&out));

    let clean = audit::verify(&output).unwrap();
    assert!(clean.passed(), "the uncorrupted output must pass:\n{clean}");
    assert!(
        clean.decisions.matched > 10_000 && clean.refunds.matched > 100,
        "{clean}"
    );

    // 1. One committed decision dropped: a payment lost.
    let dropped = tmp.path().join("dropped");
    copy_dir(&output, &dropped);
    corrupt(&dropped, domain::DECISIONS_DIR, |mut lines| {
        lines.remove(lines.len() / 2);
        Some(lines)
    });
    let a = audit::verify(&dropped).unwrap();
    println!("{a}");
    assert!(!a.passed());
    assert_eq!(
        (a.decisions.missing, a.events_lost(), a.events_duplicated()),
        (1, 1, 0),
        "{a}"
    );

    // 2. One committed refund result duplicated: a refund applied twice.
    let duplicated = tmp.path().join("duplicated");
    copy_dir(&output, &duplicated);
    corrupt(&duplicated, domain::REFUNDS_DIR, |mut lines| {
        let line = lines.first()?.clone();
        lines.push(line);
        Some(lines)
    });
    let a = audit::verify(&duplicated).unwrap();
    println!("{a}");
    assert!(!a.passed());
    assert_eq!(
        (a.refunds.duplicated, a.events_lost(), a.events_duplicated()),
        (1, 0, 1),
        "{a}"
    );

    // 3. One approved payment's amount altered: a wrong decision, and money no longer adds up.
    let altered = tmp.path().join("altered");
    copy_dir(&output, &altered);
    corrupt(&altered, domain::DECISIONS_DIR, |mut lines| {
        let i = lines.iter().position(|l| l.contains("\"Approved\""))?;
        let mut d: domain::Decision = serde_json::from_str(&lines[i]).unwrap();
        d.amount_cents += 100;
        lines[i] = serde_json::to_string(&d).unwrap();
        Some(lines)
    });
    let a = audit::verify(&altered).unwrap();
    println!("{a}");
    assert!(!a.passed());
    assert_eq!(
        (a.decisions.mismatched, a.decisions.missing, a.decisions.duplicated),
        (1, 0, 0),
        "{a}"
    );
    assert!(
        !a.money.balanced(),
        "an altered amount must unbalance the money check:\n{a}"
    );
    assert_eq!(
        (a.money.merchants_unbalanced, a.money.windows_unbalanced),
        (1, 1),
        "{a}"
    );

    // The CLI's --verify-only mode agrees: exit 0 on the clean output, non-zero otherwise.
    let verify_only = |dir: &Path| {
        Command::new(example())
            .arg("--verify-only")
            .arg("--output-dir")
            .arg(dir)
            .output()
            .unwrap()
    };
    let ok = verify_only(&output);
    assert!(ok.status.success(), "{:?}", text(&ok));
    for dir in [&dropped, &duplicated, &altered] {
        let bad = verify_only(dir);
        let (stdout, stderr) = text(&bad);
        assert!(
            !bad.status.success(),
            "--verify-only passed a corrupted output:\n{stdout}"
        );
        assert!(stdout.contains("verification FAILED"), "{stdout}");
        assert!(stderr.contains("verification failed"), "{stderr}");
    }
}

/// Deduplication is the job's first stateful step, so an input event the engine delivered twice
/// (a source rewinding too far, an exchange repeating a batch) would be dropped there and leave
/// every other output unchanged. The job commits one record per dropped retry, and the audit
/// compares them with the model's: the repeated event shows up as an extra dropped retry.
#[test]
fn an_input_event_processed_twice_shows_up_as_an_extra_dropped_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let (output, checkpoints) = (tmp.path().join("output"), tmp.path().join("checkpoints"));
    let out = Command::new(example())
        .args(["--drill", "0", "--no-verify", "--events", "20000", "--memory"])
        .arg("--output-dir")
        .arg(&output)
        .arg("--checkpoint-dir")
        .arg(&checkpoints)
        .output()
        .unwrap();
    assert!(out.status.success(), "the job failed: {:?}", text(&out));
    let clean = audit::verify(&output).unwrap();
    assert!(clean.passed(), "the uncorrupted output must pass:\n{clean}");
    let retries = (clean.payment_retries + clean.refund_retries) as usize;
    assert!(retries > 100, "the workload must have client retries:\n{clean}");
    assert_eq!(
        (clean.retries.expected, clean.retries.matched),
        (retries, retries),
        "every dropped retry is committed once:\n{clean}"
    );

    // A retry processed twice: dropped again, as the next retry of its key.
    let twice = tmp.path().join("twice");
    copy_dir(&output, &twice);
    let committed: Vec<domain::DroppedRetry> =
        weir::engine::sink::read_committed_lines(output.join(domain::RETRIES_DIR))
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    corrupt(&twice, domain::RETRIES_DIR, |mut lines| {
        let mut r: domain::DroppedRetry = serde_json::from_str(lines.first()?).unwrap();
        let last = committed
            .iter()
            .filter(|o| (o.customer, &o.idempotency_key) == (r.customer, &r.idempotency_key))
            .map(|o| o.retry)
            .max()?;
        r.retry = last + 1;
        lines.push(serde_json::to_string(&r).unwrap());
        Some(lines)
    });
    let a = audit::verify(&twice).unwrap();
    println!("{a}");
    assert!(!a.passed(), "an extra dropped retry must fail the audit:\n{a}");
    assert_eq!(
        (a.retries.unexpected, a.events_lost(), a.events_duplicated()),
        (1, 0, 1),
        "{a}"
    );
    // Every other output is untouched: only the new check sees it.
    for c in [&a.decisions, &a.refunds, &a.alerts, &a.settlements] {
        assert!(c.clean(), "{a}");
    }

    // A dropped retry lost.
    let lost = tmp.path().join("lost");
    copy_dir(&output, &lost);
    corrupt(&lost, domain::RETRIES_DIR, |mut lines| {
        lines.pop()?;
        Some(lines)
    });
    let a = audit::verify(&lost).unwrap();
    assert!(!a.passed());
    assert_eq!(
        (a.retries.missing, a.events_lost(), a.events_duplicated()),
        (1, 1, 0),
        "{a}"
    );
}

#[test]
fn help_documents_every_flag_and_bad_values_are_clear_errors() {
    let help = run(&["--help"]);
    let (stdout, _) = text(&help);
    assert!(help.status.success());
    for flag in [
        "--events",
        "--seed",
        "--parallelism",
        "--rate",
        "--rules-rate",
        "--checkpoint-ms",
        "--checkpoint-dir",
        "--output-dir",
        "--memory",
        "--drill",
        "--workers",
        "--verify",
        "--no-verify",
        "--verify-only",
        "--help",
        "--version",
    ] {
        assert!(stdout.contains(flag), "--help does not document {flag}:\n{stdout}");
    }
    let words: Vec<&str> = stdout.split(|c: char| c.is_whitespace() || c == ',').collect();
    assert!(
        !words.contains(&"--worker") && !words.contains(&"--inject"),
        "internal flags are hidden:\n{stdout}"
    );

    for (args, mentions) in [
        (&["--events", "0"][..], "--events"),
        (&["--events", "-5"][..], "-5"),
        (&["--parallelism", "0"][..], "--parallelism"),
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "-100"][..], "-100"),
        (&["--rate", "fast"][..], "--rate"),
        (&["--rules-rate", "0"][..], "--rules-rate"),
        (&["--checkpoint-ms", "0"][..], "--checkpoint-ms"),
        (&["--drill", "-1"][..], "-1"),
        (&["--drill", "many"][..], "--drill"),
        (&["--workers", "0"][..], "--workers"),
        (&["--workers", "3", "--kafka", "localhost:9092"][..], "--kafka"),
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--checkpoint-dir", "/tmp/x"][..], "--output-dir"),
        (&["--verify-only"][..], "--output-dir"),
    ] {
        let o = run(args);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} must be a usage error:\n{stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(mentions),
            "{args:?}: the error must mention {mentions}:\n{stderr}"
        );
    }
}

/// The drill against Kafka: requests loaded into a topic, read by the Kafka source, every
/// output committed through the exactly-once Kafka sink and audited from the topics
/// (tansu on loopback, or the cluster in `WEIR_KAFKA_BROKERS`).
#[test]
fn a_drill_against_kafka_passes_the_audit_read_back_from_the_topics() {
    let broker = weir::connectors::kafka::testing::TestBroker::start().expect("a Kafka-protocol broker");
    let prefix = broker.unique_topic("payments-test");
    let out = run(&[
        "--kafka",
        broker.brokers(),
        "--kafka-topics",
        &prefix,
        "--drill",
        "5",
        "--events",
        "200000",
        "--seed",
        "9",
        "--checkpoint-ms",
        "100",
    ]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "drill failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(&format!("{prefix}.requests")), "{stdout}");
    assert!(stdout.contains("read back from Kafka with read_committed"), "{stdout}");
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    assert!(
        stdout.contains("RPO: 0 events lost, 0 events duplicated (from the audit"),
        "{stdout}"
    );
    let injected = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("failures injected: "))
        .and_then(|r| r.split(' ').next()?.parse::<u32>().ok())
        .expect("a failures line");
    let restarts = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("restarts: "))
        .and_then(|r| r.split(' ').next()?.parse::<u32>().ok())
        .expect("a restarts line");
    assert!(
        injected >= 3,
        "at least three failures must hit the running job:\n{stdout}"
    );
    assert_eq!(restarts, injected, "one restart per injected failure:\n{stdout}");
}

#[test]
fn bad_kafka_flags_are_clear_errors() {
    for (args, needle) in [
        (vec!["--kafka", "nohostport"], "not a broker list"),
        (vec!["--kafka", ""], "not a broker list"),
        (
            vec!["--kafka", "h:1", "--kafka-topics", "bad/name"],
            "cannot start Kafka topic names",
        ),
        (vec!["--kafka-topics", "p"], "--kafka"),
    ] {
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} must fail:\n{stdout}");
        assert!(stderr.contains(needle), "{args:?}: expected {needle:?} in:\n{stderr}");
    }
}

/// The example against an S3-compatible server on loopback, with these environment variables.
fn run_on_s3(server: &weir::object_storage::testing::S3Server, args: &[&str]) -> Output {
    Command::new(example())
        .args(args)
        .envs(server.env())
        .output()
        .expect("running the payments example")
}

#[test]
fn a_cluster_drill_with_checkpoints_on_s3_passes_the_audit() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    let bucket = server.create_bucket("payments").unwrap();
    let storage = format!("s3://{bucket}/payments");
    let out = run_on_s3(
        &server,
        &[
            "--workers",
            "3",
            "--drill",
            "2",
            "--events",
            "150000",
            "--checkpoint-storage",
            &storage,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("checkpoints: {storage}")), "{stdout}");
    assert!(stdout.contains("RPO: 0 events lost, 0 events duplicated"), "{stdout}");
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    // The checkpoints are in the bucket, readable with the CLI.
    let cli = Command::new(crate::common::weir_bin())
        .args(["checkpoints", "list", &storage])
        .envs(server.env())
        .output()
        .unwrap();
    let (listing, err) = text(&cli);
    assert!(cli.status.success(), "{listing}\n{err}");
    assert!(listing.contains("final"), "the final checkpoint is listed: {listing}");
}

#[test]
fn the_cross_site_drill_recovers_at_site_b_with_zero_events_lost_or_duplicated() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    let (a, b) = (
        server.create_bucket("site-a").unwrap(),
        server.create_bucket("site-b").unwrap(),
    );
    let (site_a, site_b) = (format!("s3://{a}/payments"), format!("s3://{b}/payments"));
    let out = run_on_s3(
        &server,
        &[
            "--dr-drill",
            "--workers",
            "3",
            "--events",
            "150000",
            "--checkpoint-storage",
            &site_a,
            "--replica-storage",
            &site_b,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("disaster-recovery drill (cross-site)"), "{stdout}");
    assert!(stdout.contains("lost 0, duplicated 0"), "{stdout}");
    assert!(stdout.contains("RPO (recovery points):"), "{stdout}");
    assert!(stdout.contains("RTO:"), "{stdout}");
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    // Site A is gone; site B holds the job's checkpoints.
    assert!(server.storage(&a, "payments").unwrap().list().unwrap().is_empty());
    assert!(!server.storage(&b, "payments").unwrap().list().unwrap().is_empty());
}

#[test]
fn bad_checkpoint_storage_is_a_clear_error_before_anything_runs() {
    let server = weir::object_storage::testing::S3Server::start().unwrap();
    for (storage, says) in [
        ("s3://no-such-bucket/payments", "the bucket does not exist"),
        ("ftp://host/dir", "unknown scheme \"ftp\""),
        ("s3:///payments", "names no bucket"),
    ] {
        let out = run_on_s3(&server, &["--events", "1000", "--checkpoint-storage", storage]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{storage}: {stdout}");
        assert!(stderr.contains(says), "{storage}: {stderr}");
        assert!(
            !stdout.contains("payments:"),
            "{storage}: the job must not start: {stdout}"
        );
    }
}

#[test]
fn stopped_with_a_savepoint_and_resumed_from_a_copy_the_run_passes_its_audit() {
    // Savepoints come without injected failures.
    let d = tempfile::tempdir().unwrap();
    let sps = d.path().join("sps");
    let (_, err) = text(&run(&[
        "--savepoint-dir",
        sps.to_str().unwrap(),
        "--stop-with-savepoint-after-ms",
        "100",
    ]));
    assert!(err.contains("--drill 0"), "{err}");
    stop_move_and_resume(&[]);
}

/// The same on a master and three worker processes: the launcher forwards the stop to the
/// master process, and every worker of the resumed run fetches its state from the savepoint.
#[test]
fn on_workers_stopped_with_a_savepoint_and_resumed_from_a_copy_the_run_passes_its_audit() {
    stop_move_and_resume(&["--workers", "3"]);
}

/// Stops a run with a savepoint, moves the savepoint (the original and the run's checkpoints
/// deleted), finishes the run from the copy with `extra` flags on both runs: the audit passes.
fn stop_move_and_resume(extra: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    let with_extra = |args: &[&str]| -> Vec<String> { args.iter().chain(extra).map(|a| a.to_string()).collect() };
    let out = run(&with_extra(&[
        "--drill",
        "0",
        "--events",
        "60000",
        "--rate",
        "20000",
        "--checkpoint-dir",
        &p("chk-a"),
        "--output-dir",
        &p("out"),
        "--savepoint-dir",
        &p("sps"),
        "--stop-with-savepoint-after-ms",
        "1000",
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the job stopped with savepoint"), "{stdout}");
    let taken: Vec<PathBuf> = std::fs::read_dir(d.path().join("sps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    // Moved, with the original and the job's checkpoints gone.
    copy_dir(&taken[0], &d.path().join("moved"));
    std::fs::remove_dir_all(d.path().join("sps")).unwrap();
    std::fs::remove_dir_all(d.path().join("chk-a")).unwrap();
    let out = run(&with_extra(&[
        "--drill",
        "0",
        "--events",
        "60000",
        "--checkpoint-dir",
        &p("chk-b"),
        "--output-dir",
        &p("out"),
        "--from-savepoint",
        &p("moved"),
    ]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verification PASSED"), "{stdout}");
    assert!(stdout.contains("RPO: 0 events lost, 0 events duplicated"), "{stdout}");
}

/// The rescale drill: the job runs at parallelism 3, then 1, then 2, each segment stopping
/// gracefully at a final checkpoint the next restores at its own parallelism; the audit of the
/// committed output finds every event exactly once. On one process and on a cluster.
#[test]
fn the_rescale_drill_passes_its_audit_in_one_process_and_on_workers() {
    for extra in [&[][..], &["--workers", "3"][..]] {
        // No rate limit: at parallelism 3 the readers of 8 splits run at different speeds, so
        // the splits dealt out at the rescale are far apart (their readers must realign them).
        let mut args = vec!["--rescale", "3,1,2", "--events", "150000"];
        args.extend_from_slice(extra);
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{extra:?}: {stdout}\n{stderr}");
        assert!(stdout.contains("rescale drill"), "{stdout}");
        assert_eq!(
            stdout.matches("chk ").count(),
            2,
            "two segments stopped at a checkpoint: {stdout}"
        );
        assert!(stdout.contains("verification PASSED"), "{stdout}");
        assert!(stdout.contains("RPO: 0 events lost, 0 events duplicated"), "{stdout}");
    }
    let (_, err) = text(&run(&["--rescale", "2"]));
    assert!(err.contains("two parallelisms"), "{err}");
}

/// `--config FILE` with `WEIR_*` variables over it and flags over both: the file's
/// parallelism and interval give way to a flag and a variable, the keys the example has no
/// flag for reach the job (a max parallelism below the parallelism is refused by the engine,
/// in the drill's child process too), and a misspelt key or variable is a usage error naming it.
#[test]
fn a_configuration_file_sets_the_job_under_variables_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.toml");
    std::fs::write(
        &file,
        "[job]\nparallelism = 3\n[checkpoint]\ninterval = \"400ms\"\nretained = 4\n\
         [restart]\nstrategy = \"fixed-delay\"\nmax_attempts = 50\ndelay = \"20ms\"\n",
    )
    .unwrap();
    let with_env = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(example());
        c.args(args).arg("--config").arg(&file);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("running the payments example")
    };

    // The file alone.
    let o = with_env(&["--drill", "0", "--events", "20000"], &[]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("parallelism 3,") && stdout.contains("checkpoint every 400 ms"),
        "{stdout}"
    );
    assert!(stdout.contains("verification PASSED"), "{stdout}");

    // A variable over the file, a flag over both; a drill with failures applies the file's
    // restart strategy in its child processes and still passes its audit.
    let o = with_env(
        &["--drill", "2", "--events", "20000", "--parallelism", "2"],
        &[("WEIR_CHECKPOINT_INTERVAL", "300ms")],
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("parallelism 2,") && stdout.contains("checkpoint every 300 ms"),
        "{stdout}"
    );
    assert!(stdout.contains("verification PASSED"), "{stdout}");

    // A key without a flag reaches the job: the engine refuses parallelism 3 over 2 key groups.
    let o = with_env(
        &["--drill", "0", "--events", "1000"],
        &[("WEIR_JOB_MAX_PARALLELISM", "2")],
    );
    let (stdout, stderr) = text(&o);
    assert!(!o.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("exceeds max parallelism 2"), "{stderr}");

    // Misspelt: a key in the file, a variable.
    std::fs::write(dir.path().join("typo.toml"), "[checkpoint]\nintervall = \"1s\"\n").unwrap();
    let o = run(&[
        "--drill",
        "0",
        "--config",
        dir.path().join("typo.toml").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("checkpoint.intervall") && stderr.contains("typo.toml"),
        "{stderr}"
    );
    let o = with_env(&["--drill", "0"], &[("WEIR_CHECKPOINT_INTERVALL", "1s")]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WEIR_CHECKPOINT_INTERVALL"), "{stderr}");
}
