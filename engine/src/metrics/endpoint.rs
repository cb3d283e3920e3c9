//! The HTTP endpoint Prometheus scrapes: `GET /metrics` on an address of the process's
//! choosing, served by a thread of its own. Several jobs of one process share the endpoint of
//! an address: asking again for an address already served returns it.

use crate::metrics::registry;
use crate::{Error, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The OpenMetrics text format, which Prometheus negotiates and parses.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Addresses asked for → the address served.
static SERVED: Mutex<BTreeMap<SocketAddr, SocketAddr>> = Mutex::new(BTreeMap::new());

/// Serves this process's metrics at `http://addr/metrics` until the process exits, and makes
/// every job the process runs from now on export its series. Returns the address served (the
/// port chosen when `addr`'s port is 0). Asking again for an address already served returns it
/// at once.
///
/// # Errors
/// `Config`, naming the address, when it cannot be bound (in use, not local, no permission).
pub fn serve(addr: SocketAddr) -> Result<SocketAddr> {
    let mut served = SERVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = served.get(&addr) {
        return Ok(*a);
    }
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            Error::config(format!(
                "the metrics address {addr} cannot be bound ({e}): choose a free local ip:port"
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(format!("reading the metrics endpoint's address ({addr})"), e))?;
    registry::global().start_exporting();
    std::thread::Builder::new()
        .name(format!("weir-metrics-{}", local.port()))
        .spawn(move || run(listener, local))
        .map_err(|e| Error::io("spawning the metrics endpoint's thread", e))?;
    tracing::info!(%local, "serving metrics at http://{local}/metrics");
    served.insert(addr, local);
    if addr.port() == 0 {
        served.insert(local, local);
    }
    Ok(local)
}

fn run(listener: std::net::TcpListener, local: SocketAddr) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, %local, "the metrics endpoint could not start its runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, %local, "the metrics endpoint could not listen");
                return;
            }
        };
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, %local, "accepting a metrics scrape failed");
                    continue;
                }
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service =
                    hyper::service::service_fn(|req| async move { Ok::<_, std::convert::Infallible>(answer(&req)) });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "a metrics scrape's connection ended with an error");
                }
            });
        }
    });
}

fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    if req.uri().path() != "/metrics" {
        *res.status_mut() = StatusCode::NOT_FOUND;
        *res.body_mut() = Full::new(Bytes::from_static(b"Weir serves its metrics at /metrics\n"));
        return res;
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(CONTENT_TYPE) {
        res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    *res.body_mut() = Full::new(Bytes::from(registry::global().render()));
    res
}
