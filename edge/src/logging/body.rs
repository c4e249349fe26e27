//! A request's log line from arrival to the end of its response: [`LogDraft`] is filled in as
//! the proxy learns things; [`CountedBody`] counts the request body bytes read from the client;
//! [`LoggedBody`] wraps the response body, counts the bytes sent and queues the line when the
//! body ends or is dropped (the client went away). Frames pass through untouched, trailers too.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tollgate_model::request_log::logged_path;
use uuid::Uuid;

use super::record::{LogRecord, LogText};
use super::LogSink;
use crate::errors::ProxyBody;
use crate::metrics::RequestLabels;
use crate::upstream::body::BoxError;
use crate::websocket::Tunnel;

/// Counts a body's data bytes into a shared counter; `None` counts nothing (a request without a
/// body, or logging off), so those requests allocate no counter.
pub struct CountedBody<B> {
    inner: B,
    counter: Option<Arc<AtomicU64>>,
}

impl<B: Body> CountedBody<B> {
    pub fn new(inner: B, counter: Option<Arc<AtomicU64>>) -> Self {
        CountedBody { inner, counter }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counter)) = (&polled, &this.counter) {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A log line under way: everything known at the time the control plane was selected, plus the
/// request body counter.
pub struct LogDraft {
    record: LogRecord,
    bytes_in: Option<Arc<AtomicU64>>,
}

/// What the proxy knows when it has picked the control plane.
pub struct Arrival<'a> {
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    pub request_id: &'a HeaderValue,
    pub method: &'a Method,
    pub host: &'a str,
    /// As received, without the query.
    pub path: &'a str,
    pub client_ip: IpAddr,
    /// Whether the request has a body to count.
    pub has_body: bool,
}

impl LogDraft {
    pub fn new(arrival: Arrival<'_>) -> LogDraft {
        LogDraft {
            record: LogRecord::new(
                arrival.organization_id,
                arrival.control_plane_id,
                LogText {
                    request_id: arrival.request_id.to_str().unwrap_or_default(),
                    // Host and method are as long as the client likes: cut like paths.
                    method: logged_path(arrival.method.as_str()),
                    host: logged_path(arrival.host),
                    path: logged_path(arrival.path),
                },
                arrival.client_ip,
            ),
            bytes_in: arrival.has_body.then(|| Arc::new(AtomicU64::new(0))),
        }
    }

    /// The counter the request body wrapper adds to.
    pub fn bytes_in_counter(&self) -> Option<Arc<AtomicU64>> {
        self.bytes_in.clone()
    }

    /// Wraps the response body so that the line is completed and queued when it ends.
    // Inlined, the line is built where it ends up instead of being copied there.
    #[inline]
    pub fn answered(
        mut self,
        labels: &RequestLabels,
        status: StatusCode,
        received: Instant,
        body: ProxyBody,
        sink: LogSink,
    ) -> LoggedBody {
        self.label(labels, status);
        LoggedBody {
            inner: body,
            pending: Some(Box::new(Pending {
                draft: self,
                received,
                sink,
            })),
        }
    }

    /// Completes the line of a request whose connection was upgraded: its latencies are the
    /// handshake's; it is queued when `tunnel` closes, with the bytes the tunnel carried (as
    /// Kong logs an upgraded request). The answer has no body, so nothing waits for one.
    pub fn upgraded(
        mut self,
        labels: &RequestLabels,
        status: StatusCode,
        received: Instant,
        sink: LogSink,
        tunnel: Tunnel,
    ) {
        self.label(labels, status);
        sink.push_when_closed(self.complete(received), tunnel);
    }

    /// What the proxy learned about the request, and its status.
    fn label(&mut self, labels: &RequestLabels, status: StatusCode) {
        self.record.service_id = labels.service;
        self.record.route_id = labels.route;
        self.record.status = status.as_u16();
        self.record.latency_upstream_us = labels.upstream.map(micros);
    }

    /// The line as it stands now: latencies up to now, the request body's bytes.
    #[inline]
    fn complete(self, received: Instant) -> LogRecord {
        let mut record = self.record;
        record.latency_total_us = micros(received.elapsed()).max(1);
        record.latency_edge_us = record
            .latency_total_us
            .saturating_sub(record.latency_upstream_us.unwrap_or(0));
        if let Some(bytes_in) = self.bytes_in {
            record.bytes_in = bytes_in.load(Ordering::Relaxed);
        }
        record
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

struct Pending {
    draft: LogDraft,
    received: Instant,
    sink: LogSink,
}

impl Pending {
    fn finish(self) {
        let Pending {
            draft,
            received,
            sink,
        } = self;
        sink.push(draft.complete(received));
    }
}

/// The response body the proxy hands to hyper.
pub struct LoggedBody {
    inner: ProxyBody,
    /// Boxed: the response is moved several times on its way to the client, and a pointer is
    /// cheaper to move than the line.
    pending: Option<Box<Pending>>,
}

impl LoggedBody {
    /// A body with no log line (logging off, or no tenant to attribute it to).
    pub fn unlogged(inner: ProxyBody) -> LoggedBody {
        LoggedBody {
            inner,
            pending: None,
        }
    }

    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            (*pending).finish();
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(pending) = &mut this.pending {
                    if let Some(data) = frame.data_ref() {
                        pending.draft.record.bytes_out += data.len() as u64;
                    }
                }
                // hyper stops polling once the body says it has ended: the line is complete.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(_) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    /// The client went away mid-body, or the body was never polled (HEAD, 304, an upgrade).
    fn drop(&mut self) {
        self.finish();
    }
}
