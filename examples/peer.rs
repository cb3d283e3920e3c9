//! The Flink peer's workload on Weir: the keyed running sum of `shared/peer/flink`
//! (`PaymentSumJob.java`) with the same event formulas, scenarios and figures, printed as
//! `weir <key>=<value>` lines under the Java job's names.
//!
//! ```text
//! cargo run --release --example peer -- events=30000000 checkpointing=false       # nockpt
//! cargo run --release --example peer -- events=30000000                           # ckpt (1 s)
//! cargo run --release --example peer -- events=30000000 backend=memory            # hashmap
//! cargo run --release --example peer -- events=20000000 fail_at=6666666 verify=true   # recovery
//! cargo run --release --example peer -- events=30000000 keys=10000000 pad=100 \
//!     fail_at=5000000 stop_after_catchup_ms=10000                                 # recovery_large
//! ```
//!
//! `benches/peer/compare.sh` runs each scenario on both engines back to back and prints the
//! ratios. The harness is `weir_examples::peer` (`examples/lib/src/peer/`).

fn main() -> anyhow::Result<()> {
    // The injected failure is a panic on purpose: keep its message off the figures.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("injected failure"));
        if !injected {
            default_hook(info);
        }
    }));
    weir_examples::logging::init("error")?;
    let args = weir_examples::peer::args::Args::parse(std::env::args().skip(1))?;
    weir_examples::peer::run::run(&args)
}
