//! Keep-alive HTTP/1.1 connections to plain `http` upstreams, shared by every worker thread: the
//! proxy's hottest path. A request pops an idle connection of its upstream's authority (or opens
//! one) and drives it with hyper's own `client::conn::http1`; the response body puts it back when
//! it ends, most recently used first out.
//!
//! Hand-written rather than hyper-util's legacy `Client`, which per request boxes the response
//! future, races the pool checkout against a lazily built connect future, hashes a
//! (scheme, authority) key it clones, and, when the body is not done yet, spawns a task that waits
//! for the connection to be idle again; telling connecting from waiting (for the connect timeout)
//! needs a `CaptureConnection` channel on top. hyper-util's composable `client::pool` is still
//! experimental, with types that cannot be named. TLS (which may negotiate `h2`), gRPC and
//! upgrades stay on the legacy client.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fnv::FnvHashMap;
use http::uri::{Authority, Scheme};
use http::Uri;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;
use tracing::Instrument;

use super::body::{BoxError, RequestBody};

/// Idle connections kept per authority; more are closed when they come back.
const MAX_IDLE_PER_AUTHORITY: usize = 1024;

/// Connections to plain-HTTP upstreams.
pub struct Http1Pool {
    idle: Arc<IdleConnections>,
    connector: HttpConnector,
}

struct IdleConnections {
    /// Oldest first. Keyed by the authority as written in the config (services' hosts, targets),
    /// so a fast hash is safe.
    by_authority: Mutex<FnvHashMap<Box<str>, Vec<Idle>>>,
    timeout: Duration,
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: Authority,
        #[source]
        source: BoxError,
    },
    #[error("HTTP/1.1 handshake with {authority}: {source}")]
    Handshake {
        authority: Authority,
        #[source]
        source: hyper::Error,
    },
}

impl Http1Pool {
    /// `connector` opens TCP connections (its own connect timeout, if any, applies);
    /// connections idle for longer than `idle_timeout` are not reused.
    /// Outside a Tokio runtime, idle connections are only closed when a request comes by.
    pub fn new(connector: HttpConnector, idle_timeout: Duration) -> Http1Pool {
        let idle = Arc::new(IdleConnections {
            by_authority: Mutex::default(),
            timeout: idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(close_expired(Arc::downgrade(&idle)));
        }
        Http1Pool { idle, connector }
    }

    /// The most recently used idle connection to `authority` that can take a request now.
    pub fn checkout(&self, authority: &Authority) -> Option<PooledConnection> {
        let mut idle = self
            .idle
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connections = idle.get_mut(authority.as_str())?;
        // Connections are pooled ready for a request: one that is not any more is closing.
        let sender = loop {
            let connection = connections.pop()?;
            if connection.sender.is_ready() && connection.since.elapsed() <= self.idle.timeout {
                break connection.sender;
            }
        };
        Some(PooledConnection {
            sender: Some(sender),
            authority: authority.clone(),
            idle: Arc::downgrade(&self.idle),
            reused: true,
        })
    }

    /// A new connection to `authority`, its connection task spawned.
    pub async fn connect(&self, authority: &Authority) -> Result<PooledConnection, ConnectError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ConnectError::Connect {
                authority: authority.clone(),
                source: e.into(),
            })?;
        let stream = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| ConnectError::Connect {
                authority: authority.clone(),
                source: e.into(),
            })?;
        let (sender, connection) = http1::Builder::new()
            // As the listener: one buffer, one `write`.
            .writev(false)
            .handshake::<_, RequestBody>(stream)
            .await
            .map_err(|source| ConnectError::Handshake {
                authority: authority.clone(),
                source,
            })?;
        let span = tracing::debug_span!("upstream_connection", %authority);
        tokio::spawn(
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream connection failed");
                }
            }
            .instrument(span),
        );
        Ok(PooledConnection {
            sender: Some(sender),
            authority: authority.clone(),
            idle: Arc::downgrade(&self.idle),
            reused: false,
        })
    }
}

/// A connection taken from (or made for) the pool; it goes back when dropped (once it can take
/// the next request), unless closed or [`PooledConnection::discard`]ed.
pub struct PooledConnection {
    sender: Option<SendRequest<RequestBody>>,
    authority: Authority,
    idle: std::sync::Weak<IdleConnections>,
    /// It served a request before: the upstream may have closed it meanwhile.
    reused: bool,
}

impl PooledConnection {
    pub fn sender(&mut self) -> Option<&mut SendRequest<RequestBody>> {
        self.sender.as_mut()
    }

    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Closes the connection instead of pooling it (its exchange did not finish cleanly).
    pub fn discard(mut self) {
        self.sender = None;
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        let Some(idle) = self.idle.upgrade() else {
            return;
        };
        if sender.is_ready() {
            idle.put(&self.authority, sender);
            return;
        }
        if sender.is_closed() {
            return;
        }
        // The body ended on this side before the connection's task took in its end (another
        // worker thread runs it): pooled once it can take a request, as hyper-util's client does.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let authority = self.authority.clone();
        runtime.spawn(async move {
            if sender.ready().await.is_ok() {
                idle.put(&authority, sender);
            }
        });
    }
}

/// Closes connections idle for longer than the timeout even when no request comes for their
/// upstream any more, until the pool is gone.
async fn close_expired(idle: std::sync::Weak<IdleConnections>) {
    let Some(period) = idle.upgrade().map(|idle| idle.timeout) else {
        return;
    };
    let mut ticks = tokio::time::interval(period.max(Duration::from_secs(1)));
    loop {
        ticks.tick().await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let mut by_authority = idle
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_authority.retain(|_, connections| {
            connections.retain(|c| c.since.elapsed() <= idle.timeout && !c.sender.is_closed());
            !connections.is_empty()
        });
    }
}

impl IdleConnections {
    fn put(&self, authority: &Authority, sender: SendRequest<RequestBody>) {
        let mut by_authority = self
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connections = match by_authority.get_mut(authority.as_str()) {
            Some(connections) => connections,
            None => by_authority.entry(authority.as_str().into()).or_default(),
        };
        // The oldest are first: those that outlived the idle timeout go.
        let expired = connections
            .iter()
            .take_while(|c| c.since.elapsed() > self.timeout)
            .count();
        connections.drain(..expired);
        if connections.len() < MAX_IDLE_PER_AUTHORITY {
            connections.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}
