//! Savepoints asked for on a local cluster's launcher, on their way to the master process and
//! back.
//!
//! The launcher's [`JobHandle`](crate::runtime::JobHandle) queues a request as any handle does.
//! The launcher writes it into the cluster's relay directory as `request-<seq>.json` (the
//! savepoint's location and whether it stops the job); the master process takes every request
//! file it finds (deleting it), opens the location
//! ([`open_location`](crate::checkpoint::open_location)), queues the request in its own job, and
//! writes `answer-<seq>.json` with the savepoint or the error once its job answered. The
//! launcher hands the answer to the user's request. Files appear by rename: a reader never sees
//! half of one.
//!
//! # After a crash
//! - The master process dies: the launcher answers every request it forwarded and got no
//!   answer for with an error, and removes the request files no master took, so that a master
//!   started again never takes a savepoint (or stops the job) nobody waits for. A savepoint the
//!   dead master had finished writing stays at its location; asking again into the same
//!   location is refused, as for any location that holds a savepoint.
//! - The launcher dies: every process of the cluster ends with it.

use crate::checkpoint::open_location;
use crate::checkpoint::savepoint::Savepoint;
use crate::runtime::events::FailureReport;
use crate::runtime::handle::Live;
use crate::runtime::savepoint_request::{not_taken, SavepointRequest};
use crate::{Error, Result};
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Set in the master a launcher starts: the relay directory it takes savepoint requests from.
pub(crate) const RELAY_ENV: &str = "WEIR_SAVEPOINT_RELAY_DIR";

/// A savepoint request as the launcher forwards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RelayedRequest {
    /// The savepoint's location: its storage's description (a path or URL); `None` for a stop
    /// at a final checkpoint ([`JobHandle::stop`](crate::runtime::JobHandle::stop)).
    location: Option<String>,
    /// Stop the job once the savepoint is written.
    stop: bool,
}

/// The master's answer to a relayed request.
#[derive(Debug, Serialize, Deserialize)]
enum RelayedAnswer {
    Taken(Savepoint),
    Refused(FailureReport),
}

fn request_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("request-{seq}.json"))
}

fn answer_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("answer-{seq}.json"))
}

/// The sequence number of a relay file named `<prefix>-<seq>.json`. Pure.
fn seq_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

/// The relay files named `<prefix>-<seq>.json` in `dir`, by sequence number.
fn files(dir: &Path, prefix: &str) -> BTreeMap<u64, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let seq = seq_of(e.file_name().to_str()?, prefix)?;
            Some((seq, e.path()))
        })
        .collect()
}

/// Reads the relay file at `path` and removes it; `None` when it cannot be read or parsed
/// (it stays then).
fn take<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let _ = std::fs::remove_file(path);
    Some(value)
}

/// Writes `value` as JSON to `path` by rename.
fn publish(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| Error::internal(format!("encoding {}: {e}", path.display())))?;
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The launcher's side: requests forwarded and not answered yet.
#[derive(Debug)]
pub(crate) struct LauncherRelay {
    dir: PathBuf,
    next_seq: u64,
    forwarded: BTreeMap<u64, SavepointRequest>,
}

impl LauncherRelay {
    /// A relay through `dir` (created).
    ///
    /// # Errors
    /// `Io` when the directory cannot be created.
    pub(crate) fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(LauncherRelay {
            dir,
            next_seq: 0,
            forwarded: BTreeMap::new(),
        })
    }

    /// The directory the master takes requests from.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forwards the requests the handle queued, then answers those the master answered.
    pub(crate) fn exchange(&mut self, live: &Live) {
        let asked = live.savepoint_requests.lock().unwrap_or_else(|e| e.into_inner()).take();
        for request in asked {
            let seq = self.next_seq;
            self.next_seq += 1;
            let relayed = RelayedRequest {
                location: request.target.as_ref().map(|t| t.describe()),
                stop: request.stop,
            };
            match publish(&request_file(&self.dir, seq), &relayed) {
                Ok(()) => {
                    self.forwarded.insert(seq, request);
                }
                Err(e) => request.answer(Err(e.context("forwarding the savepoint request to the master process"))),
            }
        }
        for (seq, path) in files(&self.dir, "answer") {
            let Some(answer) = take::<RelayedAnswer>(&path) else {
                continue;
            };
            if let Some(request) = self.forwarded.remove(&seq) {
                request.answer(match answer {
                    RelayedAnswer::Taken(sp) => Ok(sp),
                    RelayedAnswer::Refused(report) => Err(report.into_error()),
                });
            }
        }
    }

    /// The master process ended without the job's outcome: every forwarded request is
    /// answered with `why`, and requests no master took are withdrawn.
    pub(crate) fn master_lost(&mut self, why: &str) {
        for (_, path) in files(&self.dir, "request") {
            let _ = std::fs::remove_file(path);
        }
        for (seq, request) in std::mem::take(&mut self.forwarded) {
            let _ = std::fs::remove_file(answer_file(&self.dir, seq));
            let what = match &request.target {
                Some(t) => format!("the savepoint into {}", t.describe()),
                None => "the stop at a final checkpoint".to_string(),
            };
            request.answer(Err(not_taken(format!("{what} is not known to be complete: {why}"))));
        }
    }

    /// The job ended: answers what the master answered, then every request still open with
    /// `why`.
    pub(crate) fn job_ended(&mut self, live: &Live, why: &str) {
        self.exchange(live);
        for (_, request) in std::mem::take(&mut self.forwarded) {
            request.answer(Err(not_taken(format!("no savepoint was taken: {why}"))));
        }
        let late = live
            .savepoint_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close(why);
        for request in late {
            request.answer(Err(not_taken(format!("no savepoint was taken: {why}"))));
        }
    }
}

/// The master process's side: requests taken into the job, waiting for its answer.
#[derive(Debug)]
pub(crate) struct MasterRelay {
    dir: PathBuf,
    waiting: Vec<(u64, Receiver<Result<Savepoint>>)>,
}

impl MasterRelay {
    /// The relay of the launcher that started this process, if one did.
    pub(crate) fn from_env() -> Option<Self> {
        std::env::var_os(RELAY_ENV).map(|dir| MasterRelay {
            dir: PathBuf::from(dir),
            waiting: Vec::new(),
        })
    }

    /// Takes new requests into the job (`live`), and publishes the answers it gave.
    pub(crate) fn exchange(&mut self, live: &Live) {
        for (seq, path) in files(&self.dir, "request") {
            let Some(request) = take::<RelayedRequest>(&path) else {
                continue;
            };
            let (reply, answer) = crossbeam_channel::bounded(1);
            match request.location.as_deref().map(open_location).transpose() {
                Ok(target) => {
                    tracing::info!(location = ?request.location, stop = request.stop, "savepoint or stop requested by the launcher");
                    live.savepoint_requests
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(SavepointRequest {
                            target,
                            stop: request.stop,
                            reply,
                        });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
            self.waiting.push((seq, answer));
        }
        self.waiting.retain(|(seq, answer)| {
            let Ok(result) = answer.try_recv() else {
                return true;
            };
            let relayed = match result {
                Ok(sp) => RelayedAnswer::Taken(sp),
                Err(e) => RelayedAnswer::Refused(FailureReport::new(e)),
            };
            if let Err(e) = publish(&answer_file(&self.dir, *seq), &relayed) {
                tracing::error!(error = %e, "the answer to a savepoint request could not be given to the launcher");
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointStorage, LocalDirStorage};
    use crate::message::CheckpointId;
    use std::sync::Arc;

    fn ask(live: &Live, location: &Path, stop: bool) -> Receiver<Result<Savepoint>> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let target: Option<Arc<dyn CheckpointStorage>> = Some(Arc::new(LocalDirStorage::new(location)));
        live.savepoint_requests
            .lock()
            .unwrap()
            .push(SavepointRequest { target, stop, reply });
        rx
    }

    #[test]
    fn a_request_travels_to_the_master_and_its_answer_back() {
        assert_eq!(seq_of("request-12.json", "request"), Some(12));
        assert_eq!(seq_of("request-12.tmp", "request"), None);
        assert_eq!(seq_of("answer-3.json", "request"), None);
        let d = tempfile::tempdir().unwrap();
        let (launcher_side, master_side) = (Live::default(), Live::default());
        let mut launcher = LauncherRelay::new(d.path().join("relay")).unwrap();
        let mut master = MasterRelay {
            dir: launcher.dir().to_path_buf(),
            waiting: Vec::new(),
        };
        let first = ask(&launcher_side, &d.path().join("sp-1"), true);
        let second = ask(&launcher_side, &d.path().join("sp-2"), false);
        launcher.exchange(&launcher_side);
        master.exchange(&master_side);
        let taken = master_side.savepoint_requests.lock().unwrap().take();
        assert_eq!(
            taken
                .iter()
                .map(|r| (r.target.as_ref().unwrap().describe(), r.stop))
                .collect::<Vec<_>>(),
            vec![
                (d.path().join("sp-1").display().to_string(), true),
                (d.path().join("sp-2").display().to_string(), false)
            ]
        );
        // Taken once: the files are gone.
        master.exchange(&master_side);
        assert!(master_side.savepoint_requests.lock().unwrap().take().is_empty());
        let mut taken = taken.into_iter();
        let sp = Savepoint {
            id: CheckpointId::new(7),
            location: "sp-1".into(),
            files: 3,
            bytes: 10,
            stopped_job: true,
        };
        taken.next().unwrap().answer(Ok(sp.clone()));
        taken.next().unwrap().answer(Err(Error::config("location in use")));
        master.exchange(&master_side);
        launcher.exchange(&launcher_side);
        assert_eq!(first.try_recv().unwrap().unwrap(), sp);
        let e = second.try_recv().unwrap().unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().contains("location in use")),
            (crate::ErrorKind::Config, true)
        );
    }

    #[test]
    fn a_lost_master_fails_forwarded_requests_and_withdraws_untaken_ones() {
        let d = tempfile::tempdir().unwrap();
        let live = Live::default();
        let mut launcher = LauncherRelay::new(d.path().join("relay")).unwrap();
        let asked = ask(&live, &d.path().join("sp"), true);
        launcher.exchange(&live);
        launcher.master_lost("the master process ended");
        let e = asked.try_recv().unwrap().unwrap_err();
        assert!(e.to_string().contains("not known to be complete"), "{e}");
        // A master started again finds nothing to take.
        let mut master = MasterRelay {
            dir: launcher.dir().to_path_buf(),
            waiting: Vec::new(),
        };
        let master_side = Live::default();
        master.exchange(&master_side);
        assert!(master_side.savepoint_requests.lock().unwrap().take().is_empty());
        // A location the master cannot open is answered with the error.
        let asked = ask(&live, Path::new("nowhere://x"), false);
        launcher.exchange(&live);
        master.exchange(&master_side);
        launcher.exchange(&live);
        assert_eq!(asked.try_recv().unwrap().unwrap_err().kind(), crate::ErrorKind::Config);
        // Requests still open when the job ends are answered.
        let late = ask(&live, &d.path().join("sp-late"), false);
        launcher.job_ended(&live, "the job has ended");
        assert!(late.try_recv().unwrap().is_err());
    }
}
