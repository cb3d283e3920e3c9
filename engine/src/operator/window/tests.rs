use super::contents::list_name;
use super::*;
use crate::keyed::scope::encode;

fn w(start: i64, end: i64) -> TimeWindow {
    TimeWindow::new(start, end)
}

#[test]
fn a_session_without_neighbours_stays_alone() {
    let existing = [w(0, 10), w(30, 40)];
    assert_eq!(merge_windows(&existing, w(15, 25)), (w(15, 25), vec![]));
    assert_eq!(merge_windows(&[], w(15, 25)), (w(15, 25), vec![]));
}

#[test]
fn sessions_that_overlap_or_touch_merge() {
    let existing = [w(0, 10), w(30, 40)];
    assert_eq!(merge_windows(&existing, w(5, 15)), (w(0, 15), vec![w(0, 10)]));
    // Touching windows merge (Flink's `TimeWindow.intersects`).
    assert_eq!(merge_windows(&existing, w(10, 20)), (w(0, 20), vec![w(0, 10)]));
    assert_eq!(merge_windows(&existing, w(20, 30)), (w(20, 40), vec![w(30, 40)]));
    // Contained in an existing session: that session is the result.
    assert_eq!(merge_windows(&existing, w(2, 8)), (w(0, 10), vec![w(0, 10)]));
    // A record bridging two sessions merges all three.
    assert_eq!(
        merge_windows(&existing, w(8, 32)),
        (w(0, 40), vec![w(0, 10), w(30, 40)])
    );
    // Negative times.
    assert_eq!(
        merge_windows(&[w(-20, -10)], w(-12, -2)),
        (w(-20, -2), vec![w(-20, -10)])
    );
}

#[test]
fn merging_is_transitive_over_the_cover() {
    // Not produced by sessions (existing windows never intersect), but merge_windows must still
    // take every window that touches the growing cover.
    let existing = [w(20, 30), w(0, 12), w(11, 21)];
    let (merged, absorbed) = merge_windows(&existing, w(5, 6));
    assert_eq!(merged, w(0, 30));
    assert_eq!(absorbed, existing.to_vec());
}

#[test]
fn brute_force_sessions_match_sorted_gap_model() {
    // Feed timestamps in a scrambled order; the final set of sessions must equal the one
    // computed from the sorted timestamps (split where the gap between neighbours exceeds `gap`).
    let gap = 10;
    let mut seed = 42u64;
    for _ in 0..200 {
        let mut ts: Vec<i64> = (0..20)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) % 200) as i64 - 100
            })
            .collect();
        let mut sessions: Vec<TimeWindow> = Vec::new();
        for &t in &ts {
            let (merged, absorbed) = merge_windows(&sessions, w(t, t + gap));
            sessions.retain(|s| !absorbed.contains(s));
            sessions.push(merged);
        }
        sessions.sort();
        ts.sort();
        let mut expect: Vec<TimeWindow> = Vec::new();
        for t in ts {
            match expect.last_mut() {
                Some(last) if t <= last.end => last.end = last.end.max(t + gap),
                _ => expect.push(w(t, t + gap)),
            }
        }
        assert_eq!(sessions, expect);
    }
}

#[test]
fn window_keys_round_trip_and_encode_in_end_then_start_order() {
    let mut windows = vec![
        w(i64::MIN, i64::MIN + 5),
        w(-20, -10),
        w(-15, -10),
        w(-10, 0),
        w(-1, 1),
        w(0, 1),
        w(0, 10),
        w(5, 10),
        w(10, 300),
        w(299, 300),
        w(1 << 40, (1 << 40) + 1),
        w(i64::MAX - 1, i64::MAX),
    ];
    for x in &windows {
        assert_eq!(key_window(window_key(*x)), *x);
    }
    let mut by_bytes = windows.clone();
    by_bytes.sort_by_key(|x| encode(&window_key(*x)).unwrap());
    windows.sort_by_key(|x| (x.end, x.start));
    assert_eq!(by_bytes, windows);
    let mut by_name = windows.clone();
    by_name.sort_by_key(|x| list_name(*x));
    assert_eq!(by_name, windows);
    assert_eq!(encode(&window_key(w(0, 1))).unwrap().len(), 16);
}
