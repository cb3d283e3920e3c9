//! RPO, checked rather than assumed: after the run, the committed output of the exactly-once
//! file sink must hold every steady event `keys..end` exactly once, each with the count the
//! sequential model gives (the number of events of its key so far, its preload event
//! included), whatever failures happened in between.

use crate::workload::key_of;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use weir::engine::sink::file::read_committed_lines;

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
    /// Events committed with a count other than the model's: the state they updated had lost
    /// or doubled an earlier effect.
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
    let n = end.saturating_sub(keys) as usize;
    // Per steady event: times committed, and the count committed the first time.
    let mut seen = vec![(0u32, 0u64); n];
    let mut audit = Audit {
        end,
        events: n as u64,
        ..Default::default()
    };
    for line in &lines {
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
    // The model: every key starts at 1 (its preload event).
    let mut counts = vec![1u64; keys as usize];
    for (i, (times, count)) in seen.iter().enumerate() {
        let id = keys + i as u64;
        let c = &mut counts[key_of(id, keys) as usize];
        *c += 1;
        match times {
            0 => audit.lost += 1,
            t => {
                audit.duplicated += u64::from(t - 1);
                if *count != *c {
                    audit.wrong_state += 1;
                }
            }
        }
    }
    Ok(audit)
}
