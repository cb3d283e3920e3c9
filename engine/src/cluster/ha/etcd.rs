//! The thin I/O side of high availability: etcd calls that carry out the decisions of
//! [`super::term`]. A job's keys live under `/weir/jobs/<job>/`:
//!
//! ```text
//! leader    the leader's record (term, address, pid), attached to its lease
//! term      the highest term ever taken (only grows)
//! latest    the latest completed checkpoint and the term that completed it
//! next-id   the next checkpoint id to hand out
//! ```
//!
//! # After a crash
//! The leader key dies with the leader's lease (after its TTL once the process is gone). Every
//! write of a leader is one transaction that compares the leader key's creation revision with
//! the one its own campaign made: after the lease expired, or once another master took over,
//! the comparison fails and nothing is written. A leader whose lease lapses, or whose fenced
//! write fails, ends its process at once ([`Leadership::step_down`]); its supervisor starts it
//! again as a standby.

use super::client::{Compare, EtcdClient, Kv};
use super::term::{campaign_step, CampaignStep, LeaderRecord, LeaseClock, Term};
use super::HaSettings;
use crate::{Error, Reason, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit status of a master that stopped leading (a supervisor starts it again).
pub const STEPPED_DOWN_EXIT: i32 = 75;

/// How long a master waits for etcd to answer at start before it fails.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a standby looks at the leader key.
const CAMPAIGN_POLL: Duration = Duration::from_millis(50);

/// The keys of one job.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn of(job: &str) -> Self {
        Keys {
            prefix: format!("/weir/jobs/{job}/"),
        }
    }
    pub(crate) fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub(crate) fn term(&self) -> String {
        format!("{}term", self.prefix)
    }
    pub(crate) fn latest(&self) -> String {
        format!("{}latest", self.prefix)
    }
    pub(crate) fn next_id(&self) -> String {
        format!("{}next-id", self.prefix)
    }
}

/// A connection to the job's etcd.
pub(crate) struct Etcd {
    client: EtcdClient,
    endpoints: String,
    /// How long one call may take.
    timeout: Duration,
    pub(crate) keys: Keys,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("endpoints", &self.endpoints).finish()
    }
}

impl Etcd {
    /// Connects to `settings.endpoints` and checks that etcd answers.
    ///
    /// # Errors
    /// `Config` naming the endpoints when etcd does not answer within a few seconds: a master
    /// never starts without it (it would not know the latest checkpoint).
    pub(crate) fn connect(settings: &HaSettings, job: &str) -> Result<Self> {
        let endpoints = settings.endpoints.join(",");
        let client = EtcdClient::new(&settings.endpoints)?;
        let deadline = Instant::now() + REACH_TIMEOUT;
        loop {
            match client.status(Duration::from_secs(2)) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => return Err(cannot_reach(&endpoints, &e)),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        Ok(Etcd {
            client,
            endpoints,
            timeout: (settings.lease / 2).max(Duration::from_millis(500)),
            keys: Keys::of(job),
        })
    }

    /// The endpoints, for messages.
    pub(crate) fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The value of `key` and its revisions.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Kv>> {
        self.client.get(key, self.timeout)
    }

    /// The current leader, if one holds the key.
    pub(crate) fn leader(&self) -> Result<Option<LeaderRecord>> {
        Ok(self
            .get(&self.keys.leader())?
            .and_then(|kv| serde_json::from_str(&kv.value).ok()))
    }

    /// Waits until this master leads the job: a lease of `settings.lease`, the leader key
    /// taken with the next term. Standbys wait here.
    ///
    /// # Errors
    /// etcd failing for much longer than the lease (a standby keeps trying through shorter
    /// outages).
    pub(crate) fn campaign(self: Arc<Self>, settings: &HaSettings, address: &str) -> Result<Leadership> {
        let ttl_s = settings.lease.as_millis().div_ceil(1000).max(1) as i64;
        let mut waiting_for: Option<Term> = None;
        let mut failing_since: Option<Instant> = None;
        loop {
            match self.try_claim(ttl_s, address) {
                Ok(Ok(l)) => return Ok(l),
                Ok(Err(leader)) => {
                    failing_since = None;
                    if leader.is_some() && waiting_for != leader.as_ref().map(|l| l.term) {
                        if let Some(l) = &leader {
                            tracing::info!(term = l.term, leader = %l.address, pid = l.pid, "standby: another master leads");
                        }
                        waiting_for = leader.map(|l| l.term);
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > settings.lease.max(REACH_TIMEOUT) * 4 {
                        return Err(e.context("campaigning for the job's leadership"));
                    }
                    tracing::warn!(error = %e, "standby: etcd did not answer; trying again");
                }
            }
            std::thread::sleep(CAMPAIGN_POLL);
        }
    }

    /// One try: `Ok(Ok(leadership))` when this master took the lead, `Ok(Err(leader))` when
    /// another leads (or won the race).
    fn try_claim(self: &Arc<Self>, ttl_s: i64, address: &str) -> Result<Claim> {
        let (leader_key, term_key) = (self.keys.leader(), self.keys.term());
        let leader: Option<LeaderRecord> = self.get(&leader_key)?.map(|kv| {
            serde_json::from_str(&kv.value).unwrap_or(LeaderRecord {
                term: 0,
                address: kv.value,
                pid: 0,
            })
        });
        let recorded = self.get(&term_key)?;
        let term_rev = recorded.as_ref().map_or(0, |kv| kv.mod_revision);
        let recorded_term = recorded.and_then(|kv| kv.value.trim().parse::<Term>().ok());
        let term = match campaign_step(leader, recorded_term) {
            CampaignStep::Wait { leader } => return Ok(Err(Some(leader))),
            CampaignStep::Claim { term } => term,
        };
        let granted_at = Instant::now();
        let (lease_id, granted) = self.client.grant(ttl_s, self.timeout)?;
        let ttl = Duration::from_secs(granted.max(1) as u64);
        let record = LeaderRecord {
            term,
            address: address.to_string(),
            pid: std::process::id(),
        };
        let value =
            serde_json::to_string(&record).map_err(|e| Error::internal(format!("encoding the leader record: {e}")))?;
        let (succeeded, revision) = self.client.txn(
            &[
                Compare::Created(leader_key.clone(), 0),
                Compare::Modified(term_key.clone(), term_rev),
            ],
            &[(leader_key, value, lease_id), (term_key, term.to_string(), 0)],
            self.timeout,
        )?;
        if !succeeded {
            let _ = self.client.revoke(lease_id, self.timeout);
            return Ok(Err(None));
        }
        tracing::info!(term, lease = lease_id, ?ttl, address, "this master leads the job");
        let leadership = Leadership {
            etcd: self.clone(),
            term,
            leader_rev: revision,
            clock: Arc::new(Mutex::new(LeaseClock::granted(granted_at, ttl))),
        };
        leadership.keep_alive(lease_id);
        leadership.watch_clock();
        Ok(Ok(leadership))
    }
}

/// The outcome of one claim: leading, or the leader that does (if known).
type Claim = std::result::Result<Leadership, Option<LeaderRecord>>;

fn cannot_reach(endpoints: &str, why: &str) -> Error {
    Error::config(format!(
        "etcd at {endpoints} (WEIR_ETCD_ENDPOINTS) cannot be reached: {why}. A master of a highly available \
         job does not start without it: etcd names the latest completed checkpoint"
    ))
}

/// This master's leadership of its job, in one term. Ends the process when it is lost.
pub(crate) struct Leadership {
    etcd: Arc<Etcd>,
    term: Term,
    /// The leader key's creation revision: what every fenced write compares.
    leader_rev: i64,
    clock: Arc<Mutex<LeaseClock>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("term", &self.term)
            .field("etcd", &self.etcd.endpoints)
            .finish()
    }
}

impl Leadership {
    /// The term this master leads.
    pub(crate) fn term(&self) -> Term {
        self.term
    }

    /// The job's etcd.
    pub(crate) fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Whether the lease is still valid by this master's own clock.
    pub(crate) fn is_valid(&self) -> bool {
        self.clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .valid_at(Instant::now())
    }

    /// Ends the process unless the lease is still valid: call before acting as the leader.
    pub(crate) fn ensure(&self) {
        if !self.is_valid() {
            step_down(self.term, "its lease expired");
        }
    }

    /// Renews the lease every third of its TTL; a lease etcd reports gone ends the process.
    fn keep_alive(&self, lease_id: i64) {
        let (etcd, clock, term) = (self.etcd.clone(), self.clock.clone(), self.term);
        let _ = std::thread::Builder::new()
            .name("weir-lease-renew".into())
            .spawn(move || loop {
                let every = clock.lock().unwrap_or_else(|e| e.into_inner()).renew_every();
                let sent = Instant::now();
                // A failure leaves the clock as it was: it decides when to give up.
                if let Ok(ttl) = etcd.client.keep_alive(lease_id, every) {
                    let ttl = Duration::from_secs(ttl.max(0) as u64);
                    clock.lock().unwrap_or_else(|e| e.into_inner()).renewed(sent, ttl);
                    if ttl.is_zero() {
                        step_down(term, "etcd says its lease is gone");
                    }
                }
                std::thread::sleep(every.saturating_sub(sent.elapsed()));
            });
    }

    /// Ends the process as soon as the lease lapses by this master's clock (checked every
    /// 20 ms, and first thing after the process was frozen and runs again).
    fn watch_clock(&self) {
        let (clock, term) = (self.clock.clone(), self.term);
        let _ = std::thread::Builder::new()
            .name("weir-lease-watch".into())
            .spawn(move || loop {
                if !clock.lock().unwrap_or_else(|e| e.into_inner()).valid_at(Instant::now()) {
                    step_down(term, "its lease was not renewed in time");
                }
                std::thread::sleep(Duration::from_millis(20));
            });
    }

    /// Writes `puts` in one transaction that succeeds only while this master leads; a failed
    /// comparison (another master took over) ends the process.
    ///
    /// # Errors
    /// etcd not answering (retryable); the write may or may not have happened.
    pub(crate) fn fenced_put(&self, puts: Vec<(String, String)>) -> Result<()> {
        self.ensure();
        let puts: Vec<(String, String, i64)> = puts.into_iter().map(|(k, v)| (k, v, 0)).collect();
        let (succeeded, _) = self.etcd.client.txn(
            &[Compare::Created(self.etcd.keys.leader(), self.leader_rev)],
            &puts,
            self.etcd.timeout,
        )?;
        if !succeeded {
            self.clock.lock().unwrap_or_else(|e| e.into_inner()).lost();
            step_down(self.term, "another master took over (a fenced write failed)");
        }
        // The answer may come after the lease lapsed: what was written counts, nothing more does.
        self.ensure();
        Ok(())
    }

    /// Checks with etcd that this master still leads.
    ///
    /// # Errors
    /// `Config` (reason `LostOwnership`) when etcd cannot confirm it (the process ends at once
    /// when it learns that another master leads).
    pub(crate) fn check(&self) -> Result<()> {
        self.fenced_put(Vec::new()).map_err(|e| {
            Error::config(format!(
                "term {} cannot confirm its leadership with etcd at {}: {e}",
                self.term, self.etcd.endpoints
            ))
            .with_reason(Reason::LostOwnership)
        })
    }
}

/// Stops acting as the leader of term `term`: ends the process at once (no destructor, no
/// further write), so that its supervisor starts it again as a standby.
pub(crate) fn step_down(term: Term, why: &str) -> ! {
    tracing::error!(term, "this master stops leading: {why}; ending so that a standby leads");
    std::process::exit(STEPPED_DOWN_EXIT)
}
