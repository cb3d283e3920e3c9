//! The recovery-time benchmark as a bench: `cargo bench --bench recovery -- --quick` (a few
//! minutes), `cargo bench --bench recovery` (100 MB and 1 GB of RocksDB state, 1 s
//! checkpoints), `-- --grid` (the whole parameter grid). Same harness and flags as
//! `cargo run --release --example recovery`; see `examples/recovery.rs`.

#[path = "../examples/recovery/analysis.rs"]
mod analysis;
#[path = "../examples/recovery/audit.rs"]
mod audit;
#[path = "../examples/recovery/cli.rs"]
mod cli;
#[path = "../examples/recovery/plot.rs"]
mod plot;
#[path = "../examples/recovery/report.rs"]
mod report;
#[path = "../examples/recovery/run.rs"]
mod run;
#[path = "../examples/recovery/worker.rs"]
mod worker;
#[path = "../examples/recovery/workload.rs"]
mod workload;

fn main() -> anyhow::Result<()> {
    cli::main()
}
