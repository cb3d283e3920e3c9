//! Verification: what the job committed (read back from the output files) against what the
//! sequential model says it must have committed.
//!
//! [`verify`] takes nothing but an output directory: the workload it was produced from is in
//! the directory's manifest (`workload.json`). It checks that every payment was decided exactly
//! once with the model's decision, that refund results, fraud alerts and settlements are the
//! model's (each once), that no settlement window dropped a late record, that the job dropped
//! exactly the model's client retries (one committed record each: an input event the engine
//! delivered twice would be dropped by deduplication and show up only here, as an extra
//! retry), and that money is conserved: approved − refunded = settled, per merchant, per
//! window and in total.

use super::domain::{
    euros, thousands, Decision, DroppedRetry, FraudAlert, MerchantId, RefundResult, RefundStatus, Settlement, Status,
    ALERTS_DIR, DECISIONS_DIR, LATE_DIR, REFUNDS_DIR, RETRIES_DIR, SETTLEMENTS_DIR,
};
use super::generator::Workload;
use super::model::{self, Expected, SETTLEMENT_WINDOW_MS};
use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::path::Path;
use weir_engine::sink::read_committed_lines;

/// The manifest naming the workload an output directory belongs to.
pub const MANIFEST: &str = "workload.json";

/// Records `workload` as the one `output_dir` belongs to, or checks that it already does (a
/// resumed job must not mix two workloads' output).
pub fn claim_output_dir(output_dir: &Path, workload: &Workload) -> anyhow::Result<()> {
    let path = output_dir.join(MANIFEST);
    if path.exists() {
        let existing = read_manifest(output_dir)?;
        if existing != *workload {
            bail!(
                "{} holds the output of another workload ({} events, seed {}); use another --output-dir",
                output_dir.display(),
                existing.events,
                existing.seed
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(output_dir).with_context(|| format!("creating {}", output_dir.display()))?;
    let tmp = output_dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(workload)?)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The workload `output_dir` belongs to.
pub fn read_manifest(output_dir: &Path) -> anyhow::Result<Workload> {
    let path = output_dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is this a payments output directory?)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One output compared with the model, record by record (by identity).
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub name: &'static str,
    /// Records the model expects.
    pub expected: usize,
    /// Lines committed.
    pub committed: usize,
    /// Expected records committed (at least once) exactly as expected.
    pub matched: usize,
    /// Expected records committed with different content.
    pub mismatched: usize,
    /// Expected records not committed.
    pub missing: usize,
    /// Extra copies of committed records.
    pub duplicated: usize,
    /// Committed records the model does not know (unreadable lines included).
    pub unexpected: usize,
    /// Committed lines that are not a record of this output.
    pub unreadable: usize,
    /// The first few differences, for the report.
    pub examples: Vec<String>,
}

impl Comparison {
    pub fn clean(&self) -> bool {
        self.mismatched == 0 && self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }
}

/// Money conservation over the committed output.
#[derive(Debug, Clone, Default)]
pub struct Money {
    pub approved_cents: i64,
    pub refunded_cents: i64,
    pub settled_cents: i64,
    pub merchants: usize,
    pub merchants_unbalanced: usize,
    pub windows: usize,
    pub windows_unbalanced: usize,
}

impl Money {
    pub fn balanced(&self) -> bool {
        self.merchants_unbalanced == 0
            && self.windows_unbalanced == 0
            && self.approved_cents - self.refunded_cents == self.settled_cents
    }
}

/// The result of a verification.
#[derive(Debug, Clone)]
pub struct Audit {
    pub workload: Workload,
    pub payment_requests: u64,
    pub refund_requests: u64,
    /// Retried requests the model drops (payments, refunds).
    pub payment_retries: u64,
    pub refund_retries: u64,
    pub decisions: Comparison,
    pub refunds: Comparison,
    pub alerts: Comparison,
    pub settlements: Comparison,
    /// Dropped client retries against the model's: an extra one is an input event processed
    /// twice, a missing one an input event lost.
    pub retries: Comparison,
    /// Idempotency keys with a committed decision.
    pub keys_decided: usize,
    /// Idempotency keys decided more than once (extra decisions): double charges.
    pub double_decided: usize,
    /// Lines committed by the late-record sink (settlement windows that dropped a record).
    pub late_records: usize,
    pub money: Money,
    /// Committed business figures, for the summary.
    pub approved: usize,
    pub declined_by_reason: BTreeMap<String, usize>,
    pub refunds_accepted: usize,
    pub refunds_rejected_by_reason: BTreeMap<String, usize>,
    pub alerts_by_rule: BTreeMap<String, usize>,
}

impl Audit {
    fn comparisons(&self) -> [&Comparison; 5] {
        [
            &self.decisions,
            &self.refunds,
            &self.alerts,
            &self.settlements,
            &self.retries,
        ]
    }

    /// Whether the committed output is exactly the model's.
    pub fn passed(&self) -> bool {
        self.comparisons().iter().all(|c| c.clean())
            && self.double_decided == 0
            && self.late_records == 0
            && self.money.balanced()
    }

    /// RPO, lost side: requests whose outcome (decision, refund result or dropped retry) was
    /// never committed.
    pub fn events_lost(&self) -> usize {
        self.decisions.missing + self.refunds.missing + self.retries.missing
    }

    /// RPO, duplicated side: requests whose outcome was committed more than once (including
    /// retries decided as a second payment), and requests processed twice (extra dropped
    /// retries: a repeated input event that deduplication dropped).
    pub fn events_duplicated(&self) -> usize {
        self.decisions.duplicated
            + self.refunds.duplicated
            + self.double_decided
            + self.retries.duplicated
            + self.retries.unexpected
    }
}

/// Where the committed output is read from: the exactly-once file sinks' directories, or
/// (with `--kafka`) the output topics.
pub trait CommittedOutput {
    /// The committed records of output `name` (a directory or topic suffix), as JSON lines.
    fn lines(&self, name: &str) -> anyhow::Result<Vec<String>>;
}

/// The exactly-once file sinks' output directory.
pub struct OutputDir<'a>(pub &'a Path);

impl CommittedOutput for OutputDir<'_> {
    fn lines(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let dir = self.0.join(name);
        Ok(if dir.exists() {
            read_committed_lines(dir)?
        } else {
            Vec::new()
        })
    }
}

/// Reads the committed lines of one output and compares them with the expected records.
fn compare<T, K>(
    name: &'static str,
    lines: Vec<String>,
    expected: &[T],
    key: impl Fn(&T) -> K,
) -> anyhow::Result<(Comparison, Vec<T>)>
where
    T: DeserializeOwned + Serialize + PartialEq,
    K: Hash + Eq + fmt::Debug,
{
    let mut c = Comparison {
        name,
        expected: expected.len(),
        committed: lines.len(),
        ..Default::default()
    };
    let mut committed: Vec<T> = Vec::with_capacity(lines.len());
    for line in &lines {
        match serde_json::from_str::<T>(line) {
            Ok(t) => committed.push(t),
            Err(e) => {
                c.unreadable += 1;
                c.unexpected += 1;
                c.note(format!("unreadable line ({e}): {}", clip(line)));
            }
        }
    }
    let mut by_key: HashMap<K, Vec<usize>> = HashMap::with_capacity(committed.len());
    for (i, t) in committed.iter().enumerate() {
        by_key.entry(key(t)).or_default().push(i);
    }
    for e in expected {
        let k = key(e);
        match by_key.remove(&k) {
            None => {
                c.missing += 1;
                c.note(format!("missing {k:?}"));
            }
            Some(copies) => {
                if copies.iter().any(|&i| committed[i] == *e) {
                    c.matched += 1;
                } else {
                    c.mismatched += 1;
                    let got = serde_json::to_string(&committed[copies[0]]).unwrap_or_default();
                    let want = serde_json::to_string(e).unwrap_or_default();
                    c.note(format!(
                        "{k:?} differs:\n        committed {}\n        expected  {}",
                        clip(&got),
                        clip(&want)
                    ));
                }
                if copies.len() > 1 {
                    c.duplicated += copies.len() - 1;
                    c.note(format!("{k:?} committed {} times", copies.len()));
                }
            }
        }
    }
    for (k, copies) in by_key {
        c.unexpected += copies.len();
        c.note(format!("unexpected {k:?}"));
    }
    Ok((c, committed))
}

fn clip(s: &str) -> String {
    if s.len() <= 160 {
        s.to_string()
    } else {
        format!(
            "{}…",
            &s[..s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len())]
        )
    }
}

/// Verifies the committed output in `output_dir` against the model of its workload.
///
/// # Errors
/// If the directory is not a payments output directory or cannot be read. Differences are not
/// errors: they are in the returned [`Audit`] (see [`Audit::passed`]).
pub fn verify(output_dir: &Path) -> anyhow::Result<Audit> {
    verify_output(output_dir, &OutputDir(output_dir))
}

/// [`verify`] of output committed to `output` (the workload is read from `output_dir`).
pub fn verify_output(output_dir: &Path, output: &dyn CommittedOutput) -> anyhow::Result<Audit> {
    let workload = read_manifest(output_dir)?;
    let expected = model::expected(&workload);
    verify_against(output, workload, &expected)
}

/// [`verify`] with the model's result already computed.
pub fn verify_against(output: &dyn CommittedOutput, workload: Workload, expected: &Expected) -> anyhow::Result<Audit> {
    let (decisions, committed_decisions) = compare(
        "decisions",
        output.lines(DECISIONS_DIR)?,
        &expected.decisions,
        |d: &Decision| d.payment_id.clone(),
    )?;
    let (refunds, committed_refunds) = compare(
        "refund results",
        output.lines(REFUNDS_DIR)?,
        &expected.refunds,
        |r: &RefundResult| r.refund_id.clone(),
    )?;
    let (alerts, committed_alerts) = compare(
        "fraud alerts",
        output.lines(ALERTS_DIR)?,
        &expected.alerts,
        |a: &FraudAlert| a.payment_id.clone(),
    )?;
    let (settlements, committed_settlements) = compare(
        "settlements",
        output.lines(SETTLEMENTS_DIR)?,
        &expected.settlements,
        |s: &Settlement| (s.merchant, s.window_start),
    )?;
    let (retries, _) = compare(
        "dropped retries",
        output.lines(RETRIES_DIR)?,
        &expected.retries,
        |r: &DroppedRetry| (r.customer, r.idempotency_key.clone(), r.retry),
    )?;
    let late_records = output.lines(LATE_DIR)?.len();

    // Exactly once per logical payment: one decision per idempotency key.
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for d in &committed_decisions {
        *per_key.entry(d.idempotency_key.as_str()).or_default() += 1;
    }
    let double_decided = per_key.values().map(|n| n - 1).sum();
    let keys_decided = per_key.len();

    // Money: approved − refunded = settled, per merchant and window, from what was committed.
    let window = |t: i64| t - t.rem_euclid(SETTLEMENT_WINDOW_MS);
    let mut flows: BTreeMap<(MerchantId, i64), (i64, i64)> = BTreeMap::new();
    let mut money = Money::default();
    for d in committed_decisions.iter().filter(|d| d.status == Status::Approved) {
        flows.entry((d.merchant, window(d.event_time))).or_default().0 += d.amount_cents;
        money.approved_cents += d.amount_cents;
    }
    for r in committed_refunds.iter().filter(|r| r.status == RefundStatus::Accepted) {
        if let Some(m) = r.merchant {
            flows.entry((m, window(r.event_time))).or_default().0 -= r.amount_cents;
        }
        money.refunded_cents += r.amount_cents;
    }
    for s in &committed_settlements {
        flows.entry((s.merchant, s.window_start)).or_default().1 += s.net_cents;
        money.settled_cents += s.net_cents;
    }
    let mut per_merchant: BTreeMap<MerchantId, (i64, i64)> = BTreeMap::new();
    for (&(m, _), &(flow, settled)) in &flows {
        money.windows += 1;
        money.windows_unbalanced += usize::from(flow != settled);
        let e = per_merchant.entry(m).or_default();
        e.0 += flow;
        e.1 += settled;
    }
    money.merchants = per_merchant.len();
    money.merchants_unbalanced = per_merchant.values().filter(|(f, s)| f != s).count();

    let mut declined_by_reason = BTreeMap::new();
    for d in committed_decisions.iter().filter(|d| d.status == Status::Declined) {
        *declined_by_reason
            .entry(format!(
                "{:?}",
                d.reason.unwrap_or(super::domain::DeclineReason::SuspectedFraud)
            ))
            .or_default() += 1;
    }
    let mut refunds_rejected_by_reason = BTreeMap::new();
    for r in committed_refunds.iter().filter(|r| r.status == RefundStatus::Rejected) {
        let reason = r
            .reason
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "unspecified".into());
        *refunds_rejected_by_reason.entry(reason).or_default() += 1;
    }
    let mut alerts_by_rule = BTreeMap::new();
    for a in &committed_alerts {
        *alerts_by_rule.entry(format!("{:?}", a.rule)).or_default() += 1;
    }
    Ok(Audit {
        workload,
        payment_requests: expected.payment_requests,
        refund_requests: expected.refund_requests,
        payment_retries: expected.payment_retries,
        refund_retries: expected.refund_retries,
        approved: committed_decisions
            .iter()
            .filter(|d| d.status == Status::Approved)
            .count(),
        declined_by_reason,
        refunds_accepted: committed_refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Accepted)
            .count(),
        refunds_rejected_by_reason,
        alerts_by_rule,
        decisions,
        refunds,
        alerts,
        settlements,
        retries,
        keys_decided,
        double_decided,
        late_records,
        money,
    })
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: usize| thousands(v as u64);
        writeln!(
            f,
            "verification: committed output vs. a sequential model of the same {} events (seed {})",
            thousands(self.workload.events),
            self.workload.seed
        )?;
        writeln!(
            f,
            "  {:<16} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}",
            "output", "expected", "committed", "matched", "mismatched", "missing", "duplicated", "unexpected"
        )?;
        for c in self.comparisons() {
            writeln!(
                f,
                "  {:<16} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}",
                c.name,
                n(c.expected),
                n(c.committed),
                n(c.matched),
                n(c.mismatched),
                n(c.missing),
                n(c.duplicated),
                n(c.unexpected)
            )?;
        }
        writeln!(
            f,
            "  {:<16} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>10}",
            "late records",
            0,
            n(self.late_records),
            "-",
            "-",
            "-",
            "-",
            n(self.late_records)
        )?;
        for c in self.comparisons() {
            if c.unreadable > 0 {
                writeln!(f, "  {}: {} unreadable lines", c.name, n(c.unreadable))?;
            }
            for e in &c.examples {
                writeln!(f, "  {}: {e}", c.name)?;
            }
        }
        writeln!(
            f,
            "  exactly once: {} idempotency keys decided, {} of them twice or more; {} client retries dropped (model: {})",
            n(self.keys_decided),
            n(self.double_decided),
            n(self.retries.committed),
            thousands(self.payment_retries + self.refund_retries)
        )?;
        let m = &self.money;
        writeln!(
            f,
            "  money: approved {} − refunded {} {} settled {}\n         balanced for {}/{} merchants and {}/{} merchant windows",
            euros(m.approved_cents),
            euros(m.refunded_cents),
            if m.approved_cents - m.refunded_cents == m.settled_cents { "=" } else { "≠" },
            euros(m.settled_cents),
            n(m.merchants - m.merchants_unbalanced),
            n(m.merchants),
            n(m.windows - m.windows_unbalanced),
            n(m.windows)
        )?;
        writeln!(
            f,
            "  RPO: {} events lost, {} events duplicated",
            n(self.events_lost()),
            n(self.events_duplicated())
        )?;
        if self.passed() {
            write!(
                f,
                "verification PASSED: every payment decided exactly once, money conserved"
            )
        } else {
            write!(f, "verification FAILED: the committed output differs from the model")
        }
    }
}
