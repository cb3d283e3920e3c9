//! What the example shows: a live progress bar (events, events/s, the latest completed
//! checkpoint and its age, restarts) and the summary tables at the end.

use super::audit::Audit;
use super::domain::{euros, thousands};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_engine::prelude::CheckpointId;

/// One look at a running job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Events read (the restored checkpoint's position plus what this run read).
    pub position: u64,
    /// Events read in total, replays included: only grows (the rate is computed from it).
    pub processed: u64,
    /// The latest completed checkpoint and its age.
    pub checkpoint: Option<(CheckpointId, Duration)>,
    /// Restarts so far (in-process and, in a drill, of the process).
    pub restarts: u32,
    /// Whether every subtask runs (false while starting, recovering or finishing).
    pub running: bool,
}

/// The progress bar on stderr; on a non-terminal it is hidden and only log lines are printed.
pub struct ProgressView {
    bar: ProgressBar,
    total: u64,
    /// Recent (time, processed) samples for the rate.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl ProgressView {
    pub fn new(total: u64) -> ProgressView {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} {elapsed:>4} [{bar:14.cyan/blue}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressView {
            bar,
            total,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Shows a new snapshot.
    pub fn update(&self, s: &Snapshot) {
        let position = s.position.min(self.total);
        let rate = {
            let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if s.running || samples.is_empty() {
                samples.push_back((now, s.processed));
            }
            while samples.len() > 2 && now.duration_since(samples[0].0) > Duration::from_secs(2) {
                samples.pop_front();
            }
            let (t0, p0) = samples[0];
            let dt = now.duration_since(t0).as_secs_f64();
            if dt > 0.05 {
                s.processed.saturating_sub(p0) as f64 / dt
            } else {
                0.0
            }
        };
        let checkpoint = match s.checkpoint {
            Some((id, age)) => format!("ckpt {id} ({:.1}s ago)", age.as_secs_f64()),
            None => "no ckpt yet".to_string(),
        };
        let state = match (s.running, position >= self.total) {
            (true, _) => "",
            (false, true) => " | finishing",
            (false, false) => " | restoring",
        };
        self.bar.set_position(position);
        self.bar.set_message(format!(
            "{} ev/s | {checkpoint} | restarts {}{state}",
            thousands(rate as u64),
            s.restarts
        ));
    }

    /// Prints a line above the bar (or plainly, when the bar is hidden).
    pub fn log(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            println!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A table: a header and rows of cells; `align` has one letter per column, `l` (left) or `r`.
pub fn table(header: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let left: Vec<bool> = (0..cols).map(|i| align.as_bytes().get(i) == Some(&b'l')).collect();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate().take(cols) {
            let pad = " ".repeat(width[i].saturating_sub(c.chars().count()));
            s.push(' ');
            if left[i] {
                s.push_str(c);
                s.push_str(&pad);
            } else {
                s.push_str(&pad);
                s.push_str(c);
            }
            s.push(' ');
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `12.3%` of `part` in `whole`.
pub fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// The business summary of the committed output.
pub fn business_summary(a: &Audit) -> String {
    let n = |v: usize| thousands(v as u64);
    let row = |label: &str, count: String, note: String| vec![label.to_string(), count, note];
    let decided = a.decisions.committed;
    let declined: usize = a.declined_by_reason.values().sum();
    let refunds = a.refunds.committed;
    let rejected: usize = a.refunds_rejected_by_reason.values().sum();
    let alerts: usize = a.alerts_by_rule.values().sum();
    let mut rows = vec![
        row(
            "payment requests",
            thousands(a.payment_requests),
            format!("{} client retries dropped as duplicates", thousands(a.payment_retries)),
        ),
        row("  decided", n(decided), "one decision per idempotency key".into()),
        row("    approved", n(a.approved), percent(a.approved, decided)),
        row("    declined", n(declined), percent(declined, decided)),
    ];
    for (reason, count) in &a.declined_by_reason {
        rows.push(row(&format!("      {reason}"), n(*count), String::new()));
    }
    rows.push(row(
        "refund requests",
        thousands(a.refund_requests),
        format!("{} client retries dropped as duplicates", thousands(a.refund_retries)),
    ));
    rows.push(row(
        "  accepted",
        n(a.refunds_accepted),
        percent(a.refunds_accepted, refunds),
    ));
    rows.push(row("  rejected", n(rejected), percent(rejected, refunds)));
    for (reason, count) in &a.refunds_rejected_by_reason {
        rows.push(row(&format!("    {reason}"), n(*count), String::new()));
    }
    rows.push(row("fraud alerts", n(alerts), "each declines its payment".into()));
    for (rule, count) in &a.alerts_by_rule {
        rows.push(row(&format!("  {rule}"), n(*count), String::new()));
    }
    rows.push(row(
        "settlements",
        n(a.settlements.committed),
        format!(
            "{} merchants x 1-minute windows, net {}",
            n(a.money.merchants),
            euros(a.money.settled_cents)
        ),
    ));
    format!("committed output\n{}", table(&["", "count", ""], "lrl", &rows))
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

/// The drill report: failures, restarts, checkpoints, RPO (from the audit, if it ran), RTO,
/// throughput.
pub fn drill_report(d: &super::drill::DrillOutcome, audit: Option<&Audit>, events: u64) -> String {
    use super::drill::{rto_stats, FaultKind, RtoStats};
    let mut out = String::from("drill report\n");
    let count = |k: FaultKind| d.faults.iter().filter(|f| f.kind == k).count();
    let by_kind: Vec<String> = FaultKind::ALL
        .iter()
        .chain(FaultKind::CLUSTER.iter().filter(|k| **k != FaultKind::Kill))
        .filter(|k| count(**k) > 0)
        .map(|k| format!("{} × {}", count(*k), k.describe()))
        .collect();
    out.push_str(&format!(
        "  failures injected: {} ({})\n",
        d.faults.len(),
        by_kind.join(", ")
    ));
    if d.faults.len() < d.planned.len() {
        out.push_str(&format!(
            "  ({} more planned: the job finished before they triggered)\n",
            d.planned.len() - d.faults.len()
        ));
    }
    out.push_str(&format!(
        "  restarts: {} ({} of the job's process, {} by the engine){}\n",
        d.restarts(),
        d.processes.saturating_sub(1),
        d.in_process_restarts,
        if d.unplanned_restarts > 0 {
            format!(", {} NOT PLANNED", d.unplanned_restarts)
        } else {
            String::new()
        }
    ));
    out.push_str(&format!(
        "  checkpoints completed: {} (last id {})\n",
        d.checkpoints.len(),
        d.checkpoints
            .last()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    out.push_str(&match audit {
        Some(a) => format!(
            "  RPO: {} events lost, {} events duplicated (from the audit of the committed output)\n",
            a.events_lost(),
            a.events_duplicated()
        ),
        None => "  RPO: not measured (--no-verify)\n".to_string(),
    });
    let secs = d.wall.as_secs_f64();
    out.push_str(&format!(
        "  throughput: {} events/s ({} events in {:.1} s, recoveries included)\n",
        thousands((events as f64 / secs.max(1e-9)) as u64),
        thousands(events),
        secs
    ));
    let rows: Vec<Vec<String>> = d
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            vec![
                format!("{}", i + 1),
                f.kind.describe().to_string(),
                thousands(f.at),
                f.restored
                    .map(|c| format!("checkpoint {c}"))
                    .unwrap_or_else(|| "start".into()),
                f.replayed.map(thousands).unwrap_or_else(|| "-".into()),
                match (f.rto_ms, f.rto_exact) {
                    (Some(v), true) => ms(v),
                    (Some(v), false) => format!("~{}", ms(v)),
                    (None, _) => "-".into(),
                },
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["#", "failure", "at event", "resumed from", "replayed", "RTO"],
        "rlrlrr",
        &rows,
    ));
    let stats: Vec<Vec<String>> = rto_stats(d)
        .into_iter()
        .map(|RtoStats { name, count, ms: s }| {
            let (min, med, max) = match s {
                Some((a, b, c)) => (ms(a), ms(b), ms(c)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![name, count.to_string(), min, med, max]
        })
        .collect();
    out.push_str("\n\n");
    out.push_str(&table(
        &["RTO (failure → running)", "count", "min", "median", "max"],
        "lrrrr",
        &stats,
    ));
    out.push_str(
        "\n  RTO of a kill -9 or crash: from the failure until the restarted process runs again (restore included);\
         \n  of a panic: RestoreStats.detect_to_running_ms, from the failure's detection until every subtask runs again",
    );
    if d.faults.iter().any(|f| f.rto_ms.is_some() && !f.rto_exact) {
        out.push_str(
            "\n  ~: the process was killed later, losing its JobReport: RTO as the child observed it in progress()",
        );
    }
    out
}
