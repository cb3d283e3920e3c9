//! The test harness for two-input functions: a keyed broadcast function (keyed state, timers,
//! side outputs and the broadcast state), a broadcast function over a non-keyed stream and a
//! keyed co-process function, fed by hand through the operators a pipeline runs. Event time is
//! the minimum of both inputs'; snapshots restore after a "crash" exactly where they were taken,
//! and into another parallelism (every subtask gets subtask 0's broadcast state and its share
//! of the keyed state).

use std::collections::BTreeMap;
use weir::engine::state::key_group::subtask_for_key_group;
use weir::engine::state::key_group_for;
use weir::engine::testing::harness::{
    BroadcastHarness, HarnessBuilder, HarnessSnapshot, KeyedBroadcastHarness, KeyedCoProcessHarness,
};
use weir::prelude::*;

/// The limit before any rule takes effect.
const DEFAULT_LIMIT: i64 = 500;
const FLAGGED: OutputTag<(u64, i64)> = OutputTag::new("flagged");
/// Per account: amounts by event time, waiting for the watermark (sorted map state).
const PENDING: SortedMapStateDescriptor<i64, i64> = SortedMapStateDescriptor::new("pending");

/// A rule: from event time `.0` on, amounts above `.1` are flagged.
type Rule = (i64, i64);

/// Decides each account's amounts when the step's watermark passes their time, with the limit
/// in force at that time (broadcast state: effective time → limit); counts decisions per
/// account and sends flagged amounts to `FLAGGED`. Emits `(account, amount, count)`.
#[derive(Clone)]
struct Threshold;

impl KeyedBroadcastProcess<u64, i64, Rule> for Threshold {
    type Out = (u64, i64, u64);
    type StateKey = i64;
    type StateValue = i64;

    fn process(
        &mut self,
        amount: i64,
        _: &BroadcastState<i64, i64>,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<()> {
        let ts = ctx
            .timestamp()
            .ok_or_else(|| Error::data("amount without event time"))?;
        ctx.state(&PENDING).put(&ts, &amount)?;
        ctx.register_event_time_timer(ts)
    }

    fn process_broadcast(
        &mut self,
        (from, limit): Rule,
        rules: &mut BroadcastState<i64, i64>,
        _: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()> {
        rules.insert(from, limit);
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: Timer,
        rules: &BroadcastState<i64, i64>,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<()> {
        let account = *ctx.key();
        let due = ctx.state(&PENDING).range(..=timer.time)?;
        ctx.state(&PENDING).remove_range(..=timer.time)?;
        for (ts, amount) in due {
            let mut count = ctx.value_state::<u64>("count");
            let n = count.get()?.unwrap_or(0) + 1;
            count.set(&n)?;
            let limit = rules.range(..=ts).next_back().map_or(DEFAULT_LIMIT, |(_, l)| *l);
            if amount > limit {
                ctx.output(&FLAGGED, (account, amount))?;
            }
            ctx.emit((account, amount, n));
        }
        Ok(())
    }

    fn states(&self) -> Vec<StateDeclaration> {
        vec![PENDING.declare()]
    }
}

#[test]
fn a_keyed_broadcast_function_decides_at_the_combined_watermark_with_the_rule_in_force() {
    let mut h = HarnessBuilder::new()
        .step("threshold")
        .keyed_broadcast(Threshold)
        .unwrap();
    // A rule change published ahead of time: 100 from t = 1000 on.
    h.process_broadcast_element((1_000, 100), 0).unwrap();
    h.process_element(&1, 300, 900).unwrap();
    h.process_element(&1, 300, 1_100).unwrap();
    h.process_element(&2, 50, 1_200).unwrap();
    assert_eq!(h.broadcast_state().iter().collect::<Vec<_>>(), vec![(&1_000, &100)]);
    assert_eq!(
        h.state(&1, &PENDING, |mut s| s.entries()).unwrap(),
        vec![(900, 300), (1_100, 300)]
    );
    assert_eq!(h.num_timers().unwrap(), 3);

    // The keyed input's watermark alone does not move the step's event time.
    h.process_main_watermark(2_000).unwrap();
    assert!(h.output().is_empty());
    assert_eq!(h.current_watermark(), MIN_WATERMARK);
    h.process_broadcast_watermark(1_150).unwrap();
    assert_eq!(h.current_watermark(), 1_150);
    assert_eq!(h.output_values(), vec![(1, 300, 1), (1, 300, 2)]);
    assert_eq!(h.emitted_watermarks(), &[1_150]);
    // 300 at 900 is under the default limit; at 1100 the rule of 100 is in force.
    let flagged: Vec<(u64, i64)> = h.side_output(&FLAGGED).unwrap().into_iter().map(|r| r.value).collect();
    assert_eq!(flagged, vec![(1, 300)]);
    assert_eq!(h.value_state::<u64>(&1, "count").unwrap(), Some(2));
    h.process_broadcast_watermark(3_000).unwrap();
    assert_eq!(h.take_output().len(), 3);
    assert_eq!(h.num_timers().unwrap(), 0);

    // Misuse is a Config error naming the step and the input.
    let e = h.process_broadcast_watermark(10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("\"threshold\"") && e.to_string().contains("broadcast input's"),
        "{e}"
    );
}

/// Amounts of 12 accounts with event times, rules interleaved and watermarks on both inputs.
#[derive(Debug, Clone)]
enum Input {
    Amount(u64, i64, Timestamp),
    Rule(Rule),
    Watermark(Timestamp),
}

fn script(n: i64) -> Vec<Input> {
    let mut s = Vec::new();
    for i in 0..n {
        if i % 10 == 0 {
            s.push(Input::Rule((i * 100 + 50, 100 + (i * 37) % 600)));
        }
        s.push(Input::Amount(
            (i as u64 * 7) % 12,
            (i * 53) % 900,
            i * 100 + (i % 3) * 40,
        ));
        if i % 5 == 4 {
            s.push(Input::Watermark(i * 100 - 200));
        }
    }
    s.push(Input::Watermark(n * 100 + 1_000));
    s
}

fn play<I: IntoIterator<Item = Input>>(h: &mut KeyedBroadcastHarness<u64, i64, Rule, Threshold>, inputs: I) {
    for input in inputs {
        match input {
            Input::Amount(k, a, t) => h.process_element(&k, a, t).unwrap(),
            Input::Rule(r) => h.process_broadcast_element(r, r.0).unwrap(),
            Input::Watermark(w) => h.process_watermark(w).unwrap(),
        }
    }
}

/// Subtask `subtask` of `parallelism`'s share of `inputs`: the amounts of the keys it owns,
/// every rule and every watermark (as a pipeline routes them).
fn share(inputs: &[Input], subtask: usize, parallelism: usize) -> Vec<Input> {
    inputs
        .iter()
        .filter(|i| match i {
            Input::Amount(k, _, _) => {
                subtask_for_key_group(key_group_for(k, 128).unwrap(), 128, parallelism) == subtask
            }
            _ => true,
        })
        .cloned()
        .collect()
}

fn by_account(out: Vec<(u64, i64, u64)>) -> BTreeMap<u64, Vec<(i64, u64)>> {
    let mut m: BTreeMap<u64, Vec<(i64, u64)>> = BTreeMap::new();
    for (k, a, n) in out {
        m.entry(k).or_default().push((a, n));
    }
    m
}

#[test]
fn a_keyed_broadcast_harness_restored_after_a_crash_continues_exactly_where_its_snapshot_was() {
    let inputs = script(60);
    let cut = inputs.len() / 2;
    let mut uninterrupted = KeyedBroadcastHarness::new(Threshold).unwrap();
    play(&mut uninterrupted, inputs.clone());
    let want = uninterrupted.output_values();

    let mut h = HarnessBuilder::new().rocksdb().keyed_broadcast(Threshold).unwrap();
    play(&mut h, inputs[..cut].iter().cloned());
    let before = h.output_values();
    let snapshot = h.snapshot().unwrap();
    assert!(
        snapshot.operator_state().is_some(),
        "subtask 0 checkpoints the broadcast state"
    );
    // The "crash": what came after the snapshot is lost with the harness.
    play(&mut h, inputs[cut..cut + 5].iter().cloned());
    drop(h);
    let mut restored = KeyedBroadcastHarness::restore(Threshold, &snapshot).unwrap();
    let rules_at_cut = inputs[..cut].iter().filter(|i| matches!(i, Input::Rule(_))).count();
    assert_eq!(restored.broadcast_state().len(), rules_at_cut);
    play(&mut restored, inputs[cut..].iter().cloned());
    let mut got = before;
    got.extend(restored.output_values());
    assert_eq!(got, want, "nothing lost, nothing decided twice");
    assert!(!restored.side_output(&FLAGGED).unwrap().is_empty());
}

#[test]
fn snapshots_of_two_subtasks_restore_into_three_with_the_broadcast_state_replicated() {
    let inputs = script(80);
    let cut = inputs.len() / 2;
    let mut model = KeyedBroadcastHarness::new(Threshold).unwrap();
    play(&mut model, inputs.clone());
    let want = by_account(model.output_values());

    let mut got: Vec<(u64, i64, u64)> = Vec::new();
    let mut snapshots: Vec<HarnessSnapshot> = Vec::new();
    for s in 0..2 {
        let mut h = HarnessBuilder::new().subtask(s, 2).keyed_broadcast(Threshold).unwrap();
        play(&mut h, share(&inputs[..cut], s, 2));
        got.extend(h.output_values());
        snapshots.push(h.snapshot().unwrap());
    }
    assert!(snapshots[0].operator_state().is_some() && snapshots[1].operator_state().is_none());
    let rules_at_cut = inputs[..cut].iter().filter(|i| matches!(i, Input::Rule(_))).count();
    for s in 0..3 {
        let mut h = HarnessBuilder::new()
            .subtask(s, 3)
            .restore_from_all(&snapshots)
            .keyed_broadcast(Threshold)
            .unwrap();
        assert_eq!(
            h.broadcast_state().len(),
            rules_at_cut,
            "subtask {s} of 3 has every rule"
        );
        for k in 0..12u64 {
            let owns = subtask_for_key_group(key_group_for(&k, 128).unwrap(), 128, 3) == s;
            let count = h.value_state::<u64>(&k, "count");
            assert_eq!(
                count.is_ok(),
                owns,
                "subtask {s} of 3 reads the count of key {k} only if it owns it"
            );
        }
        play(&mut h, share(&inputs[cut..], s, 3));
        got.extend(h.output_values());
    }
    assert_eq!(
        by_account(got),
        want,
        "each account's decisions once, in order, as without rescaling"
    );

    // Every subtask restores subtask 0's copy of the broadcast state: without it, the restore
    // is refused.
    let e = HarnessBuilder::new()
        .step("threshold")
        .subtask(1, 2)
        .restore_from(&snapshots[1])
        .keyed_broadcast(Threshold)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("subtask 0"), "{e}");
}

/// Limits by region (broadcast), applied to `(region, amount)` records of a non-keyed stream.
#[derive(Clone)]
struct RegionLimits;

impl BroadcastProcess<(String, i64), (String, i64)> for RegionLimits {
    type Out = (String, i64, bool);
    type StateKey = String;
    type StateValue = i64;

    fn process(
        &mut self,
        (region, amount): (String, i64),
        limits: &BroadcastState<String, i64>,
        ctx: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()> {
        let over = limits.get(&region).is_some_and(|l| amount > *l);
        ctx.emit((region, amount, over));
        Ok(())
    }

    fn process_broadcast(
        &mut self,
        (region, limit): (String, i64),
        limits: &mut BroadcastState<String, i64>,
        _: &mut BroadcastContext<'_, Self::Out>,
    ) -> Result<()> {
        limits.insert(region, limit);
        Ok(())
    }
}

#[test]
fn a_broadcast_function_over_a_non_keyed_stream_restores_its_rules_at_any_subtask() {
    let mut h = BroadcastHarness::new(RegionLimits).unwrap();
    h.process_broadcast_element(("eu".into(), 100), 1).unwrap();
    h.process_element(("eu".into(), 150), 2).unwrap();
    h.process_element(("us".into(), 150), 3).unwrap();
    assert_eq!(
        h.output_values(),
        vec![("eu".to_string(), 150, true), ("us".to_string(), 150, false)]
    );
    h.process_main_watermark(10).unwrap();
    assert!(
        h.emitted_watermarks().is_empty(),
        "the broadcast input holds event time back"
    );
    h.process_broadcast_watermark(5).unwrap();
    assert_eq!(h.emitted_watermarks(), &[5]);
    let snapshot = h.snapshot().unwrap();

    // Subtask 2 of 3 restores subtask 0's copy.
    let mut r = HarnessBuilder::new()
        .subtask(2, 3)
        .restore_from(&snapshot)
        .broadcast(RegionLimits)
        .unwrap();
    assert_eq!(r.broadcast_state().get(&"eu".to_string()), Some(&100));
    r.process_element(("eu".into(), 99), 20).unwrap();
    assert_eq!(r.output_values(), vec![("eu".to_string(), 99, false)]);
    assert!(
        r.snapshot().unwrap().operator_state().is_none(),
        "only subtask 0 writes the copy"
    );
}

/// Orders (first input) matched with payments (second input) of the same order id; an order
/// still unpaid when the watermark passes its deadline is emitted as unpaid.
#[derive(Clone)]
struct PaidOrders;

impl KeyedCoProcess<u64, i64, i64> for PaidOrders {
    type Out = (u64, String);

    fn process_first(&mut self, deadline: i64, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        if ctx.value_state::<bool>("paid").get()?.unwrap_or(false) {
            ctx.emit((*ctx.key(), "paid".into()));
            return Ok(());
        }
        ctx.value_state::<i64>("deadline").set(&deadline)?;
        ctx.register_event_time_timer(deadline)
    }

    fn process_second(&mut self, _cents: i64, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        if let Some(deadline) = ctx.value_state::<i64>("deadline").get()? {
            ctx.delete_event_time_timer(deadline)?;
            ctx.value_state::<i64>("deadline").clear()?;
            ctx.emit((*ctx.key(), "paid".into()));
        } else {
            ctx.value_state::<bool>("paid").set(&true)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _: Timer, ctx: &mut KeyedContext<'_, u64, Self::Out>) -> Result<()> {
        ctx.value_state::<i64>("deadline").clear()?;
        ctx.emit((*ctx.key(), "unpaid".into()));
        Ok(())
    }
}

#[test]
fn a_keyed_co_process_function_shares_state_across_its_inputs_and_survives_a_restore() {
    let mut h = KeyedCoProcessHarness::new(PaidOrders).unwrap();
    h.process_first(&1, 100, 10).unwrap();
    h.process_second(&2, 500, 11).unwrap();
    h.process_first(&2, 100, 12).unwrap();
    h.process_first(&3, 150, 13).unwrap();
    let o = |k: u64, what: &str| (k, what.to_string());
    assert_eq!(h.output_values(), vec![o(2, "paid")]);
    assert_eq!(h.num_timers().unwrap(), 2);
    let snapshot = h.snapshot().unwrap();

    // The second input is behind: no deadline has passed for the step.
    h.process_first_watermark(200).unwrap();
    assert_eq!(h.output_values().len(), 1);
    h.process_second_watermark(120).unwrap();
    assert_eq!(h.output_values(), vec![o(2, "paid"), o(1, "unpaid")]);

    // Restored from the snapshot (a crash after it), replaying the inputs gives the same.
    let mut r = KeyedCoProcessHarness::restore(PaidOrders, &snapshot).unwrap();
    assert_eq!(r.value_state::<i64>(&1, "deadline").unwrap(), Some(100));
    r.process_first_watermark(200).unwrap();
    r.process_second(&3, 700, 130).unwrap();
    r.process_second_watermark(200).unwrap();
    assert_eq!(r.output_values(), vec![o(3, "paid"), o(1, "unpaid")]);
    assert_eq!(r.num_timers().unwrap(), 0);
}
