//! The cross-site disaster-recovery drill (`--dr-drill`): the job runs at site A with its
//! checkpoints replicated to site B; mid-run site A is destroyed (every process of the job
//! killed with SIGKILL, site A's checkpoint storage and working state deleted); the job is
//! started at site B from the newest replicated checkpoint and runs to the end. The audit then
//! judges the committed output.
//!
//! # What holds, and why
//! - **RPO in checkpoints and seconds** is the replica's lag at the moment of the disaster:
//!   checkpoints completed at site A that were not yet in the replica. Those are lost as
//!   recovery points, not as data.
//! - **RPO in events is 0**: the sinks commit a checkpoint only once the replica holds it
//!   (`ReplicationMode::BeforeCommit`), so no committed output is ahead of the replica; the
//!   source is replayable (the generator, or Kafka) from the replicated checkpoint's
//!   positions, so every event after it is read again at site B, and the exactly-once sinks
//!   discard what site A had staged but not committed. The audit proves it: 0 lost, 0
//!   duplicated.
//! - **RTO** is disaster → every subtask running at site B (state restored from the replica).

use super::domain::thousands;
use super::drill::{child_command, listen, log_tail, pids_file, Heard, Message, ReplicaLag};
use super::pipeline::{latest_checkpoint, JobSettings};
use super::report::{ProgressView, Snapshot};
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use weir_engine::message::CheckpointId;
use weir_engine::source::generator::mix;

/// What the drill measured.
#[derive(Debug, Clone)]
pub struct DrOutcome {
    /// Site A's and site B's checkpoint storage.
    pub site_a: String,
    pub site_b: String,
    /// Events site A had read when it was destroyed.
    pub disaster_at: u64,
    /// Site A's newest completed checkpoint then.
    pub newest_at_a: Option<CheckpointId>,
    /// The replica's newest checkpoint and lag then, as site A last reported them.
    pub lag: Option<ReplicaLag>,
    /// The checkpoint site B restored, and the input position it resumed from.
    pub restored_at_b: Option<CheckpointId>,
    pub resumed_at: u64,
    /// Disaster → every subtask running at site B.
    pub rto: Duration,
    /// Disaster → site A destroyed (processes killed, storage and state deleted).
    pub destroy: Duration,
    /// The whole drill.
    pub wall: Duration,
}

/// Runs the drill: `a` is the job at site A (with its replica), `b` the same job at site B.
pub fn run(a: &JobSettings, b: &JobSettings, work_dir: &Path, view: &ProgressView) -> anyhow::Result<DrOutcome> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("locating this executable")?;
    let events = a.workload.events;
    // The disaster strikes at a seeded point between 30 % and 60 % of the input.
    let at = events * 3 / 10 + mix(a.workload.seed, 0xD15A) % (events * 3 / 10).max(1);
    view.log(format!(
        "site A runs the job (checkpoints {}, replicated to {}); the disaster strikes at event {}",
        a.checkpoint_location,
        b.checkpoint_location,
        thousands(at)
    ));
    let log = work_dir.join("site-a.log");
    let mut child = child_command(&exe, a, &[], &log)?
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let rx = listen(&mut child);
    // Assigned by the progress message that triggers the disaster.
    let mut position: u64;
    let (mut newest_at_a, mut lag) = (None, None::<ReplicaLag>);
    loop {
        match recv(&rx, &log)? {
            Heard::Line(
                Message::Progress {
                    position: p,
                    last_checkpoint,
                    replica,
                    running,
                    restarts,
                    checkpoint_age_ms,
                    ..
                },
                _,
            ) => {
                position = p;
                newest_at_a = last_checkpoint.or(newest_at_a);
                lag = replica.or(lag);
                view.update(&Snapshot {
                    position,
                    processed: p,
                    checkpoint: last_checkpoint.zip(checkpoint_age_ms.map(Duration::from_millis)),
                    restarts,
                    running,
                });
                if position >= at && lag.is_some_and(|l| l.replicated.is_some()) {
                    break;
                }
            }
            Heard::Line(Message::Report { .. }, _) | Heard::Eof(_) => {
                bail!("the job at site A ended before the disaster; run with more --events")
            }
            Heard::Line(..) | Heard::Garbage(_) => {}
        }
    }
    // The disaster: every process of the job at site A dies at once, then its storage and
    // working state are deleted.
    let disaster = Instant::now();
    let cluster = a
        .workers
        .and_then(|_| weir_engine::cluster::ClusterPids::read(&pids_file(&log)).ok());
    child.kill().context("killing site A")?;
    for pid in cluster
        .iter()
        .flat_map(|c| std::iter::once(c.master).chain(c.workers.values().copied()))
    {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let _ = child.wait();
    weir_object_storage::destroy(&a.checkpoint_location)
        .with_context(|| format!("deleting site A's checkpoint storage {}", a.checkpoint_location))?;
    if let Some(state) = &a.state_dir {
        let _ = std::fs::remove_dir_all(state);
    }
    let destroy = disaster.elapsed();
    view.log(format!(
        "DISASTER at event {}: site A destroyed in {} ms (processes killed, {} and its state deleted); \
         newest checkpoint at site A {}, in the replica {}",
        thousands(position),
        destroy.as_millis(),
        a.checkpoint_location,
        show(newest_at_a),
        show(lag.and_then(|l| l.replicated))
    ));
    // Site B takes over from the replica.
    let restorable = latest_checkpoint(b.checkpoint_storage.as_ref());
    if restorable.is_none() {
        bail!(
            "site B's storage {} holds no checkpoint to start from",
            b.checkpoint_location
        );
    }
    let log = work_dir.join("site-b.log");
    let mut child = child_command(&exe, b, &[], &log)?
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let rx = listen(&mut child);
    let (mut restored_at_b, mut resumed_at, mut rto) = (None, 0, None);
    loop {
        match recv(&rx, &log)? {
            Heard::Line(
                Message::Started {
                    checkpoint, position, ..
                },
                _,
            ) => {
                restored_at_b = checkpoint;
                resumed_at = position;
            }
            Heard::Line(
                Message::Progress {
                    position,
                    source_records,
                    running,
                    restarts,
                    last_checkpoint,
                    checkpoint_age_ms,
                    ..
                },
                when,
            ) => {
                if running && rto.is_none() {
                    let r = when.duration_since(disaster);
                    rto = Some(r);
                    view.log(format!(
                        "site B runs from checkpoint {} (event {}) {} ms after the disaster",
                        show(restored_at_b),
                        thousands(resumed_at),
                        r.as_millis()
                    ));
                }
                view.update(&Snapshot {
                    position,
                    processed: source_records,
                    checkpoint: last_checkpoint.zip(checkpoint_age_ms.map(Duration::from_millis)),
                    restarts,
                    running,
                });
            }
            Heard::Line(Message::Report { .. }, _) => break,
            Heard::Eof(_) => {
                let status = child.wait()?;
                bail!(
                    "the job at site B ended without a report ({status}); last lines of {}:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            Heard::Line(..) | Heard::Garbage(_) => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "the job at site B failed ({status}); last lines of {}:\n{}",
            log.display(),
            log_tail(&log)
        );
    }
    Ok(DrOutcome {
        site_a: a.checkpoint_location.clone(),
        site_b: b.checkpoint_location.clone(),
        disaster_at: position,
        newest_at_a,
        lag,
        restored_at_b,
        resumed_at,
        rto: rto.unwrap_or_default(),
        destroy,
        wall: started.elapsed(),
    })
}

/// The next message of a child, failing after two minutes of silence.
fn recv(rx: &mpsc::Receiver<Heard>, log: &Path) -> anyhow::Result<Heard> {
    rx.recv_timeout(Duration::from_secs(120)).map_err(|_| {
        anyhow::anyhow!(
            "the job said nothing for 2 minutes; last lines of {}:\n{}",
            log.display(),
            log_tail(log)
        )
    })
}

fn show(id: Option<CheckpointId>) -> String {
    id.map_or_else(|| "none".to_string(), |id| id.to_string())
}

/// The drill's report: RPO and RTO, with the audit's verdict on lost and duplicated events.
pub fn report(d: &DrOutcome, lost: usize, duplicated: usize) -> String {
    let mut out = String::from("disaster-recovery drill (cross-site)\n");
    out.push_str(&format!("  site A: {}\n  site B: {} (replica)\n", d.site_a, d.site_b));
    out.push_str(&format!(
        "  disaster at event {}: site A's newest checkpoint {}, the replica's {}\n",
        thousands(d.disaster_at),
        show(d.newest_at_a),
        show(d.lag.and_then(|l| l.replicated))
    ));
    if let Some(l) = d.lag {
        out.push_str(&format!(
            "  RPO (recovery points): {} checkpoint(s), {:.2} s behind site A\n",
            l.checkpoints_behind, l.seconds_behind
        ));
    }
    out.push_str(&format!(
        "  RPO (events): {} read again at site B from checkpoint {} (event {}); lost {lost}, duplicated {duplicated}\n",
        thousands(d.disaster_at.saturating_sub(d.resumed_at)),
        show(d.restored_at_b),
        thousands(d.resumed_at)
    ));
    out.push_str(&format!(
        "  RTO: {} ms from the disaster to the job running at site B (site A destroyed in {} ms)\n",
        d.rto.as_millis(),
        d.destroy.as_millis()
    ));
    out.push_str(&format!("  drill wall time: {:.1} s", d.wall.as_secs_f64()));
    out
}
