//! What a job reports when it ends.

use crate::runtime::plan::MetricsEntry;
use std::collections::BTreeMap;
use std::time::Duration;

/// Counters of one step, summed over its subtasks.
#[derive(Debug, Clone, Default)]
pub struct OperatorReport {
    /// The step's name.
    pub name: String,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Named counters (late records, duplicates, ...).
    pub counters: BTreeMap<String, u64>,
}

impl OperatorReport {
    pub(crate) fn collect(metrics: &[MetricsEntry]) -> Vec<OperatorReport> {
        let mut out: Vec<OperatorReport> = Vec::new();
        for m in metrics {
            let r = match out.iter_mut().position(|r| r.name == m.operator) {
                Some(i) => &mut out[i],
                None => {
                    out.push(OperatorReport {
                        name: m.operator.clone(),
                        ..Default::default()
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            r.parallelism += 1;
            r.records_in += m.metrics.records_in();
            r.records_out += m.metrics.records_out();
            for (k, v) in m.metrics.counters() {
                *r.counters.entry(k).or_default() += v;
            }
        }
        out
    }
}

/// The outcome of a job run.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// The job's name.
    pub job: String,
    /// Wall time from start to end.
    pub duration: Duration,
    /// Whether the job ended because it was cancelled.
    pub cancelled: bool,
    /// Per-step counters, in graph order.
    pub operators: Vec<OperatorReport>,
}

impl JobReport {
    /// The report of the step named `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorReport> {
        self.operators.iter().find(|o| o.name == name)
    }
}

impl std::fmt::Display for JobReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "job {} {} in {:.2?}",
            self.job,
            if self.cancelled { "cancelled" } else { "finished" },
            self.duration
        )?;
        writeln!(f, "{:<28} {:>5} {:>14} {:>14}", "step", "par", "records in", "records out")?;
        for o in &self.operators {
            write!(f, "{:<28} {:>5} {:>14} {:>14}", o.name, o.parallelism, o.records_in, o.records_out)?;
            for (k, v) in &o.counters {
                write!(f, "  {k}={v}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
