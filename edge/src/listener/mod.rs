//! The accept loop every listener shares: HTTP/1.1 and HTTP/2 on one port via hyper-util's `auto`
//! builder (h2c with prior knowledge in plain text, ALPN over TLS), upgrades (WebSocket), and a
//! graceful drain on shutdown. Plain-text connections start on the listener's own HTTP/1.1 path
//! ([`http1`]), which hands them to hyper at the first request it does not answer itself.

pub(crate) mod http1;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::proxy::ConnectionInfo;
use crate::router::Scheme;
use crate::shutdown::wait_for_shutdown;
use crate::tls::TlsTerminator;
use crate::upstream::body::BoxError;
use crate::upstream::http1::PassedFields;

/// A request's body as a listener hands it over: hyper's, or none (the requests the listener's own
/// HTTP/1.1 path answers carry none).
pub enum IncomingBody {
    Hyper(Incoming),
    Empty,
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            IncomingBody::Hyper(body) => Pin::new(body).poll_frame(cx),
            IncomingBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            IncomingBody::Hyper(body) => body.is_end_stream(),
            IncomingBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            IncomingBody::Hyper(body) => body.size_hint(),
            IncomingBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// How long requests in flight may take to finish once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a client gets to send a request head unless the edge is configured otherwise, so
/// idle half-open connections do not pile up.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until shutdown, then lets open requests finish (up to [`DRAIN_GRACE`]).
/// With `tls`, connections are TLS (ALPN picks HTTP/2 or HTTP/1.1) and requests are `https`. A
/// connection that has not sent a whole request head within `header_read_timeout` of waiting
/// for one is closed.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: Option<TlsTerminator>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    header_read_timeout: Duration,
) where
    H: Fn(ConnectionInfo, Request<IncomingBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
{
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // Head and body copied into one buffer and written with `write`: cheaper than queueing
        // them for `writev` at the sizes most answers have.
        .writev(false);
    builder.http2().timer(TokioTimer::new());
    // Every connection task holds a receiver; the sender's `closed` says they have all ended.
    let (open_connections, _) = watch::channel(());
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
        let scheme = if tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let info = ConnectionInfo::new(peer, local_port, scheme);
        let connection = Connection {
            builder: builder.clone(),
            handler: handler.clone(),
            shutdown: shutdown.clone(),
            header_read_timeout,
            _open: open_connections.subscribe(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve_plain(stream, info).await,
                Some(tls) => {
                    if let Some(terminated) = tls.handshake(stream).await {
                        let info = ConnectionInfo {
                            sni: terminated.sni,
                            ..info
                        };
                        connection.serve(terminated.stream, info).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_GRACE, open_connections.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}

/// What one accepted connection needs to be served.
struct Connection<H> {
    builder: auto::Builder<TokioExecutor>,
    handler: H,
    shutdown: watch::Receiver<bool>,
    header_read_timeout: Duration,
    /// Held while the connection is open, so shutdown can wait for it.
    _open: watch::Receiver<()>,
}

impl<H, F, B> Connection<H>
where
    H: Fn(ConnectionInfo, Request<IncomingBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
{
    /// Serves a plain-text connection on the listener's own HTTP/1.1 path, then, from the first
    /// request that path leaves to hyper, with hyper.
    async fn serve_plain(mut self, stream: TcpStream, info: ConnectionInfo) {
        let ended = http1::serve(
            stream,
            &info,
            &self.handler,
            &mut self.shutdown,
            self.header_read_timeout,
        )
        .await;
        if let http1::Ended::HandOff(read, stream) = ended {
            self.serve(Rewind { read, stream }, info).await;
        }
    }

    /// Serves requests until the client leaves, the connection is upgraded (a WebSocket goes on
    /// in its own task), or shutdown lets the requests in flight finish.
    async fn serve<IO>(mut self, io: IO, info: ConnectionInfo)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = info.peer;
        let handler = self.handler;
        let service = service_fn(move |request| {
            // Boxed: hyper moves the request's future several times before polling it, and the
            // proxy's is a few KiB.
            let answer = Box::pin(handler(info.clone(), request.map(IncomingBody::Hyper)));
            async move {
                // hyper writes a map: the fields passed as they came go into it.
                let (mut parts, body) = answer.await.into_parts();
                PassedFields::into_headers(&mut parts.headers, &mut parts.extensions);
                Ok::<_, Infallible>(Response::from_parts(parts, body))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = wait_for_shutdown(&mut self.shutdown) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
}

/// A connection handed to hyper with the bytes already read from it, which it reads first.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.has_remaining() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
