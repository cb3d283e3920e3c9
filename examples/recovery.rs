//! The recovery-time benchmark: how long a stateful Weir job takes to recover from a failure,
//! phase by phase, and proof that it lost and duplicated nothing.
//!
//! A keyed running count with ~1 KiB of incompressible state per key (10 MB to 1 GB and more)
//! runs at a steady input rate in a worker process. After a baseline, the supervisor injects a
//! failure halfway between two checkpoints (a panicking subtask, or `kill -9` of the process),
//! follows the recovery through detection, restore, replay and back-to-normal, then stops the
//! input, lets the job commit everything, and audits the committed output against a
//! sequential model (RPO: events lost, events committed twice).
//!
//! ```text
//! cargo run --release --example recovery -- --quick          # a few minutes
//! cargo run --release --example recovery                     # 100 MB and 1 GB, 1 s, RocksDB
//! cargo run --release --example recovery -- --grid           # the whole grid (hours)
//! cargo run --release --example recovery -- --state-mb 100 --failure kill --checkpoint-ms 500,1000
//! cargo bench --bench recovery -- --quick                    # the same harness as a bench
//! ```
//!
//! Output: a phase table, `OUT/runs.csv`, `OUT/runs.json` (with each run's throughput and
//! latency series) and `OUT/<run>.png` (throughput and latency around the failure, phases
//! shaded); OUT defaults to `target/recovery`.
//!
//! The harness is `weir_examples::recovery` (`examples/lib/src/recovery/`), shared with
//! `benches/recovery.rs`: `workload.rs` (the job and its input schedule), `worker.rs` (the
//! worker process), `run.rs` (the supervisor: one run), `analysis.rs` (phases), `audit.rs`
//! (RPO), `report.rs` (table, CSV, JSON), `plot.rs` (PNG), `cli.rs` (flags).

fn main() -> anyhow::Result<()> {
    // Logs on stderr: WEIR_LOG=info (or any filter), WEIR_LOG_FORMAT=json. The benchmark
    // injects failures on purpose and measures them itself, so only errors show by default.
    weir_examples::logging::init("error")?;
    weir_examples::recovery::cli::main()
}
