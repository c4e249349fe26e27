//! WebSocket upgrades: an HTTP/1.1 request with `Connection: upgrade` and `Upgrade: websocket` goes
//! upstream with those headers kept, and once the upstream answers 101 both connections are taken
//! over and bytes are copied both ways until either side closes, or until nothing has moved either
//! way for the service's `read_timeout` (as nginx, under Kong, times out an upgraded connection).
//! The [`Tunnel`] a splice returns counts the bytes each way and says when it closed, so the
//! request's log line can carry them, as Kong's does.
//! Other upgrades are dropped like any hop-by-hop header, as Kong does: an `h2c` upgrade spliced
//! through would let a client talk to the upstream past the router.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{request, response, HeaderMap, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

/// A client's request to switch protocols, taken out of its request before it goes upstream.
pub struct UpgradeRequest {
    protocol: HeaderValue,
    client: OnUpgrade,
}

impl UpgradeRequest {
    /// The WebSocket upgrade a request asks for, if any.
    pub fn take(parts: &mut request::Parts) -> Option<UpgradeRequest> {
        if !asks_for_websocket(parts.version, &parts.headers) {
            return None;
        }
        let protocol = parts.headers.get(UPGRADE)?.clone();
        let client = parts.extensions.remove::<OnUpgrade>()?;
        Some(UpgradeRequest { protocol, client })
    }

    /// Puts back what hop-by-hop header removal dropped, so the upstream sees the upgrade.
    pub fn restore_headers(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// When the upstream switched protocols, tells the client so and joins the two connections
    /// in a task of their own, closing both once nothing has moved for `idle_timeout`, and
    /// returns the tunnel's account; otherwise the upgrade is dropped and the answer goes back as
    /// is.
    pub fn splice(self, upstream: &mut response::Parts, idle_timeout: Duration) -> Option<Tunnel> {
        if upstream.status != StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let upstream_upgrade = upstream.extensions.remove::<OnUpgrade>()?;
        self.restore_headers(&mut upstream.headers);
        let client_upgrade = self.client;
        let span = tracing::debug_span!("upgraded");
        let traffic = Arc::new(Traffic::new());
        // Dropped when the task ends, however it ends: that is the tunnel closing.
        let (open, closed) = watch::channel(());
        let tunnel = Tunnel {
            traffic: traffic.clone(),
            closed,
        };
        tokio::spawn(
            async move {
                let _open = open;
                let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok(both) => both,
                    Err(e) => {
                        tracing::debug!(error = %e, "upgrade did not complete");
                        return;
                    }
                };
                let mut client = Watched::new(TokioIo::new(client), &traffic, Side::Client);
                let mut upstream = Watched::new(TokioIo::new(upstream), &traffic, Side::Upstream);
                let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                let idle = traffic.idle_for(idle_timeout);
                tokio::select! {
                    copied = copy => match copied {
                        Ok((sent, received)) => {
                            tracing::debug!(sent, received, "upgraded connection closed");
                        }
                        Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
                    },
                    () = idle => tracing::debug!(?idle_timeout, "upgraded connection idle: closed"),
                }
            }
            .instrument(span),
        );
        Some(tunnel)
    }
}

/// An upgraded connection's account: the bytes it has carried each way, and when it closed.
#[derive(Clone)]
pub struct Tunnel {
    traffic: Arc<Traffic>,
    closed: watch::Receiver<()>,
}

impl Tunnel {
    /// Bytes read from the client and from the upstream (sent on to the client) so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.traffic.from_client.load(Ordering::Relaxed),
            self.traffic.to_client.load(Ordering::Relaxed),
        )
    }

    /// Resolves once both connections are closed.
    pub async fn closed(mut self) {
        // Only the sender's drop ends this: nothing is ever sent.
        while self.closed.changed().await.is_ok() {}
    }
}

/// Which connection of a tunnel a [`Watched`] half is.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

/// What has moved through a spliced connection: the bytes read from each side, and when bytes
/// last moved either way.
struct Traffic {
    from_client: AtomicU64,
    to_client: AtomicU64,
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            from_client: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            since: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    /// Finishes once nothing has moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.since + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One half of a spliced connection, noting each read and write that moves bytes and counting
/// the bytes read.
struct Watched<T> {
    io: T,
    traffic: Arc<Traffic>,
    side: Side,
}

impl<T> Watched<T> {
    fn new(io: T, traffic: &Arc<Traffic>, side: Side) -> Watched<T> {
        Watched {
            io,
            traffic: traffic.clone(),
            side,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.traffic.touch();
            let counter = match self.side {
                Side::Client => &self.traffic.from_client,
                Side::Upstream => &self.traffic.to_client,
            };
            counter.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn asks_for_websocket(version: Version, headers: &HeaderMap) -> bool {
    // Most requests ask for nothing: one lookup decides.
    if version != Version::HTTP_11 || !headers.contains_key(UPGRADE) {
        return false;
    }
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let websocket = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    version == Version::HTTP_11 && connection_upgrade && websocket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http1_websocket_upgrades_count() {
        let headers = |connection: &'static str, upgrade: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONNECTION, HeaderValue::from_static(connection));
            headers.insert(UPGRADE, HeaderValue::from_static(upgrade));
            headers
        };
        let websocket = headers("keep-alive, Upgrade", "WebSocket");
        assert!(asks_for_websocket(Version::HTTP_11, &websocket));
        assert!(!asks_for_websocket(Version::HTTP_10, &websocket));
        assert!(!asks_for_websocket(
            Version::HTTP_11,
            &headers("keep-alive", "websocket")
        ));
        assert!(!asks_for_websocket(
            Version::HTTP_11,
            &headers("Upgrade, HTTP2-Settings", "h2c")
        ));
    }
}
