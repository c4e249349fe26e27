//! The edge test harness: upstreams on port 0 (an echo server, a streaming one, a slow one), an
//! edge started in-process against a `MemoryBus`, snapshot builders and polling helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tollgate_bus::{Bus, MemoryBus};
use tollgate_edge::{EdgeConfig, RunningEdge};
use tollgate_model::entity::{build, Build};
use tollgate_model::{Route, Service, Snapshot};
use uuid::Uuid;

pub const REGION: &str = "test-region";
const DEADLINE: Duration = Duration::from_secs(10);

async fn serve_axum(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// An upstream that answers every request with JSON: method, path, query, headers (values of a
/// repeated header joined by ", ") and the body as text.
pub async fn echo_upstream() -> SocketAddr {
    serve_axum(axum::Router::new().fallback(echo)).await
}

async fn echo(request: Request) -> axum::Json<Value> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or("<binary>").to_string();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// A WebSocket server that sends back every text and binary message.
pub async fn websocket_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = futures::StreamExt::next(&mut socket).await {
                    if (message.is_text() || message.is_binary())
                        && futures::SinkExt::send(&mut socket, message).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An upstream that sends `first` at once and the rest of its body only after `release` is
/// notified.
pub async fn streaming_upstream(release: Arc<Notify>) -> SocketAddr {
    let app = axum::Router::new().fallback(move || {
        let release = release.clone();
        async move {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from_static(b"first;"))).await;
                release.notified().await;
                let _ = tx.send(Ok(Bytes::from_static(b"second"))).await;
            });
            Body::from_stream(ReceiverStream::new(rx))
        }
    });
    serve_axum(app).await
}

/// An upstream that echoes back the first chunk of the request body at once, before the request
/// body has ended, then the rest when it does.
pub async fn upload_echo_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|request: Request| async move {
        let mut incoming = request.into_body().into_data_stream();
        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = incoming.next().await {
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
        });
        Body::from_stream(ReceiverStream::new(rx))
    });
    serve_axum(app).await
}

/// An upstream that answers after `delay`.
pub async fn delayed_upstream(delay: Duration) -> SocketAddr {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        "late"
    });
    serve_axum(app).await
}

/// An upstream that never answers within a test's patience.
pub async fn slow_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "too late"
    });
    serve_axum(app).await
}

/// An address where nothing listens.
pub async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub fn service(input: Value) -> Service {
    build::<Service>(Build::Create { id: Uuid::now_v7() }, &input, 1)
        .unwrap_or_else(|e| panic!("bad test service {input}: {e}"))
}

/// A service on `upstream` whose path is `/<tag>`, so the echoed path tells which route served.
pub fn tagged(upstream: SocketAddr, tag: &str) -> Service {
    service(json!({ "url": format!("http://{upstream}/{tag}") }))
}

pub fn route_at(input: Value, created_at: i64) -> Route {
    build::<Route>(Build::Create { id: Uuid::now_v7() }, &input, created_at)
        .unwrap_or_else(|e| panic!("bad test route {input}: {e}"))
}

pub fn route(input: Value) -> Route {
    route_at(input, 1)
}

/// A route to `service` with the given matching fields.
pub fn route_to(service: &Service, mut input: Value) -> Route {
    input["service"] = json!({ "id": service.id });
    route(input)
}

pub fn snapshot(
    control_plane: Uuid,
    version: i64,
    hostnames: &[&str],
    services: Vec<Service>,
    routes: Vec<Route>,
) -> Snapshot {
    Snapshot::compile(
        control_plane,
        Uuid::nil(),
        version,
        hostnames.iter().map(|h| h.to_string()).collect(),
        services,
        routes,
    )
}

pub async fn start_edge(
    bus: Arc<dyn Bus>,
    data_dir: &Path,
    control_plane: Option<Uuid>,
) -> RunningEdge {
    start_edge_adjusted(bus, data_dir, control_plane, |_| {}).await
}

/// Like [`start_edge`], with `adjust` changing the config first.
pub async fn start_edge_adjusted(
    bus: Arc<dyn Bus>,
    data_dir: &Path,
    control_plane: Option<Uuid>,
    adjust: impl FnOnce(&mut EdgeConfig),
) -> RunningEdge {
    let mut config = EdgeConfig {
        proxy_listen: "127.0.0.1:0".parse().unwrap(),
        proxy_tls_listen: None,
        master_key: None,
        status_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        region: REGION.to_string(),
        control_plane,
        heartbeat_interval: Duration::from_millis(200),
        binary_version: "9.9.9-test".to_string(),
        request_logs: tollgate_edge::RequestLogConfig::default(),
        header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
    };
    adjust(&mut config);
    tollgate_edge::start(config, bus).await.unwrap()
}

/// One control plane published on a fresh bus, an edge serving it, and the data dir.
pub struct Setup {
    pub bus: MemoryBus,
    pub edge: RunningEdge,
    pub dir: tempfile::TempDir,
    pub control_plane: Uuid,
}

/// Publishes `snapshot` and starts an edge in shared mode (control plane by Host) that has
/// applied it.
pub async fn serve_snapshot(snapshot: Snapshot) -> Setup {
    serve_snapshot_in(snapshot, false, |_| {}).await
}

/// Like [`serve_snapshot`], with an edge dedicated to the snapshot's control plane: every Host
/// reaches it.
pub async fn serve_dedicated(snapshot: Snapshot) -> Setup {
    serve_snapshot_in(snapshot, true, |_| {}).await
}

/// Like [`serve_dedicated`], with `adjust` changing the edge's config first.
pub async fn serve_dedicated_adjusted(
    snapshot: Snapshot,
    adjust: impl FnOnce(&mut EdgeConfig),
) -> Setup {
    serve_snapshot_in(snapshot, true, adjust).await
}

async fn serve_snapshot_in(
    snapshot: Snapshot,
    dedicated: bool,
    adjust: impl FnOnce(&mut EdgeConfig),
) -> Setup {
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let only = dedicated.then_some(snapshot.control_plane_id);
    let edge = start_edge_adjusted(Arc::new(bus.clone()), dir.path(), only, adjust).await;
    wait_for_version(&edge, snapshot.control_plane_id, snapshot.version).await;
    Setup {
        bus,
        edge,
        dir,
        control_plane: snapshot.control_plane_id,
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The path the echo upstream saw.
    pub fn path(&self) -> &str {
        self.body["path"].as_str().unwrap_or("<none>")
    }

    /// A header the echo upstream saw.
    pub fn seen(&self, name: &str) -> Option<&str> {
        self.body["headers"][name].as_str()
    }
}

/// Sends `method` for `path` with `Host: host` and extra headers, and reads a JSON body (or
/// `{"text": …}` when it is not JSON).
pub async fn send(
    edge: &RunningEdge,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http()
        .request(method, format!("http://{}{path}", edge.proxy_addr))
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text }));
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(edge: &RunningEdge, host: &str, path: &str) -> Answer {
    send(edge, "GET", host, path, &[]).await
}

pub async fn status(edge: &RunningEdge, path: &str) -> (u16, Value) {
    let response = http()
        .get(format!("http://{}{path}", edge.status_addr))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `check` until it returns `Some`, failing the test after a deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        // One check that hangs must not outlast the deadline either.
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(value)) = tokio::time::timeout(remaining, check()).await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/status` reports `version` for `control_plane`.
pub async fn wait_for_version(edge: &RunningEdge, control_plane: Uuid, version: i64) {
    eventually(&format!("version {version} of {control_plane}"), || async {
        let (_, body) = status(edge, "/status").await;
        body["control_planes"]
            .as_array()?
            .iter()
            .any(|cp| {
                cp["control_plane_id"] == json!(control_plane) && cp["version"] == json!(version)
            })
            .then_some(())
    })
    .await
}

/// Like [`start_edge`], with a TLS listener too, opening sealed keys with `master_key`.
pub async fn start_edge_with_tls(
    bus: Arc<dyn Bus>,
    data_dir: &Path,
    control_plane: Option<Uuid>,
    master_key: Option<tollgate_model::secret::MasterKey>,
) -> RunningEdge {
    let config = EdgeConfig {
        header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
        proxy_listen: "127.0.0.1:0".parse().unwrap(),
        proxy_tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        master_key,
        status_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        region: REGION.to_string(),
        control_plane,
        heartbeat_interval: Duration::from_millis(200),
        binary_version: "9.9.9-test".to_string(),
        request_logs: tollgate_edge::RequestLogConfig::default(),
    };
    tollgate_edge::start(config, bus).await.unwrap()
}

/// Like [`serve_snapshot`] (or [`serve_dedicated`] when `dedicated`), with a TLS listener whose
/// private keys open with `master_key`.
pub async fn serve_snapshot_with_tls(
    snapshot: Snapshot,
    master_key: Option<tollgate_model::secret::MasterKey>,
    dedicated: bool,
) -> Setup {
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let only = dedicated.then_some(snapshot.control_plane_id);
    let edge = start_edge_with_tls(Arc::new(bus.clone()), dir.path(), only, master_key).await;
    wait_for_version(&edge, snapshot.control_plane_id, snapshot.version).await;
    Setup {
        bus,
        edge,
        dir,
        control_plane: snapshot.control_plane_id,
    }
}

/// An upstream entity built from JSON, as the API would store it.
pub fn upstream_entity(input: Value) -> tollgate_model::Upstream {
    build::<tollgate_model::Upstream>(Build::Create { id: Uuid::now_v7() }, &input, 1)
        .unwrap_or_else(|e| panic!("bad test upstream {input}: {e}"))
}

/// A target of `upstream` at `address` (`host:port`).
pub fn target_entity(
    upstream: &tollgate_model::Upstream,
    address: &str,
    weight: i64,
) -> tollgate_model::Target {
    let input = json!({"upstream": {"id": upstream.id}, "target": address, "weight": weight});
    build::<tollgate_model::Target>(Build::Create { id: Uuid::now_v7() }, &input, 1)
        .unwrap_or_else(|e| panic!("bad test target {input}: {e}"))
}

/// A snapshot with upstreams and targets, for an edge dedicated to `control_plane`.
pub fn balanced_snapshot(
    control_plane: Uuid,
    version: i64,
    services: Vec<Service>,
    routes: Vec<Route>,
    upstreams: Vec<tollgate_model::Upstream>,
    targets: Vec<tollgate_model::Target>,
) -> Snapshot {
    let entities = tollgate_model::Entities {
        services,
        routes,
        upstreams,
        targets,
        ..Default::default()
    };
    Snapshot::of(control_plane, Uuid::nil(), version, Vec::new(), entities)
}

/// The edge's `/metrics` text.
pub async fn metrics_text(edge: &RunningEdge) -> String {
    http()
        .get(format!("http://{}/metrics", edge.status_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sends `GET` for `path` exactly as written, with `Host: host`: reqwest would resolve dot
/// segments before sending, hyper does not.
pub async fn get_raw(edge: &RunningEdge, host: &str, path: &str) -> Answer {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::get(format!("http://{}{path}", edge.proxy_addr))
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({ "text": String::from_utf8_lossy(&body) }));
    Answer {
        status,
        headers,
        body,
    }
}
