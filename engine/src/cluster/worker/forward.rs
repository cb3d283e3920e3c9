//! A worker's report to the master: the events of its subtasks, in order, with every
//! checkpoint acknowledgement's snapshot stored in the checkpoint storage first (the master
//! only writes the checkpoint's metadata). The stored snapshot stays on the worker as its
//! local copy, for a restore of the same subtask here (local recovery).
//!
//! # After a crash
//! Files stored for a checkpoint that never completes are not referenced by any metadata;
//! retention removes them. A snapshot that could not be stored here is reported as staged, and
//! the master stores it if it can reach the staging directory (one machine) or aborts the
//! checkpoint. Events the master does not take (it restarted, or gave this worker up) cancel
//! the attempt here.

use crate::checkpoint::upload::store_subtask;
use crate::cluster::protocol::Pulse;
use crate::cluster::rpc;
use crate::cluster::worker::shared::WorkerCore;
use crate::runtime::events::TaskEvent;
use crate::state::backend::dir_name;
use crate::{Error, Result};
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Most events in one report.
const BATCH: usize = 256;
/// How long one report call may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts forwarding attempt `attempt`'s events from `events` until every sender is gone.
pub(crate) fn spawn(core: Arc<WorkerCore>, attempt: u32, events: Receiver<TaskEvent>) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("weir-report-{attempt}"))
        .spawn(move || forward(&core, attempt, &events))
        .map(|_| ())
        .map_err(|e| Error::io("spawning the report thread", e))
}

fn forward(core: &WorkerCore, attempt: u32, events: &Receiver<TaskEvent>) {
    while let Ok(first) = events.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for e in &mut batch {
            if let TaskEvent::Ack { ack } = e {
                store(core, ack);
            }
        }
        let Some(master) = core.master() else { continue };
        let call = master
            .client
            .report(rpc::within(REPORT_TIMEOUT), core.me, master.session, attempt, batch);
        match rpc::block_on(&core.rt, call) {
            Ok(Pulse::Known) => {}
            Ok(Pulse::Unknown) => core.cancel(Some(attempt)),
            // The heartbeats decide whether the master is gone.
            Err(e) => tracing::warn!(worker = core.me, attempt, error = %e, "reporting to the master failed"),
        }
    }
}

/// Stores `ack`'s snapshots; on failure they stay staged for the master to store.
fn store(core: &WorkerCore, ack: &mut crate::checkpoint::ack::CheckpointAck) {
    let Some(storage) = core.storage() else { return };
    let id = ack.barrier.id;
    let reusable = core.reusable();
    let chk = core.snapshot_root().join(format!("chk-{id}"));
    for s in &mut ack.operators {
        if s.snapshot.keyed_files.is_empty() && s.snapshot.operator_state.is_none() {
            continue;
        }
        let staged = chk.join(dir_name(&s.operator)).join(s.subtask.to_string());
        match store_subtask(
            storage.as_ref(),
            id,
            &s.operator,
            s.subtask,
            &s.snapshot,
            &staged,
            &reusable,
        ) {
            Ok(stored) => {
                s.stored = Some(stored);
                s.snapshot.operator_state = None;
                // Kept as this worker's local copy until a newer checkpoint completes.
                core.keep_local_copy(id, &s.operator, s.subtask, &staged);
            }
            Err(e) => {
                tracing::warn!(worker = core.me, checkpoint = id.get(), operator = %s.operator, subtask = s.subtask, error = %e, "storing a snapshot failed; leaving it staged");
            }
        }
    }
}
