//! RPO, checked rather than assumed: after the run, the committed output of the exactly-once
//! file sink must hold every steady event `keys..end` exactly once, and per key the counts
//! committed must be exactly `2, 3, …, n + 1` for its `n` steady events (its preload event
//! counts 1), whatever failures happened in between. The count is the keyed state each event
//! saw: an effect lost from state shows as a repeated count, an effect applied twice as a
//! skipped one. (At parallelism > 1, events of one key from different source splits may be
//! processed in either order, so the check is per key, not per event.)

use super::workload::key_of;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use weir_engine::sink::file::read_committed_lines;

/// What the audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Exclusive end of the input (events `keys..end` are the steady events).
    pub end: u64,
    /// Steady events checked.
    pub events: u64,
    /// Events whose effect is missing from the committed output.
    pub lost: u64,
    /// Events whose effect was committed more than once (extra copies counted).
    pub duplicated: u64,
    /// Committed counts that do not fit their key's sequence `2..=n + 1`: the state the event
    /// updated had lost or doubled an earlier effect.
    pub wrong_state: u64,
    /// Lines that are not `id count` for an event of the input.
    pub malformed: u64,
}

impl Audit {
    pub fn ok(&self) -> bool {
        self.events > 0 && self.lost == 0 && self.duplicated == 0 && self.wrong_state == 0 && self.malformed == 0
    }
}

/// Audits the committed output in `dir` against the model of events `keys..end`.
pub fn check(dir: &Path, keys: u64, end: u64) -> anyhow::Result<Audit> {
    let lines =
        read_committed_lines(dir).with_context(|| format!("reading the committed output in {}", dir.display()))?;
    Ok(check_lines(&lines, keys, end))
}

/// Audits committed `lines` (`id count`) against the model of events `keys..end`.
pub fn check_lines(lines: &[String], keys: u64, end: u64) -> Audit {
    let n = end.saturating_sub(keys) as usize;
    // Per steady event: times committed, and the count committed the first time.
    let mut seen = vec![(0u32, 0u64); n];
    let mut audit = Audit {
        end,
        events: n as u64,
        ..Default::default()
    };
    for line in lines {
        let parsed = line
            .split_once(' ')
            .and_then(|(id, c)| Some((id.parse::<u64>().ok()?, c.parse::<u64>().ok()?)));
        match parsed {
            Some((id, count)) if id >= keys && id < end => {
                let s = &mut seen[(id - keys) as usize];
                if s.0 == 0 {
                    s.1 = count;
                }
                s.0 += 1;
            }
            _ => audit.malformed += 1,
        }
    }
    // (key, count) of every committed event, and how many steady events each key has.
    let mut committed: Vec<(u64, u64)> = Vec::with_capacity(n);
    let mut per_key = vec![0u64; keys as usize];
    for (i, (times, count)) in seen.iter().enumerate() {
        let key = key_of(keys + i as u64, keys);
        per_key[key as usize] += 1;
        match times {
            0 => audit.lost += 1,
            t => {
                audit.duplicated += u64::from(t - 1);
                committed.push((key, *count));
            }
        }
    }
    // The model: a key with n steady events commits the counts 2..=n + 1, once each. A count
    // outside that range or repeated is a misfit; a count merely missing belongs to an event
    // already counted as lost.
    committed.sort_unstable();
    for (i, &(key, count)) in committed.iter().enumerate() {
        let last = 1 + per_key[key as usize];
        let repeated = i > 0 && committed[i - 1] == (key, count);
        if count < 2 || count > last || repeated {
            audit.wrong_state += 1;
        }
    }
    audit
}
