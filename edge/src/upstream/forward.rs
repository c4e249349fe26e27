//! One request's way upstream: attempts, each to the target the balancer picks (or the service's
//! host), under the service's timeouts, retried as Kong retries.
//!
//! - `connect_timeout`: from starting an attempt to having a connection (TCP and TLS; a pooled
//!   connection counts at once).
//! - `write_timeout`: the longest the upstream may take to accept the next part of the request
//!   (the head, or the next body chunk) — the time between two successive writes, as in nginx.
//!   Time spent waiting for the client to send more body does not count.
//! - `read_timeout`: from the request being fully sent to the response head, then between two
//!   chunks of the response body.
//!
//! `retries` more attempts follow a connection failure or a timeout, never an HTTP status. A
//! request body can only be sent again if it was kept: requests without one always can; one of at
//! most 1 MiB is buffered when the route has `request_buffering` and its size is known; anything
//! else gets one attempt. As in nginx, a POST, PATCH or LOCK that may have reached the upstream
//! is not sent again; one whose connection failed is.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::uri::Authority;
use http::{Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use tollgate_model::Service;
use tracing::field::{display, Empty};
use tracing::Instrument;

use super::body::{ClientBody, Inner, Phase, RequestBody, SendProgress, UpstreamBody};
use super::http1::{self, Failure};
use super::pool::{ConnectError, Http1Pool};
use super::{UpstreamClient, UpstreamSender, Upstreams};
use crate::balancer::hash_on::{RequestKeys, UriCapture};
use crate::balancer::UpstreamBalancer;
use crate::errors::ProxyError;
use crate::health::Outcome;
use crate::proxy::UpstreamHeaders;

/// The largest request body kept for a retry.
const MAX_BUFFERED_BODY: u64 = 1024 * 1024;

/// A request ready to go upstream.
pub struct Outbound<'a> {
    /// Method, URI (`service.host` as authority), the client's headers less hop-by-hop ones and
    /// those the proxy sets.
    pub head: Parts,
    /// What the proxy sets: `Host`, `X-Forwarded-*`, `Via`, `X-Request-Id`.
    pub added: UpstreamHeaders<'a>,
    pub body: ClientBody,
    pub service: &'a Service,
    /// The upstream when the service's host names one.
    pub balancer: Option<&'a UpstreamBalancer>,
    /// What consistent hashing may hash besides the head: the client's address, the normalized
    /// request path and the route's regex captures.
    pub client_ip: IpAddr,
    pub path: &'a str,
    pub uri_capture: &'a UriCapture<'a>,
    /// The client's `Host` goes upstream as is.
    pub preserve_host: bool,
    /// The route's `request_buffering`.
    pub buffer_body: bool,
    /// The client asks to upgrade the connection (WebSocket): HTTP/1.1 only.
    pub upgrade: bool,
}

/// The upstream's answer, and when the attempt that got it was sent.
pub struct Forwarded {
    pub response: Response<UpstreamBody>,
    /// When the first attempt started.
    pub first_sent: Instant,
    /// When the attempt that answered started.
    pub sent: Instant,
    pub answered: Instant,
    /// A made-up consistent-hashing cookie to hand to the client.
    pub set_cookie: Option<HeaderValue>,
}

/// Why one attempt failed.
#[derive(Debug)]
enum AttemptError {
    ConnectTimeout,
    WriteTimeout,
    ReadTimeout,
    /// The host name does not resolve.
    NameResolution(String),
    /// No connection (refused, unreachable, TLS handshake failed): nothing was sent.
    Connect(String),
    /// The connection broke or the response was not HTTP: something may have been sent.
    Broken(String),
}

impl AttemptError {
    fn nothing_sent(&self) -> bool {
        matches!(
            self,
            AttemptError::ConnectTimeout
                | AttemptError::NameResolution(_)
                | AttemptError::Connect(_)
        )
    }

    /// Whether the target's name resolved, when the failure tells.
    fn resolved(&self) -> Option<bool> {
        match self {
            AttemptError::NameResolution(_) => Some(false),
            // Resolving may be what took too long.
            AttemptError::ConnectTimeout => None,
            _ => Some(true),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            AttemptError::ConnectTimeout
            | AttemptError::WriteTimeout
            | AttemptError::ReadTimeout => Outcome::Timeout,
            _ => Outcome::TcpFailure,
        }
    }

    fn into_proxy_error(self) -> ProxyError {
        match self {
            AttemptError::ConnectTimeout
            | AttemptError::WriteTimeout
            | AttemptError::ReadTimeout => ProxyError::UpstreamTimeout,
            AttemptError::NameResolution(cause) => ProxyError::NameResolution(cause),
            AttemptError::Connect(cause) | AttemptError::Broken(cause) => {
                ProxyError::Upstream(cause)
            }
        }
    }
}

/// A service's timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    connect: Duration,
    write: Duration,
    pub(crate) read: Duration,
}

impl Timeouts {
    pub(crate) fn of(service: &Service) -> Timeouts {
        let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(60_000).max(1));
        Timeouts {
            connect: millis(service.connect_timeout),
            write: millis(service.write_timeout),
            read: millis(service.read_timeout),
        }
    }
}

impl Upstreams {
    /// Sends `outbound` and returns the first response head any attempt gets.
    pub async fn forward(&self, outbound: Outbound<'_>) -> Result<Forwarded, ProxyError> {
        let span = tracing::debug_span!(
            "upstream",
            upstream = %outbound.service.host,
            attempts = Empty,
            targets = Empty,
        );
        self.attempts(outbound).instrument(span).await
    }

    async fn attempts(&self, outbound: Outbound<'_>) -> Result<Forwarded, ProxyError> {
        let Outbound {
            mut head,
            added,
            body,
            service,
            balancer,
            client_ip,
            path,
            uri_capture,
            preserve_host,
            buffer_body,
            upgrade,
        } = outbound;
        let sender = self.sender_for(service, upgrade);
        let timeouts = Timeouts::of(service);
        let body = SentBody::of(body, buffer_body).await?;
        let replayable = !matches!(body, SentBody::Streamed(_));
        let idempotent =
            !matches!(head.method, Method::POST | Method::PATCH) && head.method.as_str() != "LOCK";
        let attempts = if replayable {
            u64::try_from(service.retries).unwrap_or(0) + 1
        } else {
            1
        };
        let hash = balancer.and_then(|b| {
            b.hash_point(&RequestKeys {
                client_ip,
                headers: &head.headers,
                path,
                query: head.uri.query(),
                uri_capture,
            })
        });
        let set_cookie = hash.as_ref().and_then(|h| h.set_cookie.clone());

        if let UpstreamSender::Client(_) = sender {
            added.apply(&mut head.headers);
        }
        // The last attempt on hyper-util's client takes the head; the pool's only borrow it.
        let mut head = Some(head);
        let mut body = Some(body);
        let mut tried: Vec<usize> = Vec::new();
        let mut first_sent = None;
        let mut attempt = 0;
        let span = tracing::Span::current();
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            let target = match balancer {
                Some(balancer) => {
                    let Some(index) = balancer.pick(hash.as_ref(), &tried) else {
                        // Kong answers 503 when the ring has no peer; on a retry, the last failure
                        // says more.
                        return Err(ProxyError::NoPeer);
                    };
                    tried.push(index);
                    Some((balancer, index))
                }
                None => None,
            };
            let in_flight = target.map(|(b, i)| b.targets()[i].state.start_request());
            let sent = Instant::now();
            first_sent.get_or_insert(sent);
            let result = match sender {
                UpstreamSender::Pool(pool) => {
                    let parts = head
                        .as_ref()
                        .ok_or_else(|| ProxyError::Internal("request head used up".into()))?;
                    let body = body
                        .as_mut()
                        .ok_or_else(|| ProxyError::Internal("request body used up".into()))?;
                    let pooled = Pooled {
                        head: parts,
                        added: &added,
                        target,
                        service,
                        preserve_host,
                    };
                    send_pooled(pool, pooled, body, timeouts)
                        .await
                        .map(|response| response.map(Inner::Http1))
                }
                UpstreamSender::Client(client) => {
                    let mut parts = if last { head.take() } else { head.clone() }
                        .ok_or_else(|| ProxyError::Internal("request head used up".into()))?;
                    if let Some((balancer, index)) = target {
                        point_at_target(&mut parts, balancer, index, service, preserve_host)?;
                    }
                    let progress = SendProgress::new();
                    let request_body = if last {
                        body.take().map(|b| b.into_request_body(progress.clone()))
                    } else {
                        body.as_ref().map(|b| Ok(b.again(progress.clone())))
                    }
                    .ok_or_else(|| ProxyError::Internal("request body used up".into()))??;
                    let is_empty = request_body.is_end_stream();
                    let request = Request::from_parts(parts, request_body);
                    send_with_client(client, request, &progress, is_empty, timeouts)
                        .await
                        .map(|response| response.map(Inner::Hyper))
                }
            };
            span.record("attempts", attempt);
            if let Some(balancer) = balancer {
                let names: Vec<&str> = tried
                    .iter()
                    .map(|i| balancer.targets()[*i].name.as_str())
                    .collect();
                span.record("targets", display(names.join(",")));
            }
            match result {
                Ok(response) => {
                    let answered = Instant::now();
                    if let Some((balancer, index)) = target {
                        let state = &balancer.targets()[index].state;
                        state.record_latency(answered - sent);
                        state.record_resolution(true);
                        if let Some(outcome) = balancer.passive_outcome(response.status().as_u16())
                        {
                            balancer.record_passive(index, outcome);
                        }
                    }
                    let response =
                        response.map(|inner| UpstreamBody::new(inner, timeouts.read, in_flight));
                    return Ok(Forwarded {
                        response,
                        first_sent: first_sent.unwrap_or(sent),
                        sent,
                        answered,
                        set_cookie,
                    });
                }
                Err(error) => {
                    if let Some((balancer, index)) = target {
                        balancer.record_passive(index, error.outcome());
                        if let Some(resolved) = error.resolved() {
                            balancer.targets()[index].state.record_resolution(resolved);
                        }
                    }
                    let again = !last && (idempotent || error.nothing_sent());
                    tracing::debug!(attempt, ?error, retry = again, "upstream attempt failed");
                    if !again {
                        return Err(error.into_proxy_error());
                    }
                }
            }
        }
    }
}

/// Sends the request to `target` of `balancer`: its address in the URI, its `Host` unless the
/// route preserves the client's.
fn point_at_target(
    parts: &mut Parts,
    balancer: &UpstreamBalancer,
    index: usize,
    service: &Service,
    preserve_host: bool,
) -> Result<(), ProxyError> {
    let target = &balancer.targets()[index];
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = Uri::try_from(format!(
        "{}://{}{path}",
        super::url_scheme(&service.protocol),
        target.authority()
    ))
    .map_err(|e| ProxyError::Internal(format!("building the target URI: {e}")))?;
    if !preserve_host {
        match balancer.host_header(index, &service.protocol) {
            Some(host) => parts.headers.insert(HOST, host),
            None => parts.headers.remove(HOST),
        };
    }
    Ok(())
}

/// The request body as it will be sent: kept whole when a retry may need it again.
enum SentBody {
    Empty,
    Buffered(bytes::Bytes),
    /// Taken by the one attempt that sends it.
    Streamed(Option<ClientBody>),
}

impl SentBody {
    async fn of(body: ClientBody, buffer: bool) -> Result<SentBody, ProxyError> {
        if body.is_end_stream() {
            return Ok(SentBody::Empty);
        }
        let small = body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= MAX_BUFFERED_BODY);
        if !(buffer && small) {
            return Ok(SentBody::Streamed(Some(body)));
        }
        let bytes = body
            .collect()
            .await
            .map_err(|e| ProxyError::ClientBody(e.to_string()))?
            .to_bytes();
        Ok(SentBody::Buffered(bytes))
    }

    /// A copy for an attempt that may not be the last. A streamed body only ever gets one
    /// attempt, so it is never copied.
    fn again(&self, progress: std::sync::Arc<SendProgress>) -> RequestBody {
        match self {
            SentBody::Buffered(bytes) => RequestBody::buffered(bytes.clone(), progress),
            SentBody::Empty | SentBody::Streamed(_) => RequestBody::empty(progress),
        }
    }

    fn into_request_body(
        self,
        progress: std::sync::Arc<SendProgress>,
    ) -> Result<RequestBody, ProxyError> {
        Ok(match self {
            SentBody::Empty => RequestBody::empty(progress),
            SentBody::Buffered(bytes) => RequestBody::buffered(bytes, progress),
            SentBody::Streamed(Some(body)) => RequestBody::streamed(body, progress),
            SentBody::Streamed(None) => {
                return Err(ProxyError::Internal("request body used up".into()))
            }
        })
    }
}

/// One attempt on hyper-util's client: connects (or takes one of its pooled connections), sends,
/// and waits for the response head, each step under its timeout.
async fn send_with_client(
    client: &UpstreamClient,
    mut request: Request<RequestBody>,
    progress: &SendProgress,
    body_is_empty: bool,
    timeouts: Timeouts,
) -> Result<Response<Incoming>, AttemptError> {
    let mut connection = capture_connection(&mut request);
    let response = client.request(request);
    tokio::pin!(response);
    let connected = async {
        connection.wait_for_connection_metadata().await;
    };
    tokio::select! {
        biased;
        answered = &mut response => return answered.map_err(attempt_error),
        _ = connected => {}
        _ = tokio::time::sleep(timeouts.connect) => return Err(AttemptError::ConnectTimeout),
    }
    let answered = answer(response, progress, body_is_empty, timeouts, Instant::now()).await?;
    answered.map_err(attempt_error)
}

/// One attempt on a connection of `pool` to the service's host or the balancer's `target`: the
/// connect timeout covers getting a connection (a pooled one counts at once), [`http1::exchange`]
/// the rest. As hyper-util's client does, a request that a reused connection could not take (the
/// upstream had closed it) goes on another one.
async fn send_pooled(
    pool: &Http1Pool,
    request: Pooled<'_>,
    body: &mut SentBody,
    timeouts: Timeouts,
) -> Result<Response<http1::ResponseBody>, AttemptError> {
    let Pooled {
        head,
        added,
        target,
        service,
        preserve_host,
    } = request;
    let balanced_host;
    let (authority, host) = match target {
        None => {
            let authority =
                head.uri.authority().cloned().ok_or_else(|| {
                    AttemptError::Connect("the upstream URI has no authority".into())
                })?;
            (authority, added.host.as_ref())
        }
        Some((balancer, index)) => {
            let authority = Authority::try_from(balancer.targets()[index].authority())
                .map_err(|e| AttemptError::Connect(format!("the target's address: {e}")))?;
            balanced_host = if preserve_host {
                added.host.clone()
            } else {
                balancer.host_header(index, &service.protocol)
            };
            (authority, balanced_host.as_ref())
        }
    };
    let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
    loop {
        let (connection, lease) = match pool.checkout(&authority) {
            Some(pooled) => pooled,
            // Boxed: connecting is rare, and its future would make every request's bigger.
            None => {
                match tokio::time::timeout(timeouts.connect, Box::pin(pool.connect(&authority)))
                    .await
                {
                    Ok(Ok(connection)) => connection,
                    Ok(Err(e)) => return Err(connect_error(&e)),
                    Err(_) => return Err(AttemptError::ConnectTimeout),
                }
            }
        };
        let reused = lease.is_reused();
        let body = match body {
            SentBody::Empty => http1::Body::Empty,
            SentBody::Buffered(bytes) => http1::Body::Buffered(bytes),
            SentBody::Streamed(client) => http1::Body::Streamed(client),
        };
        let request = http1::Request {
            method: &head.method,
            path_and_query,
            headers: &head.headers,
            added: Some(added),
            host,
            authority: &authority,
            body,
        };
        match http1::exchange(connection, lease, request, timeouts.write, timeouts.read).await {
            Ok(response) => return Ok(response),
            Err(Failure::Unsent(_)) if reused => {}
            Err(Failure::Unsent(e)) => {
                return Err(AttemptError::Broken(format!("writing the request: {e}")))
            }
            Err(Failure::WriteTimeout) => return Err(AttemptError::WriteTimeout),
            Err(Failure::ReadTimeout) => return Err(AttemptError::ReadTimeout),
            Err(Failure::Broken(cause)) => return Err(AttemptError::Broken(cause)),
        }
    }
}

/// What [`send_pooled`] sends where.
struct Pooled<'a> {
    head: &'a Parts,
    added: &'a UpstreamHeaders<'a>,
    /// The balancer's pick, or the service's host.
    target: Option<(&'a UpstreamBalancer, usize)>,
    service: &'a Service,
    preserve_host: bool,
}

/// Waits for `response` while the request is sent, under the write timeout between the parts it
/// is sent in and the read timeout once it is all sent; `connected_at` starts the first.
async fn answer<F, T>(
    mut response: std::pin::Pin<&mut F>,
    progress: &SendProgress,
    body_is_empty: bool,
    timeouts: Timeouts,
    connected_at: Instant,
) -> Result<T, AttemptError>
where
    F: std::future::Future<Output = T>,
{
    loop {
        let now = Instant::now();
        let (deadline, timeout) = match progress.phase() {
            Phase::Starting if body_is_empty => (
                Some(connected_at + timeouts.read),
                AttemptError::ReadTimeout,
            ),
            Phase::Starting => (
                Some(connected_at + timeouts.write),
                AttemptError::WriteTimeout,
            ),
            Phase::Writing(at) => (Some(at + timeouts.write), AttemptError::WriteTimeout),
            Phase::WaitingForClient => (None, AttemptError::WriteTimeout),
            Phase::Sent(at) => (Some(at + timeouts.read), AttemptError::ReadTimeout),
        };
        if deadline.is_some_and(|d| d <= now) {
            return Err(timeout);
        }
        // Progress is made on the connection's task; it wakes this one when the phase changes,
        // and a chunk going out pushes the deadline later, which is checked when it passes.
        let changed = progress.changed();
        tokio::select! {
            biased;
            answered = &mut response => return Ok(answered),
            _ = changed => {}
            _ = sleep_until(deadline) => {}
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A failure to get a pooled connection, classified like the legacy client's connect errors.
fn connect_error(error: &ConnectError) -> AttemptError {
    let cause = error_chain(error);
    if timed_out(error) {
        AttemptError::ConnectTimeout
    } else if cause.contains("dns error") {
        AttemptError::NameResolution(cause)
    } else {
        AttemptError::Connect(cause)
    }
}

fn attempt_error(error: hyper_util::client::legacy::Error) -> AttemptError {
    let cause = error_chain(&error);
    if !error.is_connect() {
        AttemptError::Broken(cause)
    } else if timed_out(&error) {
        AttemptError::ConnectTimeout
    } else if cause.contains("dns error") {
        AttemptError::NameResolution(cause)
    } else {
        AttemptError::Connect(cause)
    }
}

/// Whether an I/O timeout is among an error's causes (the OS's, or a connector's own).
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// An error and its causes on one line: hyper's own messages are terse.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
