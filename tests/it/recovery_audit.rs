//! The recovery benchmark's RPO audit (`weir_examples::recovery::audit`) finds every kind of damage:
//! a lost event, a duplicated event, and keyed state that lost or doubled an effect, at any
//! processing order of a key's events.

use weir_examples::recovery::audit::check_lines;
use weir_examples::recovery::workload::key_of;

const KEYS: u64 = 50;
const END: u64 = 2_000;

/// Committed lines of a correct run: events in `order`, each with its key's running count
/// (the preload event counts 1).
fn correct(order: impl Iterator<Item = u64>) -> Vec<String> {
    let mut counts = vec![1u64; KEYS as usize];
    order
        .map(|id| {
            let c = &mut counts[key_of(id, KEYS) as usize];
            *c += 1;
            format!("{id} {c}")
        })
        .collect()
}

#[test]
fn a_correct_run_passes_in_any_order_of_events() {
    let a = check_lines(&correct(KEYS..END), KEYS, END);
    assert!(a.ok(), "{a:?}");
    assert_eq!(a.events, END - KEYS);
    // Two splits read concurrently: odd events before even ones, as a key_by may deliver them.
    let interleaved = (KEYS..END)
        .filter(|i| i % 2 == 1)
        .chain((KEYS..END).filter(|i| i % 2 == 0));
    let a = check_lines(&correct(interleaved), KEYS, END);
    assert!(a.ok(), "{a:?}");
}

#[test]
fn lost_and_duplicated_events_are_counted() {
    let mut lines = correct(KEYS..END);
    lines.remove(100);
    let copy = lines[200].clone();
    lines.push(copy);
    lines.push("not a line".into());
    let a = check_lines(&lines, KEYS, END);
    assert_eq!(
        (a.lost, a.duplicated, a.wrong_state, a.malformed),
        (1, 1, 0, 1),
        "{a:?}"
    );
    assert!(!a.ok());
}

#[test]
fn state_that_lost_or_doubled_an_effect_is_found() {
    // Event 500's effect is applied twice: every later event of its key sees one too many.
    let mut counts = vec![1u64; KEYS as usize];
    let lines: Vec<String> = (KEYS..END)
        .map(|id| {
            let k = key_of(id, KEYS);
            counts[k as usize] += if id == 500 { 2 } else { 1 };
            format!("{id} {}", counts[k as usize])
        })
        .collect();
    let a = check_lines(&lines, KEYS, END);
    assert_eq!((a.lost, a.duplicated), (0, 0));
    assert!(a.wrong_state >= 1, "{a:?}");
    // Event 700's effect is lost from state (its output still committed).
    let mut counts = vec![1u64; KEYS as usize];
    let lines: Vec<String> = (KEYS..END)
        .map(|id| {
            let k = key_of(id, KEYS);
            let shown = counts[k as usize] + 1;
            if id != 700 {
                counts[k as usize] += 1;
            }
            format!("{id} {shown}")
        })
        .collect();
    let a = check_lines(&lines, KEYS, END);
    assert_eq!((a.lost, a.duplicated), (0, 0));
    assert!(a.wrong_state >= 1, "{a:?}");
}
