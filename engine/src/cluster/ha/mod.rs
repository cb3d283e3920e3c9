//! A highly available master: two or more masters, one leader elected through etcd.
//!
//! - **Election** ([`etcd`]): every master campaigns for the job's leader key with a lease of
//!   `WEIR_HA_LEASE_MS`; the one that takes it leads with the next **term**, the others wait.
//! - **Fencing**: the latest-checkpoint pointer and the checkpoint-id counter live in etcd
//!   ([`pointer`]) and change only in a transaction that checks the writer still leads. The
//!   storage's ownership is the term (no OS lock a frozen leader could keep holding). Every
//!   master→worker call carries the term, and a worker refuses calls of a term older than the
//!   newest it has seen ([`term::TermGate`]), the notification that makes sinks commit too.
//! - **Self-fencing**: a leader that cannot renew its lease in time, or whose fenced write
//!   fails, ends its process at once; its supervisor starts it again as a standby.
//! - **Takeover**: a standby takes the leader key when the lease lapses, restores the
//!   checkpoint the pointer names, and the workers, which find the leader's address in etcd,
//!   register with it.
//!
//! The decisions live in [`term`], apart from any I/O; [`etcd`] and [`pointer`] carry them out
//! through [`client`], a synchronous adapter over the `etcd-client` crate (gRPC).
//!
//! # After a crash
//! A dead leader's key lapses with its lease (after at most its TTL); a standby then leads with
//! the next term and restores the latest checkpoint the pointer names. Nothing a fenced leader
//! writes afterwards is accepted: etcd refuses its transactions, workers its calls.

pub(crate) mod client;
pub(crate) mod etcd;
pub(crate) mod pointer;
pub mod term;

pub use crate::cluster::config::HaSettings;
pub use etcd::STEPPED_DOWN_EXIT;

use crate::checkpoint::pointer::CheckpointPointer;
use crate::cluster::config::MasterSettings;
use crate::Result;
use etcd::{Etcd, Leadership};
use std::sync::Arc;

/// A master's leadership and the pointer it writes under it.
pub(crate) struct Lead {
    pub(crate) leadership: Arc<Leadership>,
    pub(crate) pointer: Arc<dyn CheckpointPointer>,
}

/// Connects to etcd (failing at once, naming the endpoints, when it cannot be reached) and
/// waits until this master leads job `job`.
///
/// # Errors
/// `Config` when etcd cannot be reached at start.
pub(crate) fn lead(ha: &HaSettings, job: &str, settings: &MasterSettings) -> Result<Lead> {
    let etcd = Arc::new(Etcd::connect(ha, job)?);
    let address = settings.advertised_address();
    tracing::info!(etcd = etcd.endpoints(), %address, "campaigning for the job's leadership");
    let leadership = Arc::new(etcd.campaign(ha, &address)?);
    let pointer: Arc<dyn CheckpointPointer> = Arc::new(pointer::EtcdPointer::new(leadership.clone()));
    Ok(Lead { leadership, pointer })
}

/// Where a worker finds the leader: the address etcd names, with its term.
pub(crate) struct LeaderLookup {
    etcd: Etcd,
}

impl LeaderLookup {
    /// Connects to the job's etcd.
    ///
    /// # Errors
    /// `Config` when etcd cannot be reached.
    pub(crate) fn connect(ha: &HaSettings, job: &str) -> Result<Self> {
        Ok(LeaderLookup {
            etcd: Etcd::connect(ha, job)?,
        })
    }

    /// The current leader's address and term, if a master leads.
    pub(crate) fn leader(&self) -> Option<(String, term::Term)> {
        self.etcd.leader().ok().flatten().map(|l| (l.address, l.term))
    }
}
