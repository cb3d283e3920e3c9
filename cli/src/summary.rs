//! Human-readable summaries of the status API's JSON answers.

use serde_json::Value;
use std::fmt::Write as _;

fn ms(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        Some(v) => format!("{v:.1} ms"),
    }
}

fn rate(v: &Value) -> String {
    let r = v.as_f64().unwrap_or(0.0);
    if r >= 1e6 {
        format!("{:.1}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return "-".into() };
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn uptime(v: &Value) -> String {
    let s = v.as_u64().unwrap_or(0) / 1000;
    match s {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `weir status`.
pub(crate) fn status(s: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {}: {} (attempt {}, {} restarts, up {}, {} records read)",
        str_of(&s["job"]),
        str_of(&s["state"]),
        s["attempt"],
        s["restarts"],
        uptime(&s["uptime_ms"]),
        s["source_records"]
    );
    if let Some(e) = s["error"].as_str() {
        let _ = writeln!(out, "error: {e}");
    }
    let rpo = if s["checkpointing"].as_bool() == Some(true) {
        "RPO 0 (exactly-once checkpoints)"
    } else {
        "no checkpoint storage: a failure fails the job"
    };
    let last = match s["last_checkpoint"].as_u64() {
        Some(id) => format!(
            "last completed checkpoint {id}, {} ago",
            ms(&s["since_last_checkpoint_ms"])
        ),
        None => "no completed checkpoint yet".into(),
    };
    let rto = list(&s["recoveries"])
        .last()
        .map(|r| format!("last recovery RTO {}", ms(&r["detect_to_running_ms"])))
        .unwrap_or_else(|| "no recovery".into());
    let _ = writeln!(out, "recovery: {rpo}; {last}; {rto}");
    let _ = writeln!(
        out,
        "\n{:<28} {:<8} {:>4} {:>10} {:>10} {:>14} {:>14} {:>6}  WATERMARK",
        "STEP", "KIND", "PAR", "IN", "OUT", "RECORDS IN", "RECORDS OUT", "BP"
    );
    for st in list(&s["steps"]) {
        let watermark = match st["watermark"].as_i64() {
            Some(i64::MAX) => "end of input".into(),
            Some(w) => w.to_string(),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<28} {:<8} {:>4} {:>10} {:>10} {:>14} {:>14} {:>5.0}%  {watermark}",
            str_of(&st["name"]),
            str_of(&st["kind"]),
            str_of(&st["parallelism"]),
            rate(&st["rate_in"]),
            rate(&st["rate_out"]),
            str_of(&st["records_in"]),
            str_of(&st["records_out"]),
            st["backpressure"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    let edges: Vec<String> = list(&s["edges"])
        .iter()
        .map(|e| {
            format!(
                "{} -[{}]-> {}",
                str_of(&e["from"]),
                str_of(&e["partitioning"]),
                str_of(&e["to"])
            )
        })
        .collect();
    if !edges.is_empty() {
        let _ = writeln!(out, "edges: {}", edges.join(", "));
    }
    let checkpoints = list(&s["checkpoints"]);
    let count = |status: &str| checkpoints.iter().filter(|c| c["status"] == status).count();
    let _ = writeln!(
        out,
        "\ncheckpoints (latest {}): {} completed, {} aborted, {} failed, {} in progress",
        checkpoints.len(),
        count("completed"),
        count("aborted"),
        count("failed"),
        count("in_progress")
    );
    for r in list(&s["recoveries"]) {
        let _ = writeln!(
            out,
            "recovery (attempt {}): checkpoint {}, RTO {} (cancel {}, restore {}), {} records replayed",
            r["attempt"],
            str_of(&r["checkpoint"]),
            ms(&r["detect_to_running_ms"]),
            ms(&r["cancel_ms"]),
            ms(&r["restore_ms"]),
            r["records_replayed"]
        );
    }
    let workers = list(&s["workers"]);
    if !workers.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<6} {:<22} {:>8} {:>5} {:>6} {:>14}",
            "WORKER", "ADDRESS", "PID", "SLOTS", "ALIVE", "HEARTBEAT"
        );
        for w in workers {
            let _ = writeln!(
                out,
                "{:<6} {:<22} {:>8} {:>5} {:>6} {:>11} ago",
                str_of(&w["id"]),
                str_of(&w["address"]),
                str_of(&w["pid"]),
                str_of(&w["slots"]),
                if w["alive"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                ms(&w["last_heartbeat_ms"])
            );
        }
    }
    out
}

/// `weir checkpoints --job URL`.
pub(crate) fn checkpoints(history: &Value) -> String {
    let mut out = format!(
        "{:>8} {:<20} {:<12} {:>10} {:>10} {:>10} {:>10} {:>10}  NOTE\n",
        "ID", "KIND", "STATUS", "DURATION", "SIZE", "UPLOADED", "ALIGN", "SYNC"
    );
    for c in list(history) {
        let _ = writeln!(
            out,
            "{:>8} {:<20} {:<12} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
            str_of(&c["id"]),
            str_of(&c["kind"]),
            str_of(&c["status"]),
            ms(&c["duration_ms"]),
            bytes(&c["state_bytes"]),
            bytes(&c["uploaded_bytes"]),
            ms(&c["alignment_ms"]),
            ms(&c["sync_ms"]),
            c["failure"].as_str().unwrap_or("")
        );
    }
    out
}

/// `weir savepoint`.
pub(crate) fn savepoint(sp: &Value) -> String {
    format!(
        "savepoint {} written to {} ({} files, {})\n",
        sp["id"],
        str_of(&sp["location"]),
        sp["files"],
        bytes(&sp["bytes"])
    )
}
