//! The peer workload's formulas and operators, bit-identical to `PaymentSumJob.java`.

use super::probe::Probe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weir_engine::prelude::*;
use weir_engine::wall_clock::now_ms;

/// Odd multiplier: `i -> (i * MIX) mod keys` visits every account once per `keys` events.
pub const MIX: i64 = 2_654_435_761;

/// A payment: sequence number, account, amount in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    /// The event index.
    pub seq: u64,
    /// The account (the key).
    pub account: u64,
    /// The amount, 1..=100 000.
    pub cents: u64,
}

/// The account of event `i` (Java: `Math.floorMod(i * MIX, keys)`).
pub fn account_of(i: u64, keys: u64) -> u64 {
    (i as i64).wrapping_mul(MIX).rem_euclid(keys as i64) as u64
}

/// The amount of event `i` (Java's `centsOf`: a signed 64-bit mix, then `floorMod`).
pub fn cents_of(i: u64) -> u64 {
    let mut h = (i as i64)
        .wrapping_add(0x632B_E59B_D9B4_E019)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64);
    h ^= ((h as u64) >> 31) as i64;
    1 + h.rem_euclid(100_000) as u64
}

/// Event `i`.
pub fn payment(i: u64, keys: u64) -> Payment {
    Payment {
        seq: i,
        account: account_of(i, keys),
        cents: cents_of(i),
    }
}

/// The event index of generator record `n` of a run of `events` in two splits: Weir's
/// generator interleaves its splits (split `k` reads `k, k + 2, ...`); Flink's gives each
/// split a contiguous half, which this mapping reproduces (split 0 reads `0, 1, ...`, split 1
/// reads `events/2, events/2 + 1, ...`), so that a failure at a given event index comes at the
/// same point of the run in both engines.
pub fn event_index(n: u64, events: u64, splits: u64) -> u64 {
    let per_split = events.div_ceil(splits);
    (n % splits) * per_split + n / splits
}

/// The fail-once map: fails the attempt (a panic, as a bug in user code would) the first time
/// it sees event `fail_at`; when it sees it again after the restart, the lost work is redone.
pub fn fail_once(probe: Arc<Probe>, fail_at: Option<u64>) -> impl Fn(Payment) -> Payment + Send + Sync + 'static {
    move |p: Payment| {
        if Some(p.seq) == fail_at {
            if !probe.failed.swap(true, Ordering::SeqCst) {
                probe
                    .fail_processed
                    .store(probe.processed.load(Ordering::Relaxed), Ordering::Relaxed);
                probe.fail_ms.store(now_ms(), Ordering::SeqCst);
                panic!("injected failure at event {}", p.seq);
            }
            Probe::mark_once(&probe.catchup_ms);
        }
        p
    }
}

/// The keyed running sum: `sum += cents` in value state, emits the new sum. With `pad > 0`
/// the state is `8-byte big-endian sum + pad bytes` of incompressible filler, as in the Java job.
#[derive(Debug)]
pub struct RunningSum {
    probe: Arc<Probe>,
    pad: usize,
    verify: bool,
    /// Whether this instance belongs to an attempt started after the injected failure.
    restarted: bool,
    seen_record: bool,
    unflushed: u64,
}

impl RunningSum {
    /// The prototype the engine clones for every subtask of every attempt.
    pub fn new(probe: Arc<Probe>, pad: usize, verify: bool) -> Self {
        RunningSum {
            probe,
            pad,
            verify,
            restarted: false,
            seen_record: false,
            unflushed: 0,
        }
    }
}

impl Clone for RunningSum {
    /// A fresh subtask instance: the engine clones the prototype when an attempt starts, so
    /// an instance cloned after the failure runs on restored state.
    fn clone(&self) -> Self {
        let mut fresh = RunningSum::new(self.probe.clone(), self.pad, self.verify);
        fresh.restarted = self.probe.failed.load(Ordering::SeqCst);
        fresh
    }
}

impl Drop for RunningSum {
    fn drop(&mut self) {
        if self.unflushed > 0 {
            self.probe.add_processed(self.unflushed);
        }
    }
}

/// The filler of a new padded state value (Java: xorshift from `account * golden + 1`).
fn padded(account: u64, pad: usize) -> Vec<u8> {
    let mut b = vec![0u8; 8 + pad];
    let mut x = (account as i64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64)
        .wrapping_add(1);
    for byte in b.iter_mut().skip(8) {
        x ^= x << 13;
        x ^= ((x as u64) >> 7) as i64;
        x ^= x << 17;
        *byte = x as u8;
    }
    b
}

impl KeyedProcess<u64, Payment> for RunningSum {
    type Out = u64;

    fn process(&mut self, p: Payment, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        if !self.seen_record {
            self.seen_record = true;
            Probe::mark_once(&self.probe.first_record_ms);
            if self.restarted {
                Probe::mark_once(&self.probe.restart_first_record_ms);
            }
        }
        let sum = if self.pad == 0 {
            let mut st = ctx.value_state::<u64>("sum");
            let cur = st.get()?;
            let sum = cur.unwrap_or(0) + p.cents;
            st.set(&sum)?;
            if cur.is_none() && self.verify {
                ctx.register_event_time_timer(MAX_WATERMARK)?;
            }
            sum
        } else {
            let mut st = ctx.value_state::<Vec<u8>>("account");
            let cur = st.get()?;
            let fresh = cur.is_none();
            let mut b = cur.unwrap_or_else(|| padded(p.account, self.pad));
            let sum = u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) + p.cents;
            b[..8].copy_from_slice(&sum.to_be_bytes());
            st.set(&b)?;
            if fresh && self.verify {
                ctx.register_event_time_timer(MAX_WATERMARK)?;
            }
            sum
        };
        ctx.emit(sum);
        self.unflushed += 1;
        if self.unflushed == 1024 {
            self.probe.add_processed(self.unflushed);
            self.unflushed = 0;
        }
        Ok(())
    }

    fn on_timer(&mut self, _timer: Timer, ctx: &mut KeyedContext<'_, u64, u64>) -> Result<()> {
        let account = *ctx.key();
        let sum = if self.pad == 0 {
            ctx.value_state::<u64>("sum").get()?.unwrap_or(0)
        } else {
            let b = ctx.value_state::<Vec<u8>>("account").get()?.unwrap_or_default();
            b.get(..8)
                .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
                .unwrap_or(0)
        };
        self.probe.final_keys.fetch_add(1, Ordering::Relaxed);
        self.probe.final_sum.fetch_add(sum, Ordering::Relaxed);
        self.probe
            .final_weighted
            .fetch_add((account + 1).wrapping_mul(sum), Ordering::Relaxed);
        Ok(())
    }
}

/// The expected `(keys, sum, weighted sum)` of a run of `events` over `keys` accounts,
/// recomputed from the formulas (independently of any engine).
pub fn expected(events: u64, keys: u64) -> (u64, u64, u64) {
    let (mut sum, mut weighted) = (0u64, 0u64);
    for i in 0..events {
        let c = cents_of(i);
        sum = sum.wrapping_add(c);
        weighted = weighted.wrapping_add((account_of(i, keys) + 1).wrapping_mul(c));
    }
    (keys.min(events), sum, weighted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_the_java_job() {
        // Java: Math.floorMod(i * 2654435761L, 100000L) and centsOf(i) for i = 0, 1, 12345.
        assert_eq!(account_of(0, 100_000), 0);
        assert_eq!(account_of(1, 100_000), 35_761);
        assert_eq!(account_of(12_345, 100_000), (12_345u64 * 2_654_435_761) % 100_000);
        // Printed by the Java formulas (`centsOf`, `accountOf`) on OpenJDK 17.
        let java = [
            (0u64, 48_201u64, 0u64),
            (1, 89_627, 35_761),
            (2, 14_365, 71_522),
            (999_999, 22_551, 64_239),
            (29_999_999, 88_565, 64_239),
            (123_456_789, 55_369, 31_429),
        ];
        for (i, cents, account) in java {
            assert_eq!((cents_of(i), account_of(i, 100_000)), (cents, account), "event {i}");
        }
    }

    #[test]
    fn event_indices_are_contiguous_halves() {
        let events = 10;
        let mut seen: Vec<u64> = (0..events).map(|n| event_index(n, events, 2)).collect();
        assert_eq!(&seen[..4], &[0, 5, 1, 6]);
        seen.sort();
        assert_eq!(seen, (0..events).collect::<Vec<_>>());
    }
}
