//! A PNG of one run: throughput (top) and latency (bottom) around the failure, with the
//! recovery phases shaded. Text needs a TrueType font, loaded at run time from Debian's
//! `fonts-dejavu-core` (or `WEIR_PLOT_FONT`); without one the plot is drawn unlabeled.

use super::analysis;
use super::run::RunData;
use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a font once; false (with a warning printed once) if none could be loaded.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("WEIR_PLOT_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()))
            .collect();
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        eprintln!(
            "recovery: no TrueType font found ({}); plots are drawn without labels. \
             Install Debian's fonts-dejavu-core or set WEIR_PLOT_FONT to a .ttf file.",
            candidates.join(", ")
        );
        false
    })
}

/// Phase bands: (name, start µs, end µs, colour).
fn bands(d: &RunData) -> Vec<(&'static str, u64, u64, RGBColor)> {
    let m = &d.moments;
    let p = &d.phases;
    let mut out = Vec::new();
    let mut push = |name, a: Option<u64>, b: Option<u64>, c| {
        if let (Some(a), Some(b)) = (a, b) {
            out.push((name, a, b, c));
        }
    };
    push("detection", Some(m.failure), m.stopped, RGBColor(230, 85, 13));
    push("restore", m.stopped, m.running, RGBColor(253, 174, 107));
    push("replay", m.running, p.caught_up_us, RGBColor(158, 202, 225));
    push("back to normal", p.caught_up_us, p.normal_us, RGBColor(199, 233, 192));
    out
}

/// Draws `d` into `path` (PNG, 1000×620).
pub fn draw(d: &RunData, path: &Path) -> anyhow::Result<()> {
    let labels = font_ready();
    let t0 = d.moments.failure;
    let series = analysis::series(&d.samples, t0, 100_000);
    let before = 3.0;
    let end_s = d
        .phases
        .normal_us
        .map(|n| (n.saturating_sub(t0)) as f64 / 1e6 + analysis::NORMAL_WINDOW_US as f64 / 1e6 + 1.0)
        .unwrap_or_else(|| series.last().map(|s| s.0).unwrap_or(10.0))
        .max(3.0);
    let shown: Vec<_> = series
        .iter()
        .filter(|s| s.0 >= -before && s.0 <= end_s)
        .copied()
        .collect();
    let max_eps = shown.iter().map(|s| s.1).fold(d.phases.baseline_eps, f64::max) * 1.1;
    let max_lat = shown.iter().map(|s| s.2).filter(|l| l.is_finite()).fold(1.0, f64::max) * 1.1;
    let rel = |us: u64| (us as f64 - t0 as f64) / 1e6;

    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(400);
    let title = format!(
        "{}: RTO {} (failure at 0 s)",
        d.config.slug(),
        d.phases
            .rto_ms
            .map(|r| format!("{r:.0} ms"))
            .unwrap_or_else(|| "not reached".into())
    );
    let mut b = ChartBuilder::on(&top);
    b.margin(10).x_label_area_size(if labels { 30 } else { 0 });
    b.y_label_area_size(if labels { 70 } else { 0 });
    if labels {
        b.caption(&title, ("sans-serif", 20));
    }
    let mut chart = b
        .build_cartesian_2d(-before..end_s, 0.0..max_eps)
        .map_err(|e| anyhow!("{e}"))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.y_desc("events/s")
            .x_desc("s since failure")
            .y_label_formatter(&|v| format!("{v:.0}"));
    } else {
        mesh.disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| anyhow!("{e}"))?;
    for (name, a, b, c) in bands(d) {
        let r = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(rel(a), 0.0), (rel(b), max_eps)],
                c.mix(0.45).filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        if labels {
            r.label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
        }
    }
    let base = d.phases.baseline_eps;
    for (f, style) in [
        (1.0, BLACK.stroke_width(1)),
        (0.9, BLACK.mix(0.4).stroke_width(1)),
        (1.1, BLACK.mix(0.4).stroke_width(1)),
    ] {
        chart
            .draw_series(LineSeries::new([(-before, base * f), (end_s, base * f)], style))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let line = chart
        .draw_series(LineSeries::new(shown.iter().map(|s| (s.0, s.1)), BLUE.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?;
    if labels {
        line.label("throughput (100 ms)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }

    let mut b = ChartBuilder::on(&bottom);
    b.margin(10).x_label_area_size(if labels { 35 } else { 0 });
    b.y_label_area_size(if labels { 70 } else { 0 });
    let mut chart = b
        .build_cartesian_2d(-before..end_s, (0.1..max_lat).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.y_desc("latency ms (log; line: normal limit)")
            .x_desc("s since failure")
            .y_label_formatter(&|v| format!("{v}"));
    } else {
        mesh.disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| anyhow!("{e}"))?;
    for (_, a, b, c) in bands(d) {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(rel(a), 0.1), (rel(b), max_lat)],
                c.mix(0.45).filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    let limit = analysis::latency_limit(d.phases.baseline_latency_ms);
    chart
        .draw_series(LineSeries::new(
            [(-before, limit), (end_s, limit)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(LineSeries::new(
            shown
                .iter()
                .filter(|s| s.2.is_finite() && s.2 > 0.0)
                .map(|s| (s.0, s.2)),
            RED.stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
