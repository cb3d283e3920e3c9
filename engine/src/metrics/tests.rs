//! The exposition's names and labels, named counters, and the endpoint's address rules.

use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

fn exporting() {
    registry::global().start_exporting();
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn records_are_exported_with_job_step_and_subtask_labels() {
    exporting();
    let m = OperatorMetrics::new("unit-records", "parse", 1);
    m.add_in(5);
    m.add_out(3);
    m.add_in(2);
    let text = registry::global().render();
    assert!(
        text.contains(r#"weir_records_in_total{job="unit-records",step="parse",subtask="1"} 7"#),
        "{text}"
    );
    assert!(text.contains(r#"weir_records_out_total{job="unit-records",step="parse",subtask="1"} 3"#));
    assert!(text.contains("# TYPE weir_records_in counter"));
    assert_eq!(
        (m.records_in(), m.records_out()),
        (7, 3),
        "the report's counters are kept"
    );
}

#[test]
fn a_new_attempt_continues_the_exported_counter() {
    exporting();
    OperatorMetrics::new("unit-attempts", "sum", 0).add_in(4);
    let second = OperatorMetrics::new("unit-attempts", "sum", 0);
    second.add_in(1);
    assert_eq!(second.records_in(), 1, "the report counts per attempt");
    assert!(registry::global()
        .render()
        .contains(r#"weir_records_in_total{job="unit-attempts",step="sum",subtask="0"} 5"#));
}

#[test]
fn named_counters_are_reported_and_exported() {
    exporting();
    let m = OperatorMetrics::new("unit-named", "window", 0);
    m.count("duplicates", 2);
    m.count("late_records", 1);
    m.count("duplicates", 3);
    m.count("dead_letters", 4);
    let counters = m.counters();
    assert_eq!(counters.get("duplicates"), Some(&5));
    assert_eq!(counters.get("late_records"), Some(&1));
    let text = registry::global().render();
    assert!(
        text.contains(r#"weir_user_counter_total{job="unit-named",step="window",subtask="0",name="duplicates"} 5"#),
        "{text}"
    );
    assert!(text.contains(r#"weir_late_records_total{job="unit-named",step="window",subtask="0"} 1"#));
    assert!(text.contains(r#"weir_dead_letters_total{job="unit-named",step="window",subtask="0"} 4"#));
}

#[test]
fn named_counters_from_many_threads_add_up() {
    let m = OperatorMetrics::default();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    m.count(if (i + t) % 2 == 0 { "a" } else { "b" }, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = m.counters();
    assert_eq!(
        c.get("a").copied().unwrap_or(0) + c.get("b").copied().unwrap_or(0),
        4000
    );
    assert_eq!(c.len(), 2);
}

#[test]
fn subtask_time_and_watermark_are_exported() {
    exporting();
    let mut clock = TaskClock::new("unit-clock", "source", 2);
    clock.wait_starts();
    std::thread::sleep(std::time::Duration::from_millis(20));
    clock.wait_ends();
    clock.backpressure_counter().inc_by(0.5);
    clock.watermark(1_000_000);
    clock.watermark(i64::MAX);
    let text = registry::global().render();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{job=\"unit-clock\"")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(line("weir_subtask_idle_seconds_total") >= 0.02);
    assert_eq!(line("weir_subtask_backpressured_seconds_total"), 0.5);
    assert_eq!(
        line("weir_watermark_seconds"),
        1000.0,
        "end of input is not a watermark"
    );
    assert!(line("weir_watermark_lag_seconds") > 1.0e9);
}

#[test]
fn job_metrics_show_the_last_checkpoint() {
    exporting();
    let j = JobMetrics::new("unit-job");
    j.checkpoint_completed(CompletedCheckpoint {
        id: 7,
        total: 0.25,
        alignment: 0.01,
        sync: 0.002,
        size_bytes: 4096,
        uploaded_bytes: 1024,
    });
    j.checkpoint_aborted();
    j.restarted();
    j.recovered(1.5, 42);
    let text = registry::global().render();
    for expected in [
        r#"weir_checkpoints_completed_total{job="unit-job"} 1"#,
        r#"weir_checkpoints_aborted_total{job="unit-job"} 1"#,
        r#"weir_checkpoint_duration_seconds{job="unit-job"} 0.25"#,
        r#"weir_checkpoint_size_bytes{job="unit-job"} 4096"#,
        r#"weir_checkpoint_uploaded_bytes_total{job="unit-job"} 1024"#,
        r#"weir_last_checkpoint_id{job="unit-job"} 7"#,
        r#"weir_restarts_total{job="unit-job"} 1"#,
        r#"weir_recovery_seconds{job="unit-job"} 1.5"#,
        r#"weir_recovery_replayed_records{job="unit-job"} 42"#,
        r#"weir_time_since_last_checkpoint_seconds{job="unit-job"} "#,
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
}

#[test]
fn the_endpoint_serves_metrics_and_an_address_is_served_once() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let served = serve(free).unwrap();
    assert_eq!(served, free);
    assert_eq!(serve(free).unwrap(), free, "a second job reuses the endpoint");
    OperatorMetrics::new("unit-endpoint", "map", 0).add_in(1);
    let answer = scrape(served);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("application/openmetrics-text"), "{answer}");
    assert!(answer.contains(r#"weir_records_in_total{job="unit-endpoint",step="map",subtask="0"} 1"#));
    assert!(answer.trim_end().ends_with("# EOF"));
}

#[test]
fn an_address_in_use_is_a_config_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = serve(addr).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Config);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
