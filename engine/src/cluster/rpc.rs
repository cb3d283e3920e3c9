//! The control plane's transport: tarpc over TCP with JSON frames (length-delimited, at most
//! [`MAX_FRAME`]). Control messages are few and small (acknowledgements name stored files, they
//! do not carry state), so a self-describing encoding costs nothing that matters and keeps every
//! message readable in a capture.

use crate::{Error, Result};
use futures::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tarpc::serde_transport::tcp;
use tarpc::tokio_serde::formats::Json;

/// Longest control message.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A call context whose deadline is `timeout` from now.
pub(crate) fn within(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// Starts the control-plane runtime of a process.
pub(crate) fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("weir-{name}-rpc"))
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the control-plane runtime", e))
}

/// Binds the control service's listener on `addr`.
///
/// # Errors
/// `Config` when the address cannot be bound (in use, not local).
pub(crate) async fn listen<Req, Resp>(
    addr: SocketAddr,
    what: &str,
) -> Result<tcp::Incoming<Req, Resp, Json<Req, Resp>, fn() -> Json<Req, Resp>>>
where
    Req: for<'de> serde::Deserialize<'de>,
    Resp: serde::Serialize,
{
    let codec: fn() -> Json<Req, Resp> = Json::default;
    let mut incoming = tcp::listen(addr, codec)
        .await
        .map_err(|e| Error::config(format!("{what} cannot listen on {addr}: {e}")).with_source(e))?;
    incoming.config_mut().max_frame_length(MAX_FRAME);
    Ok(incoming)
}

/// Serves every connection `incoming` accepts with `$server.serve()`, each request on its own
/// task; evaluates to the address bound.
macro_rules! serve_all {
    ($incoming:expr, $server:expr) => {{
        let mut incoming = $incoming;
        let bound = incoming.local_addr();
        let server = $server;
        tokio::spawn(async move {
            use futures::StreamExt;
            use tarpc::server::Channel;
            while let Some(conn) = incoming.next().await {
                let Ok(transport) = conn else { continue };
                tokio::spawn(
                    tarpc::server::BaseChannel::with_defaults(transport)
                        .execute(server.clone().serve())
                        .for_each(|request| async move {
                            tokio::spawn(request);
                        }),
                );
            }
        });
        bound
    }};
}
pub(crate) use serve_all;

/// Runs `f` on `rt` from a thread outside it.
pub(crate) fn block_on<F: Future>(rt: &tokio::runtime::Handle, f: F) -> F::Output {
    rt.block_on(f)
}
