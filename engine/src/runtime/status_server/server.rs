//! The status HTTP server: an axum router on its own thread with a small tokio runtime, so that
//! it runs next to the master thread whatever runtime (if any) the program uses.

use super::snapshot::{self, JobShape};
use crate::checkpoint::location::open_location;
use crate::runtime::handle::{JobStopper, Live};
use crate::runtime::status::rates::RateWindow;
use crate::runtime::status::{CheckpointEntry, JobStatus, StatusServer};
use crate::{Error, ErrorKind, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The status page: one self-contained HTML file (inline CSS and JavaScript).
const PAGE: &str = include_str!("page.html");

/// How often the server samples the subtasks' counters for rates.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// How long the server lets open requests finish once the job's handle is gone.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

struct Shared {
    live: Arc<Live>,
    shape: JobShape,
    stopper: JobStopper,
    started: Instant,
    rates: Mutex<RateWindow>,
}

impl Shared {
    fn status(&self) -> JobStatus {
        let rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        snapshot::status(&self.live, &self.shape, &rates, self.started)
    }

    fn sample(&self) {
        let counters = self.live.counters();
        let attempt = self.live.attempt.load(std::sync::atomic::Ordering::Relaxed);
        self.rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample(Instant::now(), attempt, &counters);
    }
}

/// Binds `addr` and serves the status of the job `live` shows.
///
/// # Errors
/// `Config` naming the address when it cannot be bound; `Internal` when the server's
/// thread or runtime cannot start.
pub(crate) fn serve_status(
    addr: SocketAddr,
    live: Arc<Live>,
    shape: JobShape,
    stopper: JobStopper,
) -> Result<StatusServer> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::config(format!(
            "cannot serve the job's status on {addr}: {e} (set another status address, or none)"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the status server's address", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("setting up the status server's socket", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the status server's runtime", e))?;
    let shared = Arc::new(Shared {
        live,
        shape,
        stopper,
        started: Instant::now(),
        rates: Mutex::new(RateWindow::default()),
    });
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("weir-status".into())
        .spawn(move || serve(runtime, listener, shared, stopped))
        .map_err(|e| Error::io("spawning the status server thread", e))?;
    tracing::info!(address = %bound, "serving the job's status");
    Ok(StatusServer::new(bound, shutdown, thread))
}

fn serve(
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the status server cannot listen");
                return;
            }
        };
        let sampler = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    every.tick().await;
                    shared.sample();
                }
            })
        };
        let app = Router::new()
            .route("/", get(page))
            .route("/api/status", get(status))
            .route("/api/checkpoints", get(checkpoints))
            .route("/api/savepoint", post(savepoint))
            .route("/api/stop", post(stop))
            .route("/api/cancel", post(cancel))
            .with_state(shared);
        let graceful = {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
        let mut stopped = stopped;
        tokio::select! {
            r = server => if let Err(e) = r {
                tracing::error!(error = %e, "the status server failed");
            },
            _ = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {}
        }
        sampler.abort();
    });
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn status(State(s): State<Arc<Shared>>) -> Json<JobStatus> {
    Json(s.status())
}

async fn checkpoints(State(s): State<Arc<Shared>>) -> Json<Vec<CheckpointEntry>> {
    Json(s.live.checkpoints.lock().unwrap_or_else(|e| e.into_inner()).entries())
}

/// An error answer: an HTTP status and `{"error": message}`.
fn failure(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

fn error_response(e: Error) -> Response {
    let code = match e.kind() {
        ErrorKind::Config => StatusCode::BAD_REQUEST,
        // Not taken: the job ended first.
        ErrorKind::Cancelled => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(code, e.to_string())
}

/// The savepoint target in a request body: the location itself, a JSON string, or
/// `{"target": "..."}`.
fn target_of(body: &str) -> Option<String> {
    let body = body.trim();
    let target = if body.starts_with('{') || body.starts_with('"') {
        match serde_json::from_str::<serde_json::Value>(body).ok()? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(o) => o.get("target")?.as_str()?.to_string(),
            _ => return None,
        }
    } else {
        body.to_string()
    };
    Some(target).filter(|t| !t.is_empty())
}

async fn savepoint(State(s): State<Arc<Shared>>, body: String) -> Response {
    let Some(target) = target_of(&body) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "the request body must name the savepoint's target location (a directory, file:// or s3:// URL)".into(),
        );
    };
    let storage = match open_location(&target) {
        Ok(storage) => storage,
        Err(e) => return error_response(e),
    };
    let stopper = s.stopper.clone();
    match tokio::task::spawn_blocking(move || stopper.request(Some(storage), false)).await {
        Ok(Ok(sp)) => Json(sp).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the savepoint request failed: {e}"),
        ),
    }
}

async fn stop(State(s): State<Arc<Shared>>) -> Response {
    let stopper = s.stopper.clone();
    match tokio::task::spawn_blocking(move || stopper.stop()).await {
        Ok(Ok(id)) => Json(serde_json::json!({ "stopped_at": id.get() })).into_response(),
        Ok(Err(e)) => error_response(e),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the stop request failed: {e}"),
        ),
    }
}

async fn cancel(State(s): State<Arc<Shared>>) -> Response {
    if s.stopper.job_ended() {
        return failure(StatusCode::CONFLICT, "the job has ended".into());
    }
    s.stopper.cancel();
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "cancelled": true }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::target_of;

    #[test]
    fn savepoint_targets() {
        assert_eq!(target_of(" /tmp/sp \n").as_deref(), Some("/tmp/sp"));
        assert_eq!(target_of("\"s3://b/sp\"").as_deref(), Some("s3://b/sp"));
        assert_eq!(target_of("{\"target\": \"file:///x\"}").as_deref(), Some("file:///x"));
        assert_eq!(target_of(""), None);
        assert_eq!(target_of("{\"where\": 1}"), None);
    }
}
