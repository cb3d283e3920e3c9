//! The `weir` binary against the checkpoints of a real (small) checkpointed job.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use weir::prelude::*;

/// Runs the `weir` binary with `args` (and no `WEIR_JOB` from the test's environment).
pub(crate) fn weir(args: &[&str]) -> Output {
    Command::new(crate::common::weir_bin())
        .args(args)
        .env_remove("WEIR_JOB")
        .output()
        .expect("running the weir binary")
}

/// The standard output of a `weir` run that must have succeeded.
pub(crate) fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "weir failed with {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Runs a keyed job checkpointing into `dir` every 50 ms; returns the ids it completed.
fn run_job(dir: &Path) -> Vec<CheckpointId> {
    let p = Pipeline::new("cli-probe")
        .parallelism(2)
        .checkpoint_storage(dir)
        .checkpoint_interval(Duration::from_millis(50));
    p.source(
        "numbers",
        GeneratorSource::new(|i| (i % 5, i))
            .bounded(6_000)
            .splits(3)
            .rate_per_second(20_000.0),
    )
    .key_by("by-key", |(k, _): &(u64, u64)| *k)
    .reduce("sum", |(k, a), (_, b)| (k, a + b))
    .sink("out", CollectSink::new());
    let report = p.run().expect("job runs");
    report.checkpoints.iter().map(|c| c.id).collect()
}

#[test]
fn list_and_show_completed_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chk");
    let completed = run_job(&dir);
    assert!(completed.len() >= 2, "the job completed {completed:?}");
    // Default retention keeps the 3 newest checkpoints.
    let retained: Vec<CheckpointId> = completed.iter().rev().take(3).rev().copied().collect();
    let last = *retained.last().unwrap();
    let dir_s = dir.to_str().unwrap();

    let table = stdout(&weir(&["checkpoints", "list", dir_s]));
    println!("{table}");
    let header = table.lines().next().unwrap();
    for col in [
        "ID", "COMPLETE", "KIND", "CREATED", "STATE", "UPLOADED", "SYNC ms", "ASYNC ms", "ALIGN ms", "RECORDS",
    ] {
        assert!(header.contains(col), "missing column {col}: {header}");
    }
    for id in &retained {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id.to_string().as_str()))
            .unwrap_or_else(|| panic!("checkpoint {id} not listed:\n{table}"));
        assert!(row.contains("yes"), "{row}");
        let kind = if *id == last { "final" } else { "checkpoint" };
        assert!(row.contains(kind), "{row}");
    }
    let last_row = table.lines().last().unwrap();
    assert!(
        last_row.trim_end().ends_with("6000"),
        "final checkpoint has read every record: {last_row}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&weir(&["checkpoints", "list", dir_s, "--json"]))).unwrap();
    let listed: Vec<(CheckpointId, bool)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                CheckpointId::new(c["id"].as_u64().unwrap()),
                c["complete"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, retained.iter().map(|id| (*id, true)).collect::<Vec<_>>());
    let final_entry = json.as_array().unwrap().last().unwrap();
    assert_eq!(final_entry["kind"], "final");
    assert_eq!(final_entry["stats"]["source_records"], 6000);
    assert!(final_entry["stats"]["state_bytes"].as_u64().unwrap() > 0);

    let shown = stdout(&weir(&["checkpoints", "show", dir_s, &last.to_string()]));
    println!("{shown}");
    for needle in [
        format!("checkpoint {last} of job \"cli-probe\": final"),
        "sum (parallelism 2".to_string(),
        "out (parallelism 2".to_string(),
        "key groups 0..=63".to_string(),
        "key groups 64..=127".to_string(),
        "operator-state".to_string(),
        "crc32c".to_string(),
        "numbers (3 splits)".to_string(),
        "source records   6000".to_string(),
    ] {
        assert!(shown.contains(&needle), "`show` lacks {needle:?}:\n{shown}");
    }

    let json: serde_json::Value = serde_json::from_str(&stdout(&weir(&[
        "--json",
        "checkpoints",
        "show",
        dir_s,
        &last.to_string(),
    ])))
    .unwrap();
    assert_eq!(json["id"], last.get());
    assert_eq!(json["kind"], "final");
    let ops: Vec<&str> = json["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"sum") && ops.contains(&"out"), "{ops:?}");
    let offsets: u64 = json["sources"][0]["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .sum();
    assert_eq!(offsets, 6000);
    let file = &json["operators"][0]["subtasks"][0]["operator_state"];
    assert!(file["size"].as_u64().unwrap() > 0 && file["crc32c"].is_u64(), "{file}");
}

#[test]
fn missing_directory_or_checkpoint_exits_with_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let missing_s = missing.to_str().unwrap();
    for args in [
        vec!["checkpoints", "list", missing_s],
        vec!["checkpoints", "show", missing_s, "1"],
    ] {
        let o = weir(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("does not exist") && err.contains(missing_s), "{err}");
    }

    let dir = tmp.path().join("chk");
    let completed = run_job(&dir);
    let o = weir(&["checkpoints", "show", dir.to_str().unwrap(), "999999"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("checkpoint 999999 not found"), "{err}");
    assert!(
        err.contains(&completed.last().unwrap().to_string()),
        "lists the checkpoints there: {err}"
    );

    // An empty directory has no checkpoints (not an error).
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = stdout(&weir(&["checkpoints", "list", empty.to_str().unwrap()]));
    assert!(out.starts_with("no checkpoints"), "{out}");
    assert_eq!(
        stdout(&weir(&["checkpoints", "list", empty.to_str().unwrap(), "--json"])).trim(),
        "[]"
    );

    // A usage error is clap's exit code 2 as well.
    assert_eq!(weir(&["checkpoints", "show"]).status.code(), Some(2));
}

#[test]
fn incomplete_checkpoints_are_listed_and_not_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chk");
    let completed = run_job(&dir);
    // An incomplete checkpoint: files without metadata (as a crash during upload leaves).
    let next = completed.last().unwrap().next();
    std::fs::create_dir_all(dir.join(format!("chk-{next}/sum/0"))).unwrap();
    let dir_s = dir.to_str().unwrap();
    let table = stdout(&weir(&["checkpoints", "list", dir_s]));
    let row = table.lines().last().unwrap();
    assert!(
        row.split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&[next.to_string().as_str(), "no"]),
        "{table}"
    );
    let o = weir(&["checkpoints", "show", dir_s, &next.to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not complete"));
}
