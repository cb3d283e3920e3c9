//! Which steps have side outputs, and which of them are read (see [`crate::side_output`]).

use super::NodeId;
use crate::data::BatchCodec;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A step that can emit side outputs, registered under the hidden step that keeps its main
/// output.
pub(crate) struct SideOutputSource {
    /// The step itself.
    pub(crate) step: NodeId,
    /// Raised when the first side output is read: the step's operators (built after the whole
    /// graph) then emit tagged records, which the main-output step filters.
    pub(crate) tagged: Arc<AtomicBool>,
    /// The codec of the step's output once tagged.
    pub(crate) tagged_codec: BatchCodec,
    /// The hidden step reading each tag, by tag id.
    pub(crate) read: HashMap<u64, NodeId>,
}
