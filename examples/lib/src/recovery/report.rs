//! The results: the phase table on the terminal, `runs.csv` (one flat row per run, for a
//! spreadsheet), and `runs.json` (every run in full, with its throughput/latency series).

use super::analysis;
use super::run::{Backend, Failure, RunData};
use serde::Serialize;
use std::path::Path;

/// One run as a flat CSV row.
#[derive(Debug, Serialize)]
pub struct Row {
    pub run: String,
    /// The grid point (the run without its repetition).
    pub point: String,
    pub state_mb: u64,
    pub backend: &'static str,
    pub checkpoint_ms: u64,
    pub failure: &'static str,
    pub parallelism: usize,
    pub rate_eps: f64,
    pub baseline_eps: f64,
    pub baseline_latency_ms: f64,
    /// Whether the job kept up with the input before the failure (baseline within 10 % of
    /// the rate): if not, the machine is overloaded and the phases mean little.
    pub steady: bool,
    pub detection_ms: Option<f64>,
    pub restore_ms: Option<f64>,
    pub restart_ms: Option<f64>,
    pub replay_ms: Option<f64>,
    pub normal_ms: Option<f64>,
    pub rto_ms: Option<f64>,
    /// restore_ms / rto_ms.
    pub restore_share: Option<f64>,
    pub replayed_events: u64,
    pub events_checked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub wrong_state: u64,
    pub unplanned_failures: u32,
    pub checkpoints: usize,
    pub median_checkpoint_sync_ms: f64,
    pub median_checkpoint_async_ms: f64,
    pub checkpoint_state_mb: f64,
    pub preload_s: f64,
    pub wall_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Row {
    pub fn of(d: &RunData) -> Row {
        let p = &d.phases;
        Row {
            run: d.config.slug(),
            point: d.config.point(),
            state_mb: d.config.state_mb,
            backend: match d.config.backend {
                Backend::Rocksdb => "rocksdb",
                Backend::Memory => "memory",
            },
            checkpoint_ms: d.config.checkpoint_ms,
            failure: match d.config.failure {
                Failure::Panic => "panic",
                Failure::Kill => "kill",
            },
            parallelism: d.config.parallelism,
            rate_eps: d.config.rate,
            baseline_eps: p.baseline_eps,
            baseline_latency_ms: p.baseline_latency_ms,
            steady: (p.baseline_eps - d.config.rate).abs() <= 0.1 * d.config.rate,
            detection_ms: p.detection_ms,
            restore_ms: p.restore_ms,
            restart_ms: p.restart_ms,
            replay_ms: p.replay_ms,
            normal_ms: p.normal_ms,
            rto_ms: p.rto_ms,
            restore_share: p.restore_ms.zip(p.rto_ms).map(|(r, t)| r / t),
            replayed_events: p.replayed,
            events_checked: d.audit.events,
            lost: d.audit.lost,
            duplicated: d.audit.duplicated,
            wrong_state: d.audit.wrong_state + d.audit.malformed,
            unplanned_failures: d.unplanned_failures,
            checkpoints: d.checkpoints.len(),
            median_checkpoint_sync_ms: median(d.checkpoints.iter().map(|c| c.sync_ms).collect()),
            median_checkpoint_async_ms: median(d.checkpoints.iter().map(|c| c.async_ms).collect()),
            checkpoint_state_mb: d.checkpoints.last().map(|c| c.state_bytes as f64 / 1e6).unwrap_or(0.0),
            preload_s: d.preload_s,
            wall_s: d.wall_s,
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

/// The phase table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8}\n",
        "run",
        "base e/s",
        "detect",
        "restore",
        "replay",
        "normal",
        "RTO ms",
        "restore%",
        "replayed",
        "lost",
        "dup",
        "RPO"
    );
    for r in rows {
        let rpo_ok = r.events_checked > 0 && r.lost == 0 && r.duplicated == 0 && r.wrong_state == 0;
        s += &format!(
            "{:<30} {:>8.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8}\n",
            r.run,
            r.baseline_eps,
            ms(r.detection_ms),
            ms(r.restore_ms),
            ms(r.replay_ms),
            ms(r.normal_ms),
            ms(r.rto_ms),
            r.restore_share
                .map(|x| format!("{:.0} %", 100.0 * x))
                .unwrap_or_else(|| "-".into()),
            r.replayed_events,
            r.lost,
            r.duplicated,
            if rpo_ok { "0 (ok)" } else { "FAILED" },
        );
        if !r.steady {
            s += "  ^ the job did not keep up with the input before the failure: lower --rate\n";
        }
    }
    s
}

/// A run in full, for `runs.json`.
#[derive(Serialize)]
struct Full<'a> {
    #[serde(flatten)]
    data: &'a RunData,
    /// (s after the failure, events/s, latency ms) per 100 ms.
    series: Vec<(f64, f64, f64)>,
}

/// Writes `runs.csv` and `runs.json` into `out`.
pub fn write_files(out: &Path, runs: &[RunData]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(out.join("runs.csv"))?;
    for d in runs {
        w.serialize(Row::of(d))?;
    }
    w.flush()?;
    let full: Vec<Full> = runs
        .iter()
        .map(|d| Full {
            data: d,
            series: analysis::series(&d.samples, d.moments.failure, 100_000),
        })
        .collect();
    std::fs::write(out.join("runs.json"), serde_json::to_vec_pretty(&full)?)?;
    Ok(())
}

/// Medians per grid point over its repetitions.
pub fn summary(rows: &[Row]) -> String {
    let mut points: Vec<&str> = rows.iter().map(|r| r.point.as_str()).collect();
    points.dedup();
    let mut s = format!(
        "{:<30} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6}\n",
        "point", "runs", "detect", "restore", "replay", "normal", "RTO ms", "RTO max", "restore%", "lost", "dup"
    );
    for p in points {
        let of: Vec<&Row> = rows.iter().filter(|r| r.point == p).collect();
        let med = |f: &dyn Fn(&Row) -> Option<f64>| {
            let v: Vec<f64> = of.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let max_rto = of
            .iter()
            .filter_map(|r| r.rto_ms)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        s += &format!(
            "{:<30} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6}\n",
            p,
            of.len(),
            ms(med(&|r| r.detection_ms)),
            ms(med(&|r| r.restore_ms)),
            ms(med(&|r| r.replay_ms)),
            ms(med(&|r| r.normal_ms)),
            ms(med(&|r| r.rto_ms)),
            ms(max_rto),
            med(&|r| r.restore_share)
                .map(|x| format!("{:.0} %", 100.0 * x))
                .unwrap_or_else(|| "-".into()),
            of.iter().map(|r| r.lost).sum::<u64>(),
            of.iter().map(|r| r.duplicated).sum::<u64>(),
        );
    }
    s
}
