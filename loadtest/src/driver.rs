//! The load generator every scenario uses, so that the edge and its peers are driven the same
//! way: closed loop (a fixed number of users, each sending its next request when the last one is
//! answered) or open loop (a fixed rate, latency measured from when each request was due, so a
//! stall is not hidden by fewer requests being sent — no coordinated omission). HTTP/1.1 keeps one
//! connection per user; HTTP/2 multiplexes users over a few connections; either over TLS.
//!
//! wrk and h2load would do for the closed loop, but neither gives percentiles for HTTP/2 nor a
//! corrected fixed-rate mode, and one driver keeps every figure comparable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c) on plain TCP.
    H2c,
    Https1,
    /// HTTP/2 negotiated by ALPN.
    Https2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "h2c",
            Protocol::Https1 => "HTTP/1.1 + TLS",
            Protocol::Https2 => "HTTP/2 + TLS",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Protocol::Https1 | Protocol::Https2)
    }

    fn h2(self) -> bool {
        matches!(self, Protocol::H2c | Protocol::Https2)
    }
}

/// Where to send and what.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The Host header (and TLS server name).
    pub host: String,
    /// Paths are taken in turn, one per request.
    pub paths: Arc<Vec<String>>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `users` concurrent users.
    Closed { users: usize },
    /// `rate` requests per second over up to `connections` connections.
    Open { rate: u64, connections: usize },
}

/// What one run measured. Latencies in microseconds.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(&mut self, request: Request<Empty<Bytes>>) -> anyhow::Result<StatusCode> {
        let response = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status();
        // The whole body counts: a proxy that answers the head early but the body late is slow.
        response.into_body().collect().await?;
        Ok(status)
    }
}

async fn connect(
    target: &Target,
    tls: &Option<tokio_rustls::TlsConnector>,
) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    if target.protocol.tls() {
        let connector = tls.as_ref().ok_or_else(|| anyhow!("no TLS connector"))?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
        let stream = connector.connect(name, tcp).await?;
        handshake(TokioIo::new(stream), target.protocol.h2()).await
    } else {
        handshake(TokioIo::new(tcp), target.protocol.h2()).await
    }
}

async fn handshake<T>(io: TokioIo<T>, h2: bool) -> anyhow::Result<Sender>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = http1::handshake(io).await?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

fn request(target: &Target, n: u64) -> anyhow::Result<Request<Empty<Bytes>>> {
    let path = &target.paths[(n as usize) % target.paths.len()];
    let mut builder = Request::get(path.as_str());
    if target.protocol.h2() {
        let scheme = if target.protocol.tls() {
            "https"
        } else {
            "http"
        };
        builder = Request::get(format!("{scheme}://{}{path}", target.host));
    } else {
        builder = builder.header(http::header::HOST, target.host.as_str());
    }
    Ok(builder.body(Empty::new())?)
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Runs `load` against `target` for `duration` after `warmup`.
pub async fn run(
    target: &Target,
    load: Load,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let tls = target
        .protocol
        .tls()
        .then(|| tls_connector(target.protocol));
    match load {
        Load::Closed { users } => closed(target, &tls, users, warmup, duration).await,
        Load::Open { rate, connections } => {
            open(target, &tls, rate, connections, warmup, duration).await
        }
    }
}

async fn senders(
    target: &Target,
    tls: &Option<tokio_rustls::TlsConnector>,
    users: usize,
) -> anyhow::Result<Vec<Sender>> {
    let mut out = Vec::with_capacity(users);
    if target.protocol.h2() {
        // 16 streams per connection, as a browser or gRPC client would multiplex.
        let connections = users.div_ceil(16).max(1);
        let mut shared = Vec::new();
        for _ in 0..connections {
            match connect(target, tls).await? {
                Sender::H2(s) => shared.push(s),
                Sender::H1(_) => return Err(anyhow!("expected an HTTP/2 connection")),
            }
        }
        for i in 0..users {
            out.push(Sender::H2(shared[i % connections].clone()));
        }
    } else {
        for _ in 0..users {
            out.push(connect(target, tls).await?);
        }
    }
    Ok(out)
}

async fn closed(
    target: &Target,
    tls: &Option<tokio_rustls::TlsConnector>,
    users: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let senders = senders(target, tls, users).await?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut sender in senders {
        let target = target.clone();
        let tls = tls.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let outcome = match request(&target, n) {
                    Ok(r) => sender.send(r).await,
                    Err(e) => Err(e),
                };
                let done = Instant::now();
                let counted = sent >= measure_from && done <= end;
                match outcome {
                    Ok(status) if status == StatusCode::OK => {
                        if counted {
                            requests += 1;
                            let _ = latency.record(micros(done - sent));
                        }
                    }
                    Ok(_) => errors += u64::from(counted),
                    Err(_) => {
                        errors += u64::from(counted);
                        // The connection is gone: open another (HTTP/1.1) or give up this user.
                        match connect(&target, &tls).await {
                            Ok(fresh) => sender = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (requests, errors, latency)
        }));
    }
    merge(tasks, duration).await
}

async fn open(
    target: &Target,
    tls: &Option<tokio_rustls::TlsConnector>,
    rate: u64,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let pool = Arc::new(Mutex::new(senders(target, tls, connections).await?));
    let idle = Arc::new(tokio::sync::Semaphore::new(connections));
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut due = start;
    let mut n = 0u64;
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let (target, pool, idle, stop) = (target.clone(), pool.clone(), idle.clone(), stop.clone());
        let intended = due;
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let Ok(permit) = idle.acquire_owned().await else {
                return (0, 1, latency);
            };
            if stop.load(Ordering::Relaxed) {
                return (0, 0, latency);
            }
            let mut sender = pool.lock().await.pop();
            let outcome = match (&mut sender, request(&target, n)) {
                (Some(s), Ok(r)) => s.send(r).await,
                _ => Err(anyhow!("no connection")),
            };
            let done = Instant::now();
            let counted = intended >= measure_from && intended < end;
            let result = match outcome {
                Ok(StatusCode::OK) => {
                    if counted {
                        let _ = latency.record(micros(done - intended));
                    }
                    (u64::from(counted), 0, latency)
                }
                _ => (0, u64::from(counted), latency),
            };
            if let Some(sender) = sender {
                pool.lock().await.push(sender);
            }
            drop(permit);
            result
        }));
        n += 1;
        due += interval;
    }
    let outcome = merge(tasks, duration).await;
    stop.store(true, Ordering::Relaxed);
    outcome
}

async fn merge(
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, Histogram<u64>)>>,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let mut latency = histogram();
    let (mut requests, mut errors) = (0, 0);
    for task in tasks {
        let (r, e, h) = task.await?;
        requests += r;
        errors += e;
        latency.add(&h)?;
    }
    Ok(Outcome {
        requests,
        errors,
        elapsed: duration,
        latency,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn tls_connector(protocol: Protocol) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
        .dangerous()
        // The peers serve a self-signed benchmark certificate.
        .with_custom_certificate_verifier(Arc::new(tollgate_edge::NoCertificateCheck(provider)))
        .with_no_client_auth();
    config.alpn_protocols = match protocol {
        Protocol::Https2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
