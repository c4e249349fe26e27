//! The accept loop both listeners share: HTTP/1.1 and h2c (prior knowledge) on one port via
//! hyper-util's `auto` builder, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::errors::ProxyBody;
use crate::proxy::ConnectionInfo;
use crate::router::Scheme;
use crate::shutdown::wait_for_shutdown;

/// How long requests in flight may take to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// A client gets this long to send a request head, so idle half-open connections do not pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until shutdown, then lets open requests finish (up to [`DRAIN_GRACE`]).
pub async fn serve<H, F>(
    listener: TcpListener,
    scheme: Scheme,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(ConnectionInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = wait_for_shutdown(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnectionInfo {
            peer,
            local_port,
            scheme,
        };
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let answer = handler(info, request);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}
