//! The word count's audit: the committed running counts against a sequential count of the
//! same input.
//!
//! Every update the job commits is `(word, n)`, the word's running count after its `n`-th
//! occurrence. Exactly once means that each word's committed counts are exactly
//! `1, 2, ..., total`: a gap is a lost update, a repeated count a doubled one, and a count
//! outside `1..=total` (or of a word the input does not have) is one the input cannot produce.

use std::collections::BTreeMap;

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordAudit {
    /// Distinct words in the input.
    pub words: usize,
    /// Updates the input must produce (its number of words).
    pub expected_updates: u64,
    /// Counts in `1..=total` never committed.
    pub lost: u64,
    /// Counts committed more than once (extra copies).
    pub doubled: u64,
    /// Committed counts outside `1..=total`, or of words the input does not have.
    pub unexpected: u64,
}

impl WordAudit {
    /// Whether every word was counted exactly once.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.unexpected == 0
    }
}

/// Checks the committed `updates` (every count committed per word) against the `expected`
/// total per word.
pub fn audit(expected: &BTreeMap<String, u64>, mut updates: BTreeMap<String, Vec<u64>>) -> WordAudit {
    let mut a = WordAudit {
        words: expected.len(),
        expected_updates: expected.values().sum(),
        ..WordAudit::default()
    };
    for (w, &total) in expected {
        let mut seen = updates.remove(w).unwrap_or_default();
        seen.sort_unstable();
        let mut next = 1;
        for n in seen {
            if n == 0 || n > total {
                a.unexpected += 1;
            } else if n < next {
                a.doubled += 1;
            } else {
                a.lost += n - next;
                next = n + 1;
            }
        }
        a.lost += (total + 1) - next;
    }
    a.unexpected += updates.values().map(|v| v.len() as u64).sum::<u64>();
    a
}
