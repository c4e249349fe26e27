//! Keep-alive TCP connections to plain `http` upstreams, shared by every worker thread: the
//! proxy's hottest path. A request pops an idle connection of its upstream's authority (or opens
//! one) and speaks HTTP/1.1 on it itself ([`super::http1`]); the response body gives it back when
//! it ends cleanly, most recently used first out.
//!
//! Hand-written rather than hyper-util's legacy `Client`, which per request boxes the response
//! future, races the pool checkout against a lazily built connect future, hashes a
//! (scheme, authority) key it clones, and, when the body is not done yet, spawns a task that waits
//! for the connection to be idle again; hyper-util's composable `client::pool` is still
//! experimental, with types that cannot be named. It pools bare `TcpStream`s rather than hyper's
//! `client::conn::http1` senders because each of those runs a task of its own that the request
//! has to hand its message to and wake, which cost more than the rest of the upstream side
//! together. TLS (which may negotiate `h2`), gRPC and upgrades stay on the legacy client.
//!
//! Nobody reads an idle connection, so the pool learns that an upstream closed one (or sent
//! something unasked, like a 408 before closing) from the socket's readiness, which the runtime
//! records from epoll at no cost: a connection whose last read drained the socket and that has
//! become readable since is not reused.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fnv::FnvHashMap;
use http::uri::{Authority, Scheme};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tower_service::Service as _;

use super::body::BoxError;
use super::http1::HeaderSpan;

/// Idle connections kept per authority; more are closed when they come back.
const MAX_IDLE_PER_AUTHORITY: usize = 1024;
/// What a connection's read buffer starts with: a typical response head and a small body in one
/// read.
const READ_BUFFER: usize = 8 * 1024;

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
    connection: Connection,
    since: Instant,
}

/// An open connection and the buffers that go with it from one request to the next.
pub struct Connection {
    pub stream: TcpStream,
    /// What has been read and not parsed yet; empty between exchanges.
    pub read_buf: BytesMut,
    /// The next request's head (and small body), encoded.
    pub write_buf: Vec<u8>,
    /// Where the answer's header fields are in its head, while it is parsed.
    pub header_spans: Vec<HeaderSpan>,
    /// The read timeout while the answer's head is awaited, made once.
    pub read_timer: Option<Pin<Box<Sleep>>>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_BUFFER),
            write_buf: Vec::with_capacity(1024),
            header_spans: Vec::new(),
            read_timer: None,
        }
    }

    /// Whether nothing has arrived since the last exchange drained the socket: no close, no
    /// stray bytes.
    fn is_quiet(&self) -> bool {
        // Without readiness recorded this fails at once, with no system call. Readiness can also
        // be left over from a read that filled its buffer to the last byte (only a short read
        // tells the runtime the socket is drained): then the read decides, and clears it when
        // nothing is there.
        let mut probe = [0u8; 1];
        matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
#[error("connecting to {authority}: {source}")]
pub struct ConnectError {
    authority: Authority,
    #[source]
    source: BoxError,
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

    /// The most recently used idle connection to `authority` that nothing happened to since.
    pub fn checkout(&self, authority: &Authority) -> Option<(Connection, Lease)> {
        let connection = {
            let mut idle = self
                .idle
                .by_authority
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let connections = idle.get_mut(authority.as_str())?;
            loop {
                let idle = connections.pop()?;
                if idle.since.elapsed() <= self.idle.timeout && idle.connection.is_quiet() {
                    break idle.connection;
                }
            }
        };
        Some((connection, self.lease(authority, true)))
    }

    /// A new connection to `authority`.
    pub async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<(Connection, Lease), ConnectError> {
        let failed = |source: BoxError| ConnectError {
            authority: authority.clone(),
            source,
        };
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| failed(e.into()))?;
        let stream = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| failed(e.into()))?
            .into_inner();
        Ok((Connection::new(stream), self.lease(authority, false)))
    }

    fn lease(&self, authority: &Authority, reused: bool) -> Lease {
        Lease {
            authority: authority.clone(),
            idle: Arc::downgrade(&self.idle),
            reused,
        }
    }
}

/// Where a connection taken from (or made for) the pool goes back to once its exchange ended
/// cleanly; a connection that is not given back is closed when dropped.
pub struct Lease {
    authority: Authority,
    idle: Weak<IdleConnections>,
    /// The connection served a request before: the upstream may have closed it meanwhile.
    reused: bool,
}

impl Lease {
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Pools `connection` for the next request to the same authority.
    pub fn give_back(self, connection: Connection) {
        if let Some(idle) = self.idle.upgrade() {
            idle.put(&self.authority, connection);
        }
    }
}

/// Closes connections idle for longer than the timeout, or closed by their upstream, even when no
/// request comes for their upstream any more, until the pool is gone.
async fn close_expired(idle: Weak<IdleConnections>) {
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
            connections.retain(|c| c.since.elapsed() <= idle.timeout && c.connection.is_quiet());
            !connections.is_empty()
        });
    }
}

impl IdleConnections {
    fn put(&self, authority: &Authority, connection: Connection) {
        let mut by_authority = self
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connections = match by_authority.get_mut(authority.as_str()) {
            Some(connections) => connections,
            None => by_authority.entry(authority.as_str().into()).or_default(),
        };
        // The oldest are first: those that outlived the idle timeout go.
        let now = Instant::now();
        let expired = connections
            .iter()
            .take_while(|c| now.saturating_duration_since(c.since) > self.timeout)
            .count();
        connections.drain(..expired);
        if connections.len() < MAX_IDLE_PER_AUTHORITY {
            connections.push(Idle {
                connection,
                since: now,
            });
        }
    }
}
