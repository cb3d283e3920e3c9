//! The operator contract the runtime drives, and the built-in operators.
//!
//! [`OperatorCore`] is type-erased: batches arrive as [`ErasedBatch`] and typed wrappers downcast
//! them once per batch. The runtime calls one operator of a subtask at a time, so everything an
//! operator emits has been delivered downstream before the runtime calls it again; in particular
//! nothing is in flight inside a chain when a barrier is handled.

pub mod async_io;
pub mod broadcast;
pub(crate) mod fallible;
pub mod join;
pub(crate) mod keyed_core;
pub mod keyed_process;
pub mod rolling;
pub(crate) mod side_outputs;
pub mod sink;
pub mod stateless;
pub(crate) mod user_functions;
pub mod watermarks;
pub(crate) mod window;

use crate::data::{ErasedBatch, Timestamp};
use crate::message::{Barrier, CheckpointId};
use crate::metrics::OperatorMetrics;
use crate::state::{KeyGroupRange, KeyedStore};
pub use crate::time::ChannelWatermark;
use crate::Result;

/// Something an operator emitted, in order.
pub enum Emitted {
    /// Records.
    Batch(Box<dyn ErasedBatch>),
    /// The operator's output watermark advanced.
    Watermark(Timestamp),
    /// The operator's output became idle (`true`) or active (`false`).
    Idle(bool),
}

/// Collects what an operator emits during one call.
#[derive(Default)]
pub struct Emitter {
    pub(crate) items: Vec<Emitted>,
    pub(crate) records: u64,
}

impl Emitter {
    /// Emits a batch (dropped if empty).
    pub fn batch(&mut self, batch: Box<dyn ErasedBatch>) {
        if !batch.is_empty() {
            self.records += batch.len() as u64;
            self.items.push(Emitted::Batch(batch));
        }
    }
    /// Emits a watermark.
    pub fn watermark(&mut self, wm: Timestamp) {
        self.items.push(Emitted::Watermark(wm));
    }
    /// Emits an idleness change.
    pub fn idle(&mut self, idle: bool) {
        self.items.push(Emitted::Idle(idle));
    }
}

/// Where an operator subtask runs: identity, parallelism and its keyed state, if any.
pub struct OperatorContext {
    /// The job's name.
    pub job: String,
    /// The operator's stable name.
    pub operator: String,
    /// This subtask's index.
    pub subtask: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// Number of key groups of the job.
    pub max_parallelism: usize,
    /// The attempt this subtask belongs to (1 for the job's first, one more per restart).
    pub attempt: u32,
    /// Key groups owned by this subtask.
    pub key_groups: KeyGroupRange,
    /// The keyed store, for keyed operators (opened by the runtime before `open`).
    pub store: Option<Box<dyn KeyedStore>>,
    /// Counters reported per operator.
    pub metrics: OperatorMetrics,
    /// Operator state restored from a checkpoint (what `snapshot` returned), if any: this
    /// subtask's own, when the checkpoint had the operator at the same parallelism.
    pub restored_state: Option<Vec<u8>>,
    /// After a restore at another parallelism (then `restored_state` is `None`): the operator
    /// state of old subtasks, by their index in the checkpoint. A sink subtask gets those it
    /// takes over (see [`state::rescale::operator_state_owner`](crate::state::rescale::operator_state_owner));
    /// any other operator gets every old subtask's and combines them. A function step (whose
    /// operator lists may go to every subtask) gets every old subtask's at any parallelism,
    /// next to its own in `restored_state` when it kept its parallelism.
    pub rescaled_state: Vec<(usize, Vec<u8>)>,
    /// The checkpoint the job restored, if any (also for a subtask that has no state in it).
    pub restored_checkpoint: Option<crate::message::CheckpointId>,
    /// The job's checkpoint interval and timeout (`None`: checkpointing is off).
    pub checkpoint_timing: Option<crate::recovery::CheckpointTiming>,
    /// The job's fail points: an operator that injects failures for tests checks them.
    pub fail_points: crate::fail::FailPoints,
    /// How to open `store`: the subtask's thread does it before `open`.
    pub(crate) store_opener: Option<StoreOpener>,
    /// The restore rules for output an earlier run committed (sinks apply them).
    pub(crate) committed_output: crate::sink::CommittedOutputCheck,
    /// Raised when the attempt this subtask belongs to is cancelled: loops that can run long
    /// (firing timers) check it.
    pub(crate) cancellation: crate::cancellation::Cancellation,
}

/// Everything needed to open (and restore) one keyed subtask's store.
pub(crate) struct StoreOpener {
    pub(crate) backend: std::sync::Arc<dyn crate::state::StateBackend>,
    pub(crate) scope: crate::state::StoreScope,
    pub(crate) restore: Option<crate::state::KeyedRestore>,
}

impl StoreOpener {
    /// Opens the store, restored from the checkpoint's files if any.
    pub(crate) fn open(self) -> Result<Box<dyn KeyedStore>> {
        match &self.restore {
            Some(r) => r.open(self.backend.as_ref(), &self.scope),
            None => self.backend.open_store(&self.scope, None),
        }
    }
}

impl OperatorContext {
    /// `operator[subtask]`, for messages.
    pub fn describe(&self) -> String {
        format!("{}[{}]", self.operator, self.subtask)
    }

    /// What user functions see of this subtask.
    pub fn runtime(&self) -> crate::functions::RuntimeContext {
        crate::functions::RuntimeContext {
            job: self.job.clone(),
            step: self.operator.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            attempt: self.attempt,
        }
    }
}

/// What one operator contributes to a checkpoint.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct OperatorSnapshot {
    /// Files of the keyed store's snapshot, relative to the snapshot directory.
    pub keyed_files: Vec<std::path::PathBuf>,
    /// Opaque operator state (source positions, sink committables), bincode-encoded.
    pub operator_state: Option<Vec<u8>>,
}

/// Where an operator subtask writes its part of a checkpoint.
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    /// A directory private to this operator subtask and checkpoint; it does not exist yet.
    /// `None` when the job persists no checkpoints (no checkpoint storage is configured): then
    /// only sinks' committables matter.
    pub dir: Option<std::path::PathBuf>,
}

/// A running operator subtask.
///
/// # Checkpointing
/// `snapshot` is called when barrier `n` is aligned, after every record before the barrier was
/// processed and before any record after it. What it returns, together with the keyed store's
/// snapshot, must be enough to continue from exactly that point after a crash.
pub trait OperatorCore: Send {
    /// Called once before the first record; keyed operators find their store in `ctx.store`.
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes a batch that arrived on logical input `input` (0, or 1 for two-input operators).
    fn process_batch(&mut self, input: usize, batch: Box<dyn ErasedBatch>, out: &mut Emitter) -> Result<()>;

    /// The combined watermark of the inputs advanced to `wm`. Operators fire event-time timers
    /// up to `wm` and then forward a watermark (the default forwards `wm` unchanged).
    fn on_watermark(&mut self, wm: Timestamp, out: &mut Emitter) -> Result<()> {
        out.watermark(wm);
        Ok(())
    }

    /// The inputs became idle or active again; the default forwards the change.
    fn on_idle(&mut self, idle: bool, out: &mut Emitter) -> Result<()> {
        out.idle(idle);
        Ok(())
    }

    /// Processing time passed `now_ms` (called periodically and at deadlines the operator asked
    /// for with [`next_deadline_ms`](Self::next_deadline_ms)).
    fn on_processing_time(&mut self, now_ms: u64, out: &mut Emitter) -> Result<()> {
        let _ = (now_ms, out);
        Ok(())
    }

    /// For the first operator of a subtask fed by an input gate: the watermarks of its inputs
    /// it restored from a checkpoint, as `(combined watermark, each input channel's)` (the
    /// channels may be empty when not known). The gate starts from them, so event time
    /// continues where it was when the checkpoint was taken. The default restores nothing.
    fn restored_input_watermarks(&self) -> Option<(Timestamp, Vec<ChannelWatermark>)> {
        None
    }

    /// For the first operator of a subtask fed by an input gate: the watermark of each input
    /// channel, reported right before [`snapshot`](Self::snapshot) so that an operator that
    /// checkpoints event time can keep them. The default ignores them.
    fn set_input_watermarks(&mut self, channels: &[ChannelWatermark]) {
        let _ = channels;
    }

    /// Whether the operator keeps no state and forwards event time unchanged (map, filter,
    /// flat-map). When such an operator is the first of a subtask fed by an input gate, the
    /// runtime keeps the gate's watermarks in the operator's checkpointed state in its place.
    fn forwards_event_time(&self) -> bool {
        false
    }

    /// The earliest processing time at which the operator wants `on_processing_time`.
    fn next_deadline_ms(&self) -> Option<u64> {
        None
    }

    /// Contributes this operator's part of checkpoint `barrier.id` (see the trait docs). Keyed
    /// operators write their store's snapshot under `target.dir`.
    fn snapshot(&mut self, barrier: &Barrier, target: &SnapshotTarget) -> Result<OperatorSnapshot> {
        let _ = (barrier, target);
        Ok(OperatorSnapshot::default())
    }

    /// Checkpoint `id` is complete (its metadata is durable): side effects held back until then
    /// (sink commits) may now happen.
    fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// All inputs have ended (after a final `on_watermark(MAX_WATERMARK)`): emit what remains.
    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// The job ended (normally or not): release external resources. Must not panic.
    fn close(&mut self) {}
}
