//! Where a job's processes come from: the deployment mode, read from environment variables
//! so that the same executable, unchanged, runs in one process, as a local cluster, or as the
//! master or a worker of a cluster spread over machines. (Flags would collide with the user
//! program's own command line, which every process of a job shares.)
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `WEIR_ROLE` | `master` or `worker`; unset: in-process, or a local cluster with `WEIR_WORKERS` | unset |
//! | `WEIR_WORKERS` | without a role: launch a master and this many workers on loopback; for a master: the workers it waits for | unset |
//! | `WEIR_MASTER` | the master's `host:port` (the master listens there; workers connect to it) | `0.0.0.0:6123` for a master |
//! | `WEIR_WORKER_ID` | a worker's stable number | the ordinal ending the host name (`weir-worker-2` → 2) |
//! | `WEIR_SLOTS` | pipeline slices a worker runs | 2 |
//! | `WEIR_DATA_ADDR` | where a worker listens for data from other workers | `0.0.0.0:0` |
//! | `WEIR_ADVERTISE_HOST` | the host other processes reach a worker at | the worker's address on its connection to the master |
//! | `WEIR_HEARTBEAT_MS` | how often a worker reports to the master | 250 |
//! | `WEIR_HEARTBEAT_TIMEOUT_MS` | silence after which master and worker give each other up | 2000 |
//! | `WEIR_MASTER_WAIT_MS` | how long a worker tries to reach the master (at start, and after losing it) before it fails | 30000 |
//! | `WEIR_WORKER_WAIT_MS` | how long the master waits for all workers before it deploys on those present | 10000 |
//! | `WEIR_ETCD_ENDPOINTS` | etcd's endpoints (`host:port` or `http://host:port`, comma-separated): masters elect a leader there, workers find it there | unset: one master, no etcd |
//! | `WEIR_HA_LEASE_MS` | the leader's lease: a leader that cannot renew it stops; a standby takes over this long after the leader died | 3000 |
//! | `WEIR_STATUS_ADDR` | (master) where the master serves the job's status page and API, `ip:port` (see [`crate::runtime::status`]) | unset: the program's `status_addr`, if any |
//! | `WEIR_MASTERS` | (local cluster) how many masters the launcher starts; more than 1 needs `WEIR_ETCD_ENDPOINTS` | 1 |
//! | `WEIR_METRICS_ADDR` | the `ip:port` this process serves its metrics at (`/metrics`, for Prometheus); overrides the job's `metrics_addr`. A local cluster gives its master `m` port + m and worker `i` port + masters + i | the job's `metrics_addr`, else none |

use crate::net::{NetSettings, WorkerId};
use crate::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// The master's default port.
pub const DEFAULT_MASTER_PORT: u16 = 6123;

/// How often worker and master hear from each other, and when they give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeats {
    /// Between two heartbeats of a worker.
    pub interval: Duration,
    /// Silence after which the master fails the worker's attempt, and the worker cancels its
    /// subtasks (it may be cut off from a master that already failed over).
    pub timeout: Duration,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats {
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(2000),
        }
    }
}

/// High availability through etcd: where it is, and the leader's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSettings {
    /// etcd's endpoints, each `http://host:port`.
    pub endpoints: Vec<String>,
    /// The leader's lease TTL (etcd counts it in whole seconds, rounded up).
    pub lease: Duration,
}

impl HaSettings {
    /// The settings `WEIR_ETCD_ENDPOINTS` and `WEIR_HA_LEASE_MS` describe (`None`: no etcd).
    fn from_vars(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let lease = millis(get, "WEIR_HA_LEASE_MS")?;
        let Some(list) = get("WEIR_ETCD_ENDPOINTS") else {
            if lease.is_some() {
                return Err(Error::config(
                    "WEIR_HA_LEASE_MS is set but WEIR_ETCD_ENDPOINTS is not: a leader's lease lives in etcd",
                ));
            }
            return Ok(None);
        };
        let mut endpoints = Vec::new();
        for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let hostport = e.strip_prefix("http://").unwrap_or(e);
            let ok = hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && !p.contains('/') && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok || e.starts_with("https://") {
                return Err(Error::config(format!(
                    "WEIR_ETCD_ENDPOINTS: {e:?} is not host:port or http://host:port (for example http://etcd-0:2379)"
                )));
            }
            endpoints.push(format!("http://{hostport}"));
        }
        if endpoints.is_empty() {
            return Err(Error::config("WEIR_ETCD_ENDPOINTS names no endpoint"));
        }
        let lease = lease.unwrap_or(Duration::from_secs(3));
        if lease < Duration::from_secs(1) {
            return Err(Error::config(format!(
                "WEIR_HA_LEASE_MS ({} ms) must be at least 1000: etcd's leases last whole seconds",
                lease.as_millis()
            )));
        }
        Ok(Some(HaSettings { endpoints, lease }))
    }
}

/// A master process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterSettings {
    /// Where it listens for workers.
    pub bind: SocketAddr,
    /// How many workers it waits for before the first deployment.
    pub workers: u32,
    /// How long it waits for missing workers before deploying on those present.
    pub worker_wait: Duration,
    /// Heartbeat interval and timeout.
    pub heartbeats: Heartbeats,
    /// High availability: the masters elect a leader in etcd (`None`: this master leads alone).
    pub ha: Option<HaSettings>,
    /// The host workers reach this master at, when it listens on every address
    /// (`WEIR_ADVERTISE_HOST`; default: the host name).
    pub advertise_host: Option<String>,
    /// Where the master serves the job's status page and API (`WEIR_STATUS_ADDR`; it
    /// overrides the program's [`status_addr`](crate::api::Pipeline::status_addr)).
    pub status: Option<SocketAddr>,
    /// Where it serves its metrics (`WEIR_METRICS_ADDR`; `None`: the job's `metrics_addr`).
    pub metrics: Option<SocketAddr>,
}

impl MasterSettings {
    /// The `host:port` workers reach this master at (what a leader records in etcd).
    pub fn advertised_address(&self) -> String {
        if !self.bind.ip().is_unspecified() {
            return self.bind.to_string();
        }
        let host = self.advertise_host.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".to_string())
        });
        format!("{host}:{}", self.bind.port())
    }
}

/// A worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The master's `host:port`.
    pub master: String,
    /// The worker's stable number.
    pub id: WorkerId,
    /// Pipeline slices it runs.
    pub slots: u32,
    /// Where it listens for data from other workers.
    pub data_bind: SocketAddr,
    /// The host others reach it at, when not its address towards the master.
    pub advertise_host: Option<String>,
    /// Heartbeat interval and timeout.
    pub heartbeats: Heartbeats,
    /// How long it tries to reach the master before it fails.
    pub master_wait: Duration,
    /// High availability: the worker finds the leader in etcd (`None`: at `master`).
    pub ha: Option<HaSettings>,
    /// Where it serves its metrics (`WEIR_METRICS_ADDR`; `None`: the job's `metrics_addr`).
    pub metrics: Option<SocketAddr>,
}

/// How this process takes part in its job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Deployment {
    /// The whole job runs in this process.
    #[default]
    InProcess,
    /// This process starts a master and `workers` worker processes of the same program on
    /// loopback, restarts any that dies, and stops them when the job ends.
    Local {
        /// Worker processes.
        workers: u32,
        /// Slots per worker.
        slots: u32,
        /// Master processes (more than one: one leads, the others stand by, through etcd).
        masters: u32,
    },
    /// This process is the job's master.
    Master(MasterSettings),
    /// This process is one of the job's workers.
    Worker(WorkerSettings),
}

impl Deployment {
    /// The deployment the environment variables describe.
    ///
    /// # Errors
    /// `Config`, naming the variable, for a value that does not parse or a combination that
    /// makes no sense.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The deployment described by `var` (a lookup of environment variables).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let heartbeats = {
            let d = Heartbeats::default();
            let interval = millis(&get, "WEIR_HEARTBEAT_MS")?.unwrap_or(d.interval);
            let timeout = millis(&get, "WEIR_HEARTBEAT_TIMEOUT_MS")?.unwrap_or(d.timeout);
            if timeout < interval * 2 {
                return Err(Error::config(format!(
                    "WEIR_HEARTBEAT_TIMEOUT_MS ({} ms) must be at least twice WEIR_HEARTBEAT_MS ({} ms)",
                    timeout.as_millis(),
                    interval.as_millis()
                )));
            }
            Heartbeats { interval, timeout }
        };
        let workers = number(&get, "WEIR_WORKERS", 1, 1024)?;
        let slots = number(&get, "WEIR_SLOTS", 1, 1024)?.unwrap_or(2);
        let ha = HaSettings::from_vars(&get)?;
        let masters = number(&get, "WEIR_MASTERS", 1, 16)?.unwrap_or(1);
        if masters > 1 && ha.is_none() {
            return Err(Error::config(format!(
                "WEIR_MASTERS={masters} needs WEIR_ETCD_ENDPOINTS: the masters elect their leader in etcd"
            )));
        }
        match get("WEIR_ROLE").as_deref() {
            None => match workers {
                None => {
                    for k in ["WEIR_MASTER", "WEIR_WORKER_ID"] {
                        if get(k).is_some() {
                            return Err(Error::config(format!(
                                "{k} is set but WEIR_ROLE is not: set WEIR_ROLE=master or WEIR_ROLE=worker, or unset {k}"
                            )));
                        }
                    }
                    Ok(Deployment::InProcess)
                }
                Some(workers) => Ok(Deployment::Local {
                    workers,
                    slots,
                    masters,
                }),
            },
            Some("master") => {
                let bind = match get("WEIR_MASTER") {
                    Some(a) => a.parse::<SocketAddr>().map_err(|_| {
                        Error::config(format!(
                            "WEIR_MASTER={a:?}: a master listens on an ip:port, such as 0.0.0.0:{DEFAULT_MASTER_PORT}"
                        ))
                    })?,
                    None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_MASTER_PORT)),
                };
                let workers = workers.ok_or_else(|| {
                    Error::config("WEIR_ROLE=master needs WEIR_WORKERS, the number of workers of the job")
                })?;
                Ok(Deployment::Master(MasterSettings {
                    bind,
                    workers,
                    worker_wait: millis(&get, "WEIR_WORKER_WAIT_MS")?.unwrap_or(Duration::from_secs(10)),
                    heartbeats,
                    ha,
                    advertise_host: get("WEIR_ADVERTISE_HOST"),
                    status: match get("WEIR_STATUS_ADDR") {
                        Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                            Error::config(format!(
                                "WEIR_STATUS_ADDR={a:?}: the status server listens on an ip:port, such as 0.0.0.0:8081"
                            ))
                        })?),
                        None => None,
                    },
                    metrics: metrics_addr(&get)?,
                }))
            }
            Some("worker") => {
                // With etcd, the worker finds the leader there; WEIR_MASTER is optional.
                let master = match (get("WEIR_MASTER"), &ha) {
                    (Some(m), _) => m,
                    (None, Some(_)) => String::new(),
                    (None, None) => {
                        return Err(Error::config(
                            "WEIR_ROLE=worker needs WEIR_MASTER, the master's host:port (or WEIR_ETCD_ENDPOINTS)",
                        ))
                    }
                };
                let port_ok = master
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                let found_through_etcd = master.is_empty() && ha.is_some();
                if !port_ok && !found_through_etcd {
                    return Err(Error::config(format!(
                        "WEIR_MASTER={master:?} is not host:port (for example weir-master:{DEFAULT_MASTER_PORT})"
                    )));
                }
                let id = match get("WEIR_WORKER_ID") {
                    Some(v) => v
                        .parse::<WorkerId>()
                        .map_err(|_| Error::config(format!("WEIR_WORKER_ID={v:?} must be a whole number")))?,
                    None => {
                        let host = get("HOSTNAME").unwrap_or_default();
                        host.rsplit_once('-')
                            .and_then(|(_, n)| n.parse::<WorkerId>().ok())
                            .ok_or_else(|| {
                                Error::config(format!(
                                    "WEIR_ROLE=worker needs WEIR_WORKER_ID (or a host name ending in -N, as a StatefulSet's pods have; this host is {host:?})"
                                ))
                            })?
                    }
                };
                let data_bind = match get("WEIR_DATA_ADDR") {
                    Some(a) => a.parse::<SocketAddr>().map_err(|_| {
                        Error::config(format!("WEIR_DATA_ADDR={a:?} must be an ip:port, such as 0.0.0.0:6124"))
                    })?,
                    None => SocketAddr::from(([0, 0, 0, 0], 0)),
                };
                Ok(Deployment::Worker(WorkerSettings {
                    master,
                    id,
                    slots,
                    data_bind,
                    advertise_host: get("WEIR_ADVERTISE_HOST"),
                    heartbeats,
                    master_wait: millis(&get, "WEIR_MASTER_WAIT_MS")?.unwrap_or(Duration::from_secs(30)),
                    ha,
                    metrics: metrics_addr(&get)?,
                }))
            }
            Some(other) => Err(Error::config(format!(
                "WEIR_ROLE={other:?}: expected master or worker (or unset it to run in this process)"
            ))),
        }
    }
}

/// The data connections' settings for a worker with these heartbeats: a connection that
/// cannot deliver for as long as the heartbeat timeout fails.
pub(crate) fn net_settings(heartbeats: &Heartbeats, channel_capacity: usize) -> NetSettings {
    NetSettings {
        channel_capacity: channel_capacity.clamp(1, u32::MAX as usize) as u32,
        unacknowledged_timeout: heartbeats.timeout,
        // Workers deploy an attempt at about the same time; one that never does is lost
        // after the heartbeat timeout, so waiting much longer for it only delays recovery.
        hello_wait: (heartbeats.timeout * 3).max(Duration::from_secs(5)),
        ..NetSettings::default()
    }
}

/// `WEIR_METRICS_ADDR`, the address this process serves its metrics at.
fn metrics_addr(get: &impl Fn(&str) -> Option<String>) -> Result<Option<SocketAddr>> {
    get(METRICS_ADDR_ENV)
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                Error::config(format!(
                    "{METRICS_ADDR_ENV}={a:?} must be an ip:port, such as 0.0.0.0:9464"
                ))
            })
        })
        .transpose()
}

/// The variable naming the address a process serves its metrics at.
pub const METRICS_ADDR_ENV: &str = "WEIR_METRICS_ADDR";

/// `WEIR_METRICS_ADDR` of this process's environment, if set.
///
/// # Errors
/// `Config` when it is not an `ip:port`.
pub fn metrics_addr_from_env() -> Result<Option<SocketAddr>> {
    metrics_addr(&|k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

fn number(get: &impl Fn(&str) -> Option<String>, key: &str, min: u32, max: u32) -> Result<Option<u32>> {
    match get(key) {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::config(format!(
                "{key}={v:?} must be a whole number from {min} to {max}"
            ))),
        },
    }
}

fn millis(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<Duration>> {
    Ok(number(get, key, 1, 3_600_000)?.map(|ms| Duration::from_millis(ms.into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::HashMap;

    fn deploy(vars: &[(&str, &str)]) -> Result<Deployment> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Deployment::from_vars(|k| m.get(k).cloned())
    }

    fn config_error(vars: &[(&str, &str)], says: &str) {
        let e = deploy(vars).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains(says), "{e} should say {says:?}");
    }

    #[test]
    fn masters_and_workers_read_their_metrics_address() {
        let metrics = |role: &[(&str, &str)]| match deploy(role).unwrap() {
            Deployment::Master(m) => m.metrics,
            Deployment::Worker(w) => w.metrics,
            other => panic!("not a master or worker: {other:?}"),
        };
        let master = [("WEIR_ROLE", "master"), ("WEIR_WORKERS", "2")];
        let worker = [
            ("WEIR_ROLE", "worker"),
            ("WEIR_MASTER", "m:6123"),
            ("WEIR_WORKER_ID", "1"),
        ];
        assert_eq!(metrics(&master), None);
        assert_eq!(metrics(&worker), None);
        let with = |vars: &[(&'static str, &'static str)]| {
            let mut v = vars.to_vec();
            v.push((METRICS_ADDR_ENV, "0.0.0.0:9464"));
            v
        };
        assert_eq!(metrics(&with(&master)), Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(metrics(&with(&worker)), Some("0.0.0.0:9464".parse().unwrap()));
        let mut bad = worker.to_vec();
        bad.push((METRICS_ADDR_ENV, "localhost"));
        config_error(&bad, "WEIR_METRICS_ADDR=\"localhost\" must be an ip:port");
    }

    #[test]
    fn nothing_set_runs_in_this_process_and_workers_alone_launch_a_local_cluster() {
        assert_eq!(deploy(&[]).unwrap(), Deployment::InProcess);
        assert_eq!(
            deploy(&[("WEIR_WORKERS", "3")]).unwrap(),
            Deployment::Local {
                workers: 3,
                slots: 2,
                masters: 1
            }
        );
        assert_eq!(
            deploy(&[("WEIR_WORKERS", "2"), ("WEIR_SLOTS", "4")]).unwrap(),
            Deployment::Local {
                workers: 2,
                slots: 4,
                masters: 1
            }
        );
    }

    #[test]
    fn etcd_settings_for_masters_and_workers() {
        let ha = [
            ("WEIR_ETCD_ENDPOINTS", "127.0.0.1:2379, http://etcd-1:2379"),
            ("WEIR_HA_LEASE_MS", "1500"),
        ];
        let mut vars = vec![("WEIR_WORKERS", "3"), ("WEIR_MASTERS", "2")];
        vars.extend(ha);
        assert_eq!(
            deploy(&vars).unwrap(),
            Deployment::Local {
                workers: 3,
                slots: 2,
                masters: 2
            }
        );
        let mut vars = vec![("WEIR_ROLE", "master"), ("WEIR_WORKERS", "3")];
        vars.extend(ha);
        let Deployment::Master(m) = deploy(&vars).unwrap() else {
            panic!("not a master")
        };
        let h = m.ha.unwrap();
        assert_eq!(h.endpoints, ["http://127.0.0.1:2379", "http://etcd-1:2379"]);
        assert_eq!(h.lease, Duration::from_millis(1500));
        // A worker needs no master address with etcd: it finds the leader there.
        let mut vars = vec![("WEIR_ROLE", "worker"), ("WEIR_WORKER_ID", "1")];
        vars.extend(ha);
        let Deployment::Worker(w) = deploy(&vars).unwrap() else {
            panic!("not a worker")
        };
        assert!(w.master.is_empty() && w.ha.is_some());
        config_error(
            &[("WEIR_WORKERS", "3"), ("WEIR_MASTERS", "2")],
            "needs WEIR_ETCD_ENDPOINTS",
        );
        config_error(&[("WEIR_ETCD_ENDPOINTS", "etcd")], "not host:port");
        config_error(
            &[("WEIR_ETCD_ENDPOINTS", "e:1"), ("WEIR_HA_LEASE_MS", "500")],
            "at least 1000",
        );
        config_error(&[("WEIR_HA_LEASE_MS", "2000")], "WEIR_ETCD_ENDPOINTS is not");
    }

    #[test]
    fn a_master_and_a_worker_from_their_variables() {
        let Deployment::Master(m) = deploy(&[("WEIR_ROLE", "master"), ("WEIR_WORKERS", "3")]).unwrap() else {
            panic!("not a master")
        };
        assert_eq!(m.bind.port(), DEFAULT_MASTER_PORT);
        assert_eq!(m.workers, 3);
        let Deployment::Worker(w) = deploy(&[
            ("WEIR_ROLE", "worker"),
            ("WEIR_MASTER", "weir-master:6123"),
            ("HOSTNAME", "weir-worker-2"),
            ("WEIR_HEARTBEAT_MS", "100"),
            ("WEIR_HEARTBEAT_TIMEOUT_MS", "900"),
        ])
        .unwrap() else {
            panic!("not a worker")
        };
        assert_eq!((w.id, w.slots, w.master.as_str()), (2, 2, "weir-master:6123"));
        assert_eq!(w.heartbeats.timeout, Duration::from_millis(900));
    }

    #[test]
    fn bad_values_are_configuration_errors_naming_the_variable() {
        config_error(&[("WEIR_ROLE", "boss")], "WEIR_ROLE=\"boss\"");
        config_error(&[("WEIR_WORKERS", "0")], "WEIR_WORKERS=\"0\"");
        config_error(&[("WEIR_WORKERS", "many")], "WEIR_WORKERS");
        config_error(&[("WEIR_ROLE", "master")], "needs WEIR_WORKERS");
        config_error(
            &[
                ("WEIR_ROLE", "master"),
                ("WEIR_WORKERS", "2"),
                ("WEIR_MASTER", "host:1"),
            ],
            "ip:port",
        );
        config_error(&[("WEIR_ROLE", "worker")], "needs WEIR_MASTER");
        config_error(&[("WEIR_ROLE", "worker"), ("WEIR_MASTER", "nohost")], "not host:port");
        config_error(
            &[("WEIR_ROLE", "worker"), ("WEIR_MASTER", "m:1"), ("HOSTNAME", "box")],
            "WEIR_WORKER_ID",
        );
        config_error(
            &[("WEIR_ROLE", "worker"), ("WEIR_MASTER", "m:1"), ("WEIR_WORKER_ID", "x")],
            "whole number",
        );
        config_error(&[("WEIR_MASTER", "m:1")], "WEIR_ROLE is not");
        config_error(
            &[("WEIR_HEARTBEAT_MS", "500"), ("WEIR_HEARTBEAT_TIMEOUT_MS", "600")],
            "at least twice",
        );
    }
}
