//! The proxy's request path: pick the control plane by Host, route inside it, rewrite the request
//! for the service (URL, Host, hop-by-hop and `X-Forwarded-*` headers) and stream it upstream and
//! the answer back, bodies untouched.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::listener::IncomingBody;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::uri::{self, PathAndQuery};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::Either;
use tracing::field::{display, Empty};
use tracing::Instrument;
use uuid::Uuid;

use crate::errors::{ProxyBody, ProxyError};
use crate::grpc;
use crate::logging::body::{Arrival, CountedBody, LogDraft, LoggedBody};
use crate::logging::LogSink;
use crate::metrics::RequestLabels;
use crate::router::authority::split_authority;
use crate::router::{normalize_path, upstream_path, RequestFacts, Routed, Scheme};
use crate::state::EdgeState;
use crate::upstream::forward::{Forwarded, Outbound, Timeouts};
use crate::upstream::http1::PassedFields;
use crate::upstream::Upstreams;
use crate::websocket::{Tunnel, UpgradeRequest};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Kong's `X-Kong-Proxy-Latency`: milliseconds the edge spent before sending upstream.
const X_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-proxy-latency");
/// Kong's `X-Kong-Upstream-Latency`: milliseconds from sending upstream to its response head.
const X_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-tollgate-upstream-latency");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const VIA_TOLLGATE: HeaderValue = HeaderValue::from_static("1.1 tollgate");

/// What every proxy request shares.
pub struct Proxy {
    pub state: Arc<EdgeState>,
    pub upstreams: Upstreams,
    /// Where request log lines go; `None` when request logs are off.
    pub logs: Option<LogSink>,
}

/// Where a request came in.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub scheme: Scheme,
    /// The server name a TLS client asked for.
    pub sni: Option<Arc<str>>,
    /// `peer`'s IP and the port the connection came in on, as header values made once per
    /// connection.
    pub client_ip_header: HeaderValue,
    pub local_port_header: HeaderValue,
}

impl ConnectionInfo {
    pub fn new(peer: SocketAddr, local_port: u16, scheme: Scheme) -> ConnectionInfo {
        ConnectionInfo {
            peer,
            scheme,
            sni: None,
            client_ip_header: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            local_port_header: HeaderValue::from(local_port),
        }
    }
}

impl Proxy {
    /// Answers one request; never fails (errors become responses).
    pub async fn handle(
        self: Arc<Self>,
        connection: ConnectionInfo,
        request: Request<IncomingBody>,
    ) -> Response<LoggedBody> {
        let request_id = request_id_of(request.headers());
        let span = tracing::debug_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            sni = connection.sni.as_deref(),
            organization = Empty,
            control_plane = Empty,
            route = Empty,
        );
        let grpc = grpc::is_grpc_request(request.version(), request.headers());
        async move {
            let received = Instant::now();
            let mut labels = RequestLabels::default();
            let mut draft = None;
            let mut response = match self
                .forward(
                    connection,
                    request,
                    &request_id,
                    received,
                    &mut labels,
                    &mut draft,
                )
                .await
            {
                Ok(response) => response,
                Err(error) if grpc => error.into_grpc_response(&request_id),
                Err(error) => error.into_response(&request_id),
            };
            let status = response.status();
            self.state
                .metrics
                .observe(&labels, status, received.elapsed());
            tracing::debug!(status = status.as_u16(), "answered");
            // Only a 101 opens a tunnel: other answers skip the lookup.
            let tunnel = if status == StatusCode::SWITCHING_PROTOCOLS {
                response.extensions_mut().remove::<Tunnel>()
            } else {
                None
            };
            match (draft, &self.logs) {
                (Some(draft), Some(sink)) if tunnel.is_none() => response
                    .map(|body| draft.answered(&labels, status, received, body, sink.clone())),
                (Some(draft), Some(sink)) => {
                    if let Some(tunnel) = tunnel {
                        draft.upgraded(&labels, status, received, sink.clone(), tunnel);
                    }
                    response.map(LoggedBody::unlogged)
                }
                (None, Some(sink)) => {
                    // Only a Host that selects no control plane leaves no draft.
                    sink.metrics().unattributed.inc();
                    response.map(LoggedBody::unlogged)
                }
                (_, None) => response.map(LoggedBody::unlogged),
            }
        }
        .instrument(span)
        .await
    }

    async fn forward(
        &self,
        connection: ConnectionInfo,
        request: Request<IncomingBody>,
        request_id: &HeaderValue,
        received: Instant,
        labels: &mut RequestLabels,
        draft: &mut Option<LogDraft>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Held until the response head is back: a swap mid-request does not change its config.
        let served = self.state.served.load_full();
        let (mut parts, body) = request.into_parts();
        let upgrade = UpgradeRequest::take(&mut parts);

        let authority = parts.headers.get(HOST).cloned().or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        });
        let (raw_host, explicit_port) = split_authority(
            authority
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        );
        let host: Cow<'_, str> = if raw_host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(raw_host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(raw_host)
        };
        let port = explicit_port.unwrap_or(connection.scheme.default_port());

        let control_plane = served.select(&host).ok_or(ProxyError::NoRoute)?;
        let span = tracing::Span::current();
        span.record("organization", display(control_plane.organization_id));
        span.record("control_plane", display(control_plane.id));
        labels.control_plane = Some(control_plane.id);

        let original_uri = parts.uri.clone();
        let original_path = original_uri.path();
        let body = match &self.logs {
            Some(_) => {
                let started = LogDraft::new(Arrival {
                    organization_id: control_plane.organization_id,
                    control_plane_id: control_plane.id,
                    request_id,
                    method: &parts.method,
                    host: &host,
                    path: original_path,
                    client_ip: connection.peer.ip(),
                    has_body: !body.is_end_stream(),
                });
                let counted = CountedBody::new(body, started.bytes_in_counter());
                *draft = Some(started);
                counted
            }
            None => CountedBody::new(body, None),
        };
        let path = normalize_path(original_path);
        let facts = RequestFacts {
            method: &parts.method,
            host: &host,
            port,
            path: &path,
            headers: &parts.headers,
            scheme: connection.scheme,
            sni: connection.sni.as_deref(),
        };
        let matched = match control_plane.router.find(&facts) {
            Routed::Matched(matched) => matched,
            Routed::WrongScheme(route) => {
                span.record("route", display(route.id));
                labels.route = Some(route.id);
                let query = parts
                    .uri
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                return Err(ProxyError::HttpsRequired {
                    status: route.https_redirect_status_code,
                    location: format!("https://{host}{original_path}{query}"),
                });
            }
            Routed::NoMatch => return Err(ProxyError::NoRoute),
        };
        let route = matched.route.clone();
        let capture_regex = matched.regex();
        span.record("route", display(route.id));
        labels.route = Some(route.id);
        let service = match &route.service {
            Some(service) if service.enabled => service.clone(),
            _ => return Err(ProxyError::NoService),
        };
        labels.service = Some(service.id);
        labels.matched = Some(route.clone());
        // Where in `path` the stripped prefix is: the match borrows the request's head, which is
        // changed below.
        let stripped_prefix = matched
            .matched
            .filter(|prefix| route.strip_path && !prefix.is_empty())
            .map(|prefix| {
                let start = (prefix.as_ptr() as usize).saturating_sub(path.as_ptr() as usize);
                start..start + prefix.len()
            });
        let target_path = upstream_path(
            service.path.as_deref(),
            &path,
            matched.postfix,
            route.strip_path,
            route.path_handling,
        );
        let upstream = route.upstream.as_ref().ok_or_else(|| {
            ProxyError::Internal(format!(
                "building the upstream URI: invalid authority {}:{}",
                service.host, service.port
            ))
        })?;
        let path_and_query = match original_uri.path_and_query() {
            // Most requests go upstream with the path they came with: theirs is reused instead
            // of being joined and parsed again.
            Some(same) if same.path() == target_path => same.clone(),
            _ => match parts.uri.query() {
                Some(query) => {
                    let mut joined = String::with_capacity(target_path.len() + 1 + query.len());
                    joined.push_str(&target_path);
                    joined.push('?');
                    joined.push_str(query);
                    PathAndQuery::try_from(joined)
                }
                None => PathAndQuery::try_from(target_path),
            }
            .map_err(|e| ProxyError::Internal(format!("building the upstream URI: {e}")))?,
        };
        let mut uri = uri::Parts::default();
        uri.scheme = Some(upstream.scheme.clone());
        uri.authority = Some(upstream.authority.clone());
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri)
            .map_err(|e| ProxyError::Internal(format!("building the upstream URI: {e}")))?;
        parts.version = Version::HTTP_11;

        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        if let Some(upgrade) = &upgrade {
            upgrade.restore_headers(headers);
        }
        let added = UpstreamHeaders {
            host: if route.preserve_host {
                authority.clone()
            } else {
                upstream.host_header.clone()
            },
            forwarded_for: take_proxy_set_headers(headers, &connection),
            real_ip: connection.client_ip_header.clone(),
            proto: connection.scheme.as_str(),
            forwarded_host: &host,
            forwarded_port: connection.local_port_header.clone(),
            forwarded_path: original_path,
            forwarded_prefix: stripped_prefix.and_then(|range| path.get(range)),
            request_id: request_id.clone(),
        };

        let forwarded = self
            .upstreams
            .forward(Outbound {
                head: parts,
                added,
                body,
                service: &service,
                balancer: control_plane.balancer_for(service.id).map(|b| &**b),
                client_ip: connection.peer.ip(),
                path: &path,
                uri_capture: &|name| {
                    let captures = capture_regex?.captures(&path)?;
                    Some(captures.name(name)?.as_str().to_owned())
                },
                preserve_host: route.preserve_host,
                buffer_body: control_plane.buffers_requests(route.id),
                upgrade: upgrade.is_some(),
            })
            .await?;

        // Kong's latency headers; with retries, the upstream's is the answering attempt's alone.
        let Forwarded {
            response,
            first_sent,
            sent,
            answered,
            set_cookie,
        } = forwarded;
        labels.upstream = Some(answered - sent);
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        if let Some(upgrade) = upgrade {
            // As nginx does under Kong: an upgraded connection idle for the read timeout closes.
            if let Some(tunnel) = upgrade.splice(&mut parts, Timeouts::of(&service).read) {
                parts.extensions.insert(tunnel);
            }
        }
        let proxy_latency = millis_header(first_sent - received);
        let upstream_latency = millis_header(answered - sent);
        match parts.extensions.get_mut::<PassedFields>() {
            // The answer's fields go on as they came and these follow them: `Via` and
            // `Set-Cookie` add to the upstream's, as below; an answer with its own request id or
            // latency headers has a map instead, so adding those here is setting them.
            Some(fields) => {
                fields.add(&VIA, &VIA_TOLLGATE);
                fields.add(&X_REQUEST_ID, request_id);
                if let Some(cookie) = &set_cookie {
                    fields.add(&SET_COOKIE, cookie);
                }
                fields.add(&X_PROXY_LATENCY, &proxy_latency);
                fields.add(&X_UPSTREAM_LATENCY, &upstream_latency);
            }
            None => {
                let headers = &mut parts.headers;
                headers.append(VIA, VIA_TOLLGATE);
                headers.insert(X_REQUEST_ID, request_id.clone());
                if let Some(cookie) = set_cookie {
                    headers.append(SET_COOKIE, cookie);
                }
                headers.insert(X_PROXY_LATENCY, proxy_latency);
                headers.insert(X_UPSTREAM_LATENCY, upstream_latency);
            }
        }
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

/// Whole milliseconds as a header value; the usual single digits are static, not formatted.
fn millis_header(duration: Duration) -> HeaderValue {
    static DIGITS: [HeaderValue; 10] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
        HeaderValue::from_static("6"),
        HeaderValue::from_static("7"),
        HeaderValue::from_static("8"),
        HeaderValue::from_static("9"),
    ];
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    match usize::try_from(millis).ok().and_then(|i| DIGITS.get(i)) {
        Some(digit) => digit.clone(),
        None => HeaderValue::from(millis),
    }
}

/// The client's `X-Request-Id` when it is sane, a fresh one otherwise.
fn request_id_of(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            // uuid's `fast-rng`: a thread-local generator, not a getrandom call per request.
            let mut buffer = [0u8; 32];
            let id = Uuid::new_v4().simple().encode_lower(&mut buffer);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("invalid"))
        })
}

/// Drops headers that belong to one connection, including those the `Connection` header names.
/// `TE: trailers` stays: gRPC needs it end to end.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than a lookup for each.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| name != TE)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
    let te_is_trailers = headers
        .get(TE)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_is_trailers {
        headers.remove(TE);
    }
}

/// `upstream::http1::is_withheld` keeps the same names as bytes: a name added here belongs there.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ]
    .contains(name)
}

/// What the proxy sets on a request going upstream besides the client's own header fields: the
/// upstream's `Host`, Kong's `X-Forwarded-*` set (the client's own values are not trusted, there
/// are no trusted proxies yet, except that `X-Forwarded-For` is extended, as nginx's
/// `$proxy_add_x_forwarded_for` does), `X-Real-IP`, `Via` and `X-Request-Id`.
///
/// Kept apart from the client's fields so that the plain-HTTP path writes them straight into the
/// request head: inserting them into the `HeaderMap` (hashing each name, copying host and path
/// into new values) cost about 3k instructions per request, a tenth of the edge's.
/// [`UpstreamHeaders::apply`] puts them into the map for hyper-util's client.
pub struct UpstreamHeaders<'a> {
    /// `None`: the upstream gets the authority it is reached at.
    pub host: Option<HeaderValue>,
    forwarded_for: HeaderValue,
    real_ip: HeaderValue,
    proto: &'static str,
    forwarded_host: &'a str,
    forwarded_port: HeaderValue,
    forwarded_path: &'a str,
    /// What `strip_path` took off the path.
    forwarded_prefix: Option<&'a str>,
    request_id: HeaderValue,
}

impl UpstreamHeaders<'_> {
    /// Sets them in `headers` (`Via` is added to the client's).
    pub fn apply(&self, headers: &mut HeaderMap) {
        // Room for what is added below, so the map grows at most once.
        headers.reserve(10);
        match &self.host {
            Some(host) => headers.insert(HOST, host.clone()),
            None => headers.remove(HOST),
        };
        let text = |value: &str| HeaderValue::from_str(value).ok();
        let pairs = [
            (X_FORWARDED_FOR, Some(self.forwarded_for.clone())),
            (X_REAL_IP, Some(self.real_ip.clone())),
            (
                X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(self.proto)),
            ),
            (X_FORWARDED_HOST, text(self.forwarded_host)),
            (X_FORWARDED_PORT, Some(self.forwarded_port.clone())),
            (X_FORWARDED_PATH, text(self.forwarded_path)),
            (X_FORWARDED_PREFIX, self.forwarded_prefix.and_then(text)),
        ];
        for (name, value) in pairs {
            match value {
                Some(value) => headers.insert(name, value),
                None => headers.remove(name),
            };
        }
        headers.append(VIA, VIA_TOLLGATE);
        headers.insert(X_REQUEST_ID, self.request_id.clone());
    }

    /// Writes them (but `Host`, which the caller writes) as HTTP/1.1 header lines. Every value is
    /// a valid field value by construction: header values, the client's `Host` (which passed
    /// `to_str`, so visible ASCII) and paths from the request's URI.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let prefix = self.forwarded_prefix.unwrap_or_default();
        let values = [
            self.forwarded_for.as_bytes(),
            self.real_ip.as_bytes(),
            self.proto.as_bytes(),
            self.forwarded_host.as_bytes(),
            self.forwarded_port.as_bytes(),
            self.forwarded_path.as_bytes(),
            prefix.as_bytes(),
            self.request_id.as_bytes(),
        ];
        dst.reserve(values.iter().map(|v| v.len()).sum::<usize>() + 220);
        // Name and the previous line's end in one piece each: fewer, larger copies.
        dst.extend_from_slice(b"x-forwarded-for: ");
        dst.extend_from_slice(values[0]);
        dst.extend_from_slice(b"\r\nx-real-ip: ");
        dst.extend_from_slice(values[1]);
        dst.extend_from_slice(b"\r\nx-forwarded-proto: ");
        dst.extend_from_slice(values[2]);
        dst.extend_from_slice(b"\r\nx-forwarded-host: ");
        dst.extend_from_slice(values[3]);
        dst.extend_from_slice(b"\r\nx-forwarded-port: ");
        dst.extend_from_slice(values[4]);
        dst.extend_from_slice(b"\r\nx-forwarded-path: ");
        dst.extend_from_slice(values[5]);
        if !prefix.is_empty() {
            dst.extend_from_slice(b"\r\nx-forwarded-prefix: ");
            dst.extend_from_slice(values[6]);
        }
        dst.extend_from_slice(b"\r\nvia: 1.1 tollgate\r\nx-request-id: ");
        dst.extend_from_slice(values[7]);
        dst.extend_from_slice(b"\r\n");
    }
}

/// Takes out of `headers` what the client sent under the names [`UpstreamHeaders`] sets, and
/// returns the `X-Forwarded-For` to send: the client's extended with its address, or its address.
fn take_proxy_set_headers(headers: &mut HeaderMap, connection: &ConnectionInfo) -> HeaderValue {
    static SET_BY_PROXY: [HeaderName; 8] = [
        X_FORWARDED_FOR,
        X_REAL_IP,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_FORWARDED_PORT,
        X_FORWARDED_PATH,
        X_FORWARDED_PREFIX,
        X_REQUEST_ID,
    ];
    // Most requests carry none: one pass over the names is cheaper than a lookup for each.
    if !headers.keys().any(|name| SET_BY_PROXY.contains(name)) {
        return connection.client_ip_header.clone();
    }
    let forwarded_for = if headers.contains_key(X_FORWARDED_FOR) {
        let mut joined = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(connection.client_ip_header.to_str().unwrap_or_default());
        HeaderValue::from_str(&joined).unwrap_or_else(|_| connection.client_ip_header.clone())
    } else {
        connection.client_ip_header.clone()
    };
    for name in &SET_BY_PROXY {
        headers.remove(name);
    }
    forwarded_for
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let mut names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "x-kept"]);
    }
}
