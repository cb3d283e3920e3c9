//! Figures computed from the sampled progress of a run, with the definitions of
//! `PaymentSumJob.java` (see `shared/peer/flink/README.md`), and the machine's load.

/// Progress samples: `(epoch ms, records processed)`, in time order.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// The samples.
    pub samples: Vec<(u64, u64)>,
}

impl Timeline {
    /// First sample time at which the counter reached `target` (linear interpolation).
    pub fn crossing(&self, target: u64) -> u64 {
        let s = &self.samples;
        for i in 1..s.len() {
            if s[i].1 >= target {
                let dc = s[i].1 - s[i - 1].1;
                if dc == 0 {
                    return s[i].0;
                }
                return s[i - 1].0 + (s[i].0 - s[i - 1].0) * (target - s[i - 1].1) / dc;
            }
        }
        s.last().map(|x| x.0).unwrap_or(0)
    }

    /// The counter at time `t` (linear interpolation between samples).
    pub fn value_at(&self, t: u64) -> f64 {
        let s = &self.samples;
        let Some(first) = s.first() else { return 0.0 };
        if t <= first.0 {
            return first.1 as f64;
        }
        for i in 1..s.len() {
            if s[i].0 >= t {
                let dt = s[i].0 - s[i - 1].0;
                if dt == 0 {
                    return s[i].1 as f64;
                }
                return s[i - 1].1 as f64 + (s[i].1 - s[i - 1].1) as f64 * (t - s[i - 1].0) as f64 / dt as f64;
            }
        }
        s.last().map(|x| x.1 as f64).unwrap_or(0.0)
    }

    /// 80 % of `events` over the time between the 10 % and 90 % marks.
    pub fn steady_eps(&self, events: u64) -> f64 {
        let t10 = self.crossing(events / 10);
        let t90 = self.crossing(events * 9 / 10);
        (events * 8 / 10) as f64 * 1000.0 / (t90.saturating_sub(t10)).max(1) as f64
    }

    /// The rate over the last <= 10 s before the failure at `fail_ms`, skipping the first
    /// second of the run (NaN when there is no such window).
    pub fn pre_failure_eps(&self, first_record_ms: u64, fail_ms: u64) -> f64 {
        let w = 10_000i64.min(fail_ms as i64 - first_record_ms as i64 - 1000);
        if w <= 0 {
            return f64::NAN;
        }
        (self.value_at(fail_ms) - self.value_at(fail_ms - w as u64)) * 1000.0 / w as f64
    }

    /// The start of the first 500 ms window, starting at a sample at or after `resumed_ms`,
    /// whose rate is at least 90 % of `pre_eps`.
    pub fn back_to_rate(&self, resumed_ms: u64, pre_eps: f64) -> Option<u64> {
        let end = self.samples.last()?.0;
        for &(t, n) in &self.samples {
            if t < resumed_ms {
                continue;
            }
            if t + 500 > end {
                break;
            }
            let r = (self.value_at(t + 500) - n as f64) * 2.0;
            if r >= 0.9 * pre_eps {
                return Some(t);
            }
        }
        None
    }
}

/// The median (the element at the rounded middle rank, as `ckpt_stats.py`) and the maximum.
pub fn p50_max(mut xs: Vec<f64>) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let mid = ((xs.len() - 1) as f64 * 0.5).round() as usize;
    Some((xs[mid], xs[xs.len() - 1]))
}

/// CPU ticks: all cores, busy, and this process (from `/proc`), or `None` off Linux.
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    all: u64,
    busy: u64,
    this_process: u64,
}

impl CpuTicks {
    /// Reads the counters now.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let all: u64 = cpu.iter().sum();
        let idle = cpu.get(3)? + cpu.get(4)?;
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = me[me.rfind(')')? + 2..].split(' ').collect();
        let this_process = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTicks {
            all,
            busy: all - idle,
            this_process,
        })
    }

    /// Shares of the whole machine used by this process and by anything else since `earlier`,
    /// in percent.
    pub fn shares_since(&self, earlier: &CpuTicks) -> Option<(f64, f64)> {
        let all = self.all.checked_sub(earlier.all).filter(|a| *a > 0)? as f64;
        let busy = (self.busy - earlier.busy) as f64 / all * 100.0;
        let me = (self.this_process - earlier.this_process) as f64 / all * 100.0;
        Some((me, (busy - me).max(0.0)))
    }
}

/// Peak resident memory of this process, MiB.
pub fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_and_rates_interpolate() {
        let t = Timeline {
            samples: vec![(0, 0), (1000, 1000), (2000, 3000)],
        };
        assert_eq!(t.crossing(500), 500);
        assert_eq!(t.crossing(2000), 1500);
        assert_eq!(t.value_at(1500), 2000.0);
        assert_eq!(t.back_to_rate(0, 2000.0), Some(1000));
        assert_eq!(p50_max(vec![3.0, 1.0, 2.0]), Some((2.0, 3.0)));
    }
}
