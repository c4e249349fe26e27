//! The bodies on either side of an upstream exchange. [`RequestBody`] tells the attempt waiting
//! for a response how far sending has got ([`SendProgress`]), which is what the write and read
//! timeouts are measured from (on hyper-util's client; the plain-HTTP path in [`super::http1`]
//! keeps its own time); [`UpstreamBody`] streams the response back, failing when the upstream goes
//! quiet for longer than the read timeout, and ends the target's in-flight count as soon as the
//! last chunk is through.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::http1::ResponseBody;
use crate::balancer::targets::InFlight;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body, its bytes counted for the request log.
pub type ClientBody = crate::logging::body::CountedBody<crate::listener::IncomingBody>;

/// Where sending a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The connection has not asked for the body yet (connecting, or writing the head).
    Starting,
    /// A chunk went to the connection at this instant, which has not asked for the next one yet:
    /// the upstream is not taking data.
    Writing(Instant),
    /// The connection wants more and the client has not sent it yet: not the upstream's doing.
    WaitingForClient,
    /// The whole request was handed over at this instant; the response is awaited.
    Sent(Instant),
}

/// Shared between a request body (polled by the connection's task) and its attempt.
#[derive(Debug)]
pub struct SendProgress {
    phase: Mutex<Phase>,
    /// Woken when the phase changes kind (not for each chunk written).
    changed: Notify,
}

impl SendProgress {
    pub fn new() -> Arc<SendProgress> {
        Arc::new(SendProgress {
            phase: Mutex::new(Phase::Starting),
            changed: Notify::new(),
        })
    }

    pub fn phase(&self) -> Phase {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves at the next change of phase (at once if one happened since the last call).
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    fn set(&self, phase: Phase) {
        let mut current = self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let new_kind = std::mem::discriminant(&*current) != std::mem::discriminant(&phase);
        *current = phase;
        drop(current);
        if new_kind {
            self.changed.notify_one();
        }
    }
}

/// A request body as sent upstream: none, one buffered chunk (which a retry can send again), or
/// the client's body streamed through.
pub struct RequestBody {
    kind: Kind,
    progress: Arc<SendProgress>,
}

enum Kind {
    Empty,
    Buffered(Option<Bytes>),
    Streamed(ClientBody),
}

impl RequestBody {
    pub fn empty(progress: Arc<SendProgress>) -> RequestBody {
        RequestBody {
            kind: Kind::Empty,
            progress,
        }
    }

    pub fn buffered(bytes: Bytes, progress: Arc<SendProgress>) -> RequestBody {
        RequestBody {
            kind: Kind::Buffered(Some(bytes)),
            progress,
        }
    }

    pub fn streamed(body: ClientBody, progress: Arc<SendProgress>) -> RequestBody {
        RequestBody {
            kind: Kind::Streamed(body),
            progress,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Streamed(body) => Pin::new(body).poll_frame(cx),
        };
        let now = Instant::now();
        let phase = match &polled {
            Poll::Pending => Phase::WaitingForClient,
            // The connection does not ask again after the last chunk: it is sent once handed.
            Poll::Ready(Some(Ok(_))) if !this.is_end_stream() => Phase::Writing(now),
            Poll::Ready(_) => Phase::Sent(now),
        };
        this.progress.set(phase);
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Buffered(bytes) => bytes.is_none(),
            Kind::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty | Kind::Buffered(None) => SizeHint::with_exact(0),
            Kind::Buffered(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Streamed(body) => body.size_hint(),
        }
    }
}

/// An upstream's response body on its way to the client.
pub struct UpstreamBody {
    inner: Inner,
    /// Longest wait between two chunks; `None` waits forever.
    read_timeout: Option<Duration>,
    idle: Option<Pin<Box<Sleep>>>,
    in_flight: Option<InFlight>,
}

/// Where the body comes from.
pub enum Inner {
    /// hyper-util's client (TLS, h2, upgrades).
    Hyper(Incoming),
    /// A pooled plain-HTTP connection, which the body gives back when it ends cleanly (and closes
    /// when dropped before).
    Http1(ResponseBody),
    /// Given up on (timed out): a pooled connection is closed.
    Abandoned,
}

impl Inner {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Inner::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Http1(body) => Pin::new(body).poll_frame(cx),
            Inner::Abandoned => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Hyper(body) => body.is_end_stream(),
            Inner::Http1(body) => body.is_end_stream(),
            Inner::Abandoned => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::Hyper(body) => body.size_hint(),
            Inner::Http1(body) => body.size_hint(),
            Inner::Abandoned => SizeHint::with_exact(0),
        }
    }
}

impl UpstreamBody {
    pub fn new(inner: Inner, read_timeout: Duration, in_flight: Option<InFlight>) -> Self {
        UpstreamBody {
            inner,
            read_timeout: Some(read_timeout),
            idle: None,
            in_flight,
        }
    }

    /// The body ended, failed or timed out.
    fn finished(&mut self) {
        if let Some(mut in_flight) = self.in_flight.take() {
            in_flight.release();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.finished();
    }
}

/// A body streamed as is, with no timeout.
impl From<Incoming> for UpstreamBody {
    fn from(inner: Incoming) -> Self {
        UpstreamBody {
            inner: Inner::Hyper(inner),
            read_timeout: None,
            idle: None,
            in_flight: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub struct ReadTimedOut(Duration);

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finished();
                } else if let (Some(idle), Some(timeout)) = (&mut this.idle, this.read_timeout) {
                    idle.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finished();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(timeout) = this.read_timeout else {
                    return Poll::Pending;
                };
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    // Dropping an unfinished pooled body closes its connection.
                    this.inner = Inner::Abandoned;
                    this.finished();
                    this.read_timeout = None;
                    tracing::debug!(?timeout, "upstream read timeout in the response body");
                    return Poll::Ready(Some(Err(Box::new(ReadTimedOut(timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
