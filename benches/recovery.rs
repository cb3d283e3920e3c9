//! The recovery-time benchmark as a bench: `cargo bench --bench recovery -- --quick` (a few
//! minutes), `cargo bench --bench recovery` (100 MB and 1 GB of RocksDB state, 1 s
//! checkpoints), `-- --grid` (the whole parameter grid). Same harness and flags as
//! `cargo run --release --example recovery`; see `examples/recovery.rs`
//! and `weir_examples::recovery`.

fn main() -> anyhow::Result<()> {
    weir_examples::recovery::cli::main()
}
