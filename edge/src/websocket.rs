//! WebSocket upgrades: an HTTP/1.1 request with `Connection: upgrade` and `Upgrade: websocket` goes
//! upstream with those headers kept, and once the upstream answers 101 both connections are taken
//! over and bytes are copied both ways until either side closes. Other upgrades are dropped like
//! any hop-by-hop header, as Kong does: an `h2c` upgrade spliced through would let a client talk
//! to the upstream past the router.

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{request, response, HeaderMap, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
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
    /// in a task of their own; otherwise the upgrade is dropped and the answer goes back as is.
    pub fn splice(self, upstream: &mut response::Parts) {
        if upstream.status != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let Some(upstream_upgrade) = upstream.extensions.remove::<OnUpgrade>() else {
            return;
        };
        self.restore_headers(&mut upstream.headers);
        let client_upgrade = self.client;
        let span = tracing::debug_span!("upgraded");
        tokio::spawn(
            async move {
                let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok(both) => both,
                    Err(e) => {
                        tracing::debug!(error = %e, "upgrade did not complete");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    Ok((sent, received)) => {
                        tracing::debug!(sent, received, "upgraded connection closed");
                    }
                    Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
                }
            }
            .instrument(span),
        );
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
