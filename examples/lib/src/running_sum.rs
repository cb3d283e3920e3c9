//! The keyed running sum, the workload the throughput and cluster benchmarks (and the Flink
//! peer in `shared/peer/flink`) measure: per key, the sum of the values so far in `ValueState`.

use weir_engine::prelude::*;

/// Emits `(key, sum of the key's values so far)` for every `(key, value)`.
#[derive(Clone, Debug)]
pub struct RunningSum;

impl KeyedProcess<u64, (u64, u64)> for RunningSum {
    type Out = (u64, u64);
    fn process(&mut self, (k, v): (u64, u64), ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<()> {
        let mut sum = ctx.value_state::<u64>("sum");
        let s = sum.get()?.unwrap_or(0) + v;
        sum.set(&s)?;
        ctx.emit((k, s));
        Ok(())
    }
}
