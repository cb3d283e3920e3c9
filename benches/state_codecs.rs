//! Cost of the state codecs: the keyed running sum over an account struct kept in value
//! state opened by name (unversioned bincode, as before descriptors), through a positional
//! descriptor (bincode with a format header) and through a self-describing descriptor (CBOR
//! with field names, the descriptors' default), on the memory backend at parallelism 1.
//!
//! `cargo bench --bench state_codecs`; criterion reports time per run and elements/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use weir::prelude::*;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Account {
    count: u64,
    sum: i64,
    last_id: u64,
}

const POSITIONAL: ValueStateDescriptor<Account> = ValueStateDescriptor::new("account").positional();
const SELF_DESCRIBING: ValueStateDescriptor<Account> = ValueStateDescriptor::new("account");

#[derive(Clone, Copy)]
enum Codec {
    ByName,
    Positional,
    SelfDescribing,
}

#[derive(Clone)]
struct Sum(Codec);

impl KeyedProcess<u64, (u64, u64)> for Sum {
    type Out = i64;
    fn process(&mut self, (_, i): (u64, u64), ctx: &mut KeyedContext<'_, u64, i64>) -> Result<()> {
        let update = |a: &mut Account| {
            a.count += 1;
            a.sum += i as i64;
            a.last_id = i;
        };
        let sum = match self.0 {
            Codec::ByName => {
                let mut s = ctx.value_state::<Account>("account");
                let mut a = s.get()?.unwrap_or_default();
                update(&mut a);
                s.set(&a)?;
                a.sum
            }
            Codec::Positional | Codec::SelfDescribing => {
                let d = if matches!(self.0, Codec::Positional) {
                    &POSITIONAL
                } else {
                    &SELF_DESCRIBING
                };
                let mut s = ctx.state(d);
                let mut a = s.get()?.unwrap_or_default();
                update(&mut a);
                s.set(&a)?;
                a.sum
            }
        };
        ctx.emit(sum);
        Ok(())
    }
}

fn run(events: u64, codec: Codec) {
    let p = Pipeline::new("state-codecs")
        .parallelism(1)
        .state_backend(MemoryBackend::new());
    p.source("gen", GeneratorSource::new(|i| (i % 10_000, i)).bounded(events))
        .key_by("by-key", |(k, _): &(u64, u64)| *k)
        .process("sum", Sum(codec))
        .sink("discard", DiscardSink::new());
    p.run().expect("state-codecs pipeline");
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("state-codecs");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let n = 300_000;
    g.throughput(Throughput::Elements(n));
    g.bench_function("by-name-bincode", |b| b.iter(|| run(n, Codec::ByName)));
    g.bench_function("descriptor-positional", |b| b.iter(|| run(n, Codec::Positional)));
    g.bench_function("descriptor-self-describing", |b| {
        b.iter(|| run(n, Codec::SelfDescribing))
    });
    g.finish();
}

criterion_group!(state_codecs, benches);
criterion_main!(state_codecs);
