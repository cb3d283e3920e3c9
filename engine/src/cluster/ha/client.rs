//! etcd's v3 API through the [`etcd_client`] crate (gRPC), behind a synchronous face: the
//! masters' and workers' HA code is synchronous, the crate is async.
//!
//! The adapter owns a small tokio runtime (one worker thread). Each call is spawned on it and
//! its answer awaited on a `std` channel, so a call may come from any thread, a worker thread
//! of another tokio runtime included (no `block_on` nested in a runtime). Every call has a
//! timeout; its error names the endpoints.

use crate::{Error, Result};
use etcd_client::{Client, Compare as EtcdCompare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};
use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use std::future::Future;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// A key's value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    pub(crate) value: String,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
}

/// A comparison of a transaction.
#[derive(Debug, Clone)]
pub(crate) enum Compare {
    /// The key's creation revision equals this (0: the key does not exist).
    Created(String, i64),
    /// The key's last modification revision equals this (0: the key does not exist).
    Modified(String, i64),
}

/// One etcd cluster, by its client endpoints, with the runtime its calls run on.
pub(crate) struct EtcdClient {
    client: Client,
    /// The endpoints, for messages.
    endpoints: String,
    /// The open lease keep-alive stream, if any (reopened after a failure).
    keeper: Mutex<Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Drop for EtcdClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a tokio worker thread must not do.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` on `rt` and waits for its answer (at most `timeout`) on a `std` channel.
fn run<T, F>(rt: &tokio::runtime::Runtime, timeout: Duration, fut: F) -> std::result::Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    rt.spawn(async move {
        let answer = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        let _ = tx.send(answer);
    });
    // The task answers within `timeout`; the margin covers a busy runtime.
    rx.recv_timeout(timeout + Duration::from_secs(1))
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

impl EtcdClient {
    /// A client of `endpoints` (`http://host:port` or `host:port`). Connects lazily: see
    /// [`Self::status`].
    ///
    /// # Errors
    /// `Config` when an endpoint is not a valid address, or the runtime cannot start.
    pub(crate) fn new(endpoints: &[String]) -> Result<Self> {
        let joined = endpoints.join(",");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("starting the etcd client's runtime: {e}")))?;
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                let e = e.trim().trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2));
        // Connecting is lazy (the channel dials on first use), so this returns at once.
        let client = run(&runtime, Duration::from_secs(10), async move {
            Client::connect(urls, Some(options)).await
        })
        .map_err(|e| {
            Error::config(format!(
                "etcd endpoints {joined} (WEIR_ETCD_ENDPOINTS) are not usable: {e}"
            ))
        })?;
        Ok(EtcdClient {
            client,
            endpoints: joined,
            keeper: Mutex::new(None),
            runtime: Some(runtime),
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    fn call<T, F>(&self, what: &str, timeout: Duration, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
    {
        run(self.rt(), timeout, fut)
            .map_err(|e| Error::external(true, format!("etcd {what} at {}: {e}", self.endpoints)))
    }

    /// Checks that etcd answers.
    pub(crate) fn status(&self, timeout: Duration) -> std::result::Result<(), String> {
        let mut c = self.client.clone();
        run(self.rt(), timeout, async move { c.status().await }).map(|_| ())
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str, timeout: Duration) -> Result<Option<Kv>> {
        let (mut c, key) = (self.client.clone(), key.to_string());
        let answer = self.call("get", timeout, async move { c.get(key, None).await })?;
        Ok(answer.kvs().first().map(|kv| Kv {
            value: String::from_utf8_lossy(kv.value()).into_owned(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }))
    }

    /// Puts `puts` (key, value, lease: 0 for none) if every comparison holds; whether it did,
    /// and the store's revision after the transaction.
    pub(crate) fn txn(
        &self,
        when: &[Compare],
        puts: &[(String, String, i64)],
        timeout: Duration,
    ) -> Result<(bool, i64)> {
        let compare: Vec<EtcdCompare> = when
            .iter()
            .map(|c| match c {
                Compare::Created(k, rev) => EtcdCompare::create_revision(k.as_str(), CompareOp::Equal, *rev),
                Compare::Modified(k, rev) => EtcdCompare::mod_revision(k.as_str(), CompareOp::Equal, *rev),
            })
            .collect();
        let ops: Vec<TxnOp> = puts
            .iter()
            .map(|(k, v, lease)| {
                let options = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                TxnOp::put(k.as_str(), v.as_str(), options)
            })
            .collect();
        let mut c = self.client.clone();
        let txn = Txn::new().when(compare).and_then(ops);
        let answer = self.call("txn", timeout, async move { c.txn(txn).await })?;
        Ok((answer.succeeded(), answer.header().map_or(0, |h| h.revision())))
    }

    /// Grants a lease of `ttl_s` seconds: its id and granted TTL.
    pub(crate) fn grant(&self, ttl_s: i64, timeout: Duration) -> Result<(i64, i64)> {
        let mut c = self.client.clone();
        let answer = self.call("lease grant", timeout, async move { c.lease_grant(ttl_s, None).await })?;
        if !answer.error().is_empty() {
            return Err(Error::external(
                true,
                format!("etcd at {} refused a lease: {}", self.endpoints, answer.error()),
            ));
        }
        Ok((answer.id(), answer.ttl()))
    }

    /// Renews lease `id`: the TTL left (0: the lease is gone). Keeps one keep-alive stream
    /// open across calls and opens a new one after a failure.
    pub(crate) fn keep_alive(&self, id: i64, timeout: Duration) -> Result<i64> {
        let mut slot = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        let open = slot.take().filter(|(lease, _, _)| *lease == id);
        let mut c = self.client.clone();
        let (ttl, keeper, stream) = self.call("lease keep-alive", timeout, async move {
            let (mut keeper, mut stream) = match open {
                Some((_, k, s)) => (k, s),
                None => c.lease_keep_alive(id).await?,
            };
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(r) => Ok((r.ttl(), keeper, stream)),
                None => Err(etcd_client::Error::LeaseKeepAliveError(format!(
                    "the keep-alive stream of lease {id} closed"
                ))),
            }
        })?;
        // A failed or timed-out call drops the stream: no stale answer is read later.
        *slot = Some((id, keeper, stream));
        Ok(ttl)
    }

    /// Revokes lease `id` (its keys go with it).
    pub(crate) fn revoke(&self, id: i64, timeout: Duration) -> Result<()> {
        let mut c = self.client.clone();
        self.call("lease revoke", timeout, async move { c.lease_revoke(id).await })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Nothing listens on port 1 of loopback.
    fn unreachable() -> EtcdClient {
        EtcdClient::new(&["127.0.0.1:1".to_string()]).unwrap()
    }

    #[test]
    fn an_unreachable_etcd_fails_within_the_timeout_naming_the_endpoint() {
        let c = unreachable();
        let started = Instant::now();
        assert!(c.status(Duration::from_millis(500)).is_err());
        let e = c.get("/k", Duration::from_millis(500)).unwrap_err().to_string();
        assert!(e.contains("127.0.0.1:1"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }

    #[test]
    fn calls_and_drop_work_on_a_worker_thread_of_another_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let failed = rt.block_on(async {
            tokio::spawn(async {
                let c = unreachable();
                let failed = c.status(Duration::from_millis(300)).is_err();
                drop(c);
                failed
            })
            .await
            .unwrap()
        });
        assert!(failed);
    }
}
