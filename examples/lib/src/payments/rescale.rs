//! The rescale drill (`--rescale 2,3,1`): the job runs in segments, one per parallelism; each
//! segment but the last stops gracefully at a final checkpoint once it has read its share of
//! the input, and the next segment restores that checkpoint at its own parallelism (keyed
//! state split or merged by key groups, splits and sink committables dealt out again). The
//! audit of the committed output then judges the whole run: every event exactly once.
//!
//! Each segment runs as a drill child (on `--workers N`, as a local cluster), so a segment
//! ends the way a real stop ends: the process exits after its final checkpoint.

use super::drill::{self, DrillOutcome};
use super::pipeline::JobSettings;
use super::report::ProgressView;
use anyhow::{bail, Context};
use std::path::Path;
use std::time::Duration;
use weir_engine::prelude::CheckpointId;

/// One segment of a rescale drill, as it went.
#[derive(Debug, Clone)]
pub struct Segment {
    pub parallelism: usize,
    /// The checkpoint it stopped at (every segment but the last).
    pub stopped_at: Option<CheckpointId>,
    pub wall: Duration,
}

/// The parallelisms of a rescale drill's segments, in order (`--rescale 2,3,1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps(pub Vec<usize>);

/// Parses `--rescale`: two or more parallelisms, each from 1 to 128.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse(list: &str) -> Result<Steps, String> {
    let steps: Vec<usize> = list
        .split(',')
        .map(|p| match p.trim().parse::<usize>() {
            Ok(n) if (1..=128).contains(&n) => Ok(n),
            _ => Err(format!("{p:?} is not a parallelism from 1 to 128")),
        })
        .collect::<Result<_, _>>()?;
    if steps.len() < 2 {
        return Err(format!(
            "{list:?}: a rescale needs two parallelisms or more, as in 2,3,1"
        ));
    }
    Ok(Steps(steps))
}

/// Where segment `k` of `n` stops: after its share of `events` (the last runs to the end).
fn stop_position(k: usize, n: usize, events: u64) -> Option<u64> {
    (k + 1 < n).then(|| events * (k as u64 + 1) / n as u64)
}

/// Runs the segments; returns each one's record and the last segment's drill outcome.
///
/// # Errors
/// A segment that failed, or one that ended without stopping where it should have.
pub fn run(
    s: &JobSettings,
    steps: &[usize],
    work_dir: &Path,
    view: &ProgressView,
) -> anyhow::Result<(Vec<Segment>, DrillOutcome)> {
    let mut segments = Vec::new();
    let stall = Duration::from_secs(120);
    for (k, &parallelism) in steps.iter().enumerate() {
        let stop_at = stop_position(k, steps.len(), s.workload.events);
        view.log(format!(
            "segment {}: parallelism {parallelism}{}",
            k + 1,
            stop_at.map(|p| format!(", stops at event {p}")).unwrap_or_default()
        ));
        let segment = JobSettings {
            parallelism,
            stop_at_position: stop_at,
            ..s.clone()
        };
        let outcome = drill::supervise(&segment, Vec::new(), work_dir, view, stall)
            .with_context(|| format!("segment {} at parallelism {parallelism}", k + 1))?;
        match (stop_at, outcome.stopped_at) {
            (Some(_), None) => bail!(
                "segment {} at parallelism {parallelism} ended without stopping at a final checkpoint",
                k + 1
            ),
            (None, Some(id)) => bail!("the last segment stopped at checkpoint {id} instead of finishing"),
            _ => {}
        }
        segments.push(Segment {
            parallelism,
            stopped_at: outcome.stopped_at,
            wall: outcome.wall,
        });
        if stop_at.is_none() {
            return Ok((segments, outcome));
        }
    }
    unreachable!("the last segment returns")
}

/// The segments as a table.
pub fn table(segments: &[Segment]) -> String {
    let mut out = String::from("rescale drill\n  segment  parallelism  stopped at  wall\n");
    for (k, seg) in segments.iter().enumerate() {
        out.push_str(&format!(
            "  {:>7}  {:>11}  {:>10}  {:.1} s\n",
            k + 1,
            seg.parallelism,
            seg.stopped_at
                .map(|id| format!("chk {id}"))
                .unwrap_or_else(|| "the end".into()),
            seg.wall.as_secs_f64()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rescale_list_needs_two_valid_parallelisms_and_each_segment_stops_at_its_share() {
        assert_eq!(parse("2,3,1"), Ok(Steps(vec![2, 3, 1])));
        assert!(parse("2").unwrap_err().contains("two parallelisms"));
        assert!(parse("2,0").unwrap_err().contains("\"0\""));
        assert!(parse("2,x").is_err());
        assert_eq!(stop_position(0, 3, 300), Some(100));
        assert_eq!(stop_position(1, 3, 300), Some(200));
        assert_eq!(stop_position(2, 3, 300), None);
    }
}
