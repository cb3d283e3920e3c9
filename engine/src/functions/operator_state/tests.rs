//! The operator state of function subtasks through checkpoints and restores, decided without a
//! pipeline.

use super::*;
use crate::functions::RuntimeContext;
use crate::keyed::event_time::EventTime;
use crate::operator::ChannelWatermark;
use serde::{Deserialize, Serialize};

const PENDING: OperatorListDescriptor<u64> = OperatorListDescriptor::new("pending");
const SEEN: OperatorListDescriptor<u64> = OperatorListDescriptor::new("seen").union();

fn runtime(subtask: usize, parallelism: usize) -> RuntimeContext {
    RuntimeContext {
        job: "j".into(),
        step: "batcher".into(),
        subtask,
        parallelism,
        max_parallelism: 128,
        attempt: 1,
    }
}

fn input(watermark: i64) -> EventTime {
    EventTime {
        watermark,
        channels: vec![ChannelWatermark { watermark, idle: false }],
    }
}

/// Runs `parallelism` fresh subtasks, subtask `s` holding `pending[s]` and `seen[s]`, and
/// returns what each wrote at a checkpoint (by index).
fn checkpoint(pending: &[Vec<u64>], seen: &[Vec<u64>]) -> Vec<(usize, Vec<u8>)> {
    let p = pending.len();
    (0..p)
        .map(|s| {
            let mut state = FunctionOperatorState::restore(runtime(s, p), None, &[]).unwrap();
            let mut ctx = state.context();
            assert!(!ctx.is_restored());
            ctx.list_state(&PENDING).unwrap().update(pending[s].clone());
            ctx.list_state(&SEEN).unwrap().update(seen[s].clone());
            state.keep_undeclared();
            (s, state.to_bytes(&input(10 * s as i64 + 5)).unwrap())
        })
        .collect()
}

/// What subtask `s` of `p` restores from `saved` into both lists.
fn restore(saved: &[(usize, Vec<u8>)], s: usize, p: usize) -> (Vec<u64>, Vec<u64>, Option<EventTime>) {
    let own = saved
        .iter()
        .find(|(i, _)| *i == s && saved.len() == p)
        .map(|(_, raw)| raw.as_slice());
    let mut state = FunctionOperatorState::restore(runtime(s, p), own, saved).unwrap();
    let mut ctx = state.context();
    assert!(ctx.is_restored());
    let pending = ctx.list_state(&PENDING).unwrap().get();
    let seen = ctx.list_state(&SEEN).unwrap().get();
    (pending, seen, state.restored_input().cloned())
}

#[test]
fn split_lists_stay_put_at_the_same_parallelism_and_union_lists_go_everywhere() {
    let saved = checkpoint(&[vec![1, 2], vec![3]], &[vec![10], vec![11, 12]]);
    assert_eq!(restore(&saved, 0, 2), (vec![1, 2], vec![10, 11, 12], Some(input(5))));
    assert_eq!(restore(&saved, 1, 2), (vec![3], vec![10, 11, 12], Some(input(15))));
}

#[test]
fn a_rescale_hands_every_split_element_to_one_subtask_and_starts_from_the_earliest_watermark() {
    let saved = checkpoint(&[vec![1, 2, 3], vec![4, 5]], &[vec![10], vec![11]]);
    let mut all = Vec::new();
    for s in 0..3 {
        let (pending, seen, event_time) = restore(&saved, s, 3);
        assert_eq!(seen, vec![10, 11], "subtask {s}");
        assert_eq!(event_time.unwrap().watermark, 5, "subtask {s}");
        all.extend(pending);
    }
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    assert_eq!(restore(&saved, 0, 1).0, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_list_declared_twice_is_an_error_naming_it() {
    let mut state = FunctionOperatorState::restore(runtime(0, 1), None, &[]).unwrap();
    let mut ctx = state.context();
    ctx.list_state(&PENDING).unwrap();
    let e = ctx.list_state(&PENDING).unwrap_err();
    assert!(
        e.to_string().contains("\"pending\" of batcher[0] is declared twice"),
        "{e}"
    );
}

#[test]
fn lists_the_function_no_longer_declares_are_kept_through_the_next_checkpoint() {
    let saved = checkpoint(&[vec![1, 2], vec![3]], &[vec![10], vec![11]]);
    // The new version declares only "seen"; "pending" is carried (split by its old rule).
    let mut carried = Vec::new();
    for s in 0..2 {
        let own = saved.iter().find(|(i, _)| *i == s).map(|(_, raw)| raw.as_slice());
        let mut state = FunctionOperatorState::restore(runtime(s, 2), own, &saved).unwrap();
        state.context().list_state(&SEEN).unwrap();
        state.keep_undeclared();
        carried.push((s, state.to_bytes(&input(0)).unwrap()));
    }
    // A later version declares it again and finds every element.
    let (pending, _, _) = restore(&carried, 0, 1);
    assert_eq!(pending, vec![1, 2, 3]);
}

#[derive(Clone, Serialize, Deserialize)]
struct OffsetV0 {
    at: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Offset {
    at: u64,
    #[serde(default)]
    source: String,
}

#[test]
fn list_elements_evolve_through_their_schema_and_an_unreadable_change_names_step_and_list() {
    let old: OperatorListDescriptor<OffsetV0> = OperatorListDescriptor::new("offsets").positional();
    let mut state = FunctionOperatorState::restore(runtime(0, 1), None, &[]).unwrap();
    state.context().list_state(&old).unwrap().add(OffsetV0 { at: 7 });
    let saved = vec![(0, state.to_bytes(&input(0)).unwrap())];

    let migrated = OperatorListDescriptor::new("offsets")
        .version(1)
        .migrate_from::<OffsetV0>(0, |o| Offset {
            at: u64::from(o.at),
            source: "v0".into(),
        });
    let mut state = FunctionOperatorState::restore(runtime(0, 1), Some(&saved[0].1), &saved).unwrap();
    let got = state.context().list_state(&migrated).unwrap().get();
    assert_eq!(
        got,
        vec![Offset {
            at: 7,
            source: "v0".into()
        }]
    );

    let unmigrated: OperatorListDescriptor<Offset> = OperatorListDescriptor::new("offsets").version(1);
    let mut state = FunctionOperatorState::restore(runtime(0, 1), Some(&saved[0].1), &saved).unwrap();
    let e = state
        .context()
        .list_state(&unmigrated)
        .expect_err("no migration from version 0");
    let msg = e.to_string();
    assert!(msg.contains("operator list \"offsets\" of batcher[0]"), "{msg}");
    assert!(msg.contains("migrate_from"), "{msg}");
}

#[test]
fn a_self_describing_element_reads_after_a_field_was_added() {
    #[derive(Clone, Serialize, Deserialize)]
    struct Before {
        at: u64,
    }
    let before: OperatorListDescriptor<Before> = OperatorListDescriptor::new("offsets");
    let mut state = FunctionOperatorState::restore(runtime(0, 1), None, &[]).unwrap();
    state.context().list_state(&before).unwrap().add(Before { at: 3 });
    let saved = vec![(0, state.to_bytes(&input(0)).unwrap())];
    let after: OperatorListDescriptor<Offset> = OperatorListDescriptor::new("offsets");
    let mut state = FunctionOperatorState::restore(runtime(0, 1), Some(&saved[0].1), &saved).unwrap();
    assert_eq!(
        state.context().list_state(&after).unwrap().get(),
        vec![Offset {
            at: 3,
            source: String::new()
        }]
    );
}
