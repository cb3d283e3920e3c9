//! Keeps the latest value of every key: the state-heavy workload of the cluster and object
//! storage benchmarks (state size = keys × value size).

use weir_engine::prelude::*;

/// Stores the latest `Vec<u8>` of every key in `ValueState` and emits the key.
#[derive(Clone, Debug)]
pub struct LatestValue;

impl KeyedProcess<u64, (u64, Vec<u8>)> for LatestValue {
    type Out = u64;
    fn process(&mut self, (k, v): (u64, Vec<u8>), ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let mut latest = ctx.value_state::<Vec<u8>>("latest");
        latest.set(&v)?;
        ctx.emit(k);
        Ok(())
    }
}
