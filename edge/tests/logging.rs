//! Request logs through the real proxy: one line per answered request with the right facts,
//! none for a Host that selects no control plane; a NATS outage during load loses and duplicates
//! nothing (a private nats-server, stopped and started again); a full spool drops its oldest
//! batches and counts them; a restarted edge replays its spool.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Notify;
use tollgate_bus::testing::PrivateNats;
use tollgate_bus::{Bus, BusError, ConfigEvent, ConfigFilter, LogQueue, MemoryBus, NatsBus};
use tollgate_edge::{EdgeConfig, RequestLogConfig, RunningEdge, SPOOL_DIR};
use tollgate_model::request_log::{LogBatch, RequestLog};
use tollgate_model::{Heartbeat, Snapshot, SnapshotHead};
use uuid::Uuid;

const HOST: &str = "logs.example.com";

fn quick_logs(batch_size: usize) -> RequestLogConfig {
    RequestLogConfig {
        enabled: true,
        batch_size,
        flush_interval: Duration::from_millis(50),
        spool_max_bytes: 256 * 1024 * 1024,
    }
}

/// Version 1 of a control plane serving `HOST` with one route, `/`, to an echo upstream.
async fn echo_snapshot() -> Snapshot {
    let service = tagged(echo_upstream().await, "echo");
    let route = route_to(&service, json!({ "paths": ["/"] }));
    Snapshot::compile(
        Uuid::now_v7(),
        Uuid::now_v7(),
        1,
        vec![HOST.into()],
        vec![service],
        vec![route],
    )
}

async fn start_logging_edge(
    bus: Arc<dyn Bus>,
    data_dir: &Path,
    request_logs: RequestLogConfig,
) -> RunningEdge {
    let config = EdgeConfig {
        header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
        proxy_listen: "127.0.0.1:0".parse().unwrap(),
        proxy_tls_listen: None,
        master_key: None,
        status_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        region: REGION.to_string(),
        control_plane: None,
        heartbeat_interval: Duration::from_millis(500),
        binary_version: "9.9.9-test".to_string(),
        request_logs,
    };
    tollgate_edge::start(config, bus).await.unwrap()
}

/// Polls `check` until it returns `Some`, failing the test after `patience`.
async fn within<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads log batches until `expected` lines have come, then keeps reading briefly so that any
/// extra line shows up too. Every batch is acknowledged.
async fn read_logs(
    queue: &mut Box<dyn LogQueue>,
    expected: usize,
    patience: Duration,
) -> Vec<(Uuid, RequestLog)> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + patience;
    while lines.len() < expected {
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {expected} log lines came",
            lines.len()
        );
        take(queue, &mut lines, Duration::from_millis(200)).await;
    }
    // More than the flush interval: a line that was going to come has come.
    take(queue, &mut lines, Duration::from_millis(600)).await;
    lines
}

async fn take(queue: &mut Box<dyn LogQueue>, lines: &mut Vec<(Uuid, RequestLog)>, wait: Duration) {
    for delivery in queue.next(100, wait).await.unwrap() {
        delivery.ack().await.unwrap();
        let batch = &delivery.batch;
        lines.extend(batch.logs.iter().map(|log| (batch.id, log.clone())));
    }
}

/// A counter or gauge from the edge's `/metrics`, 0 when absent.
async fn metric(edge: &RunningEdge, series: &str) -> u64 {
    let text = metrics_text(edge).await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

const DROPPED_SPOOL_FULL: &str = "tollgate_request_logs_dropped_total{reason=\"spool_full\"}";

/// The batch files in an edge's spool, as (batch id, line count), by name.
fn spool_files(data_dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(listing) = std::fs::read_dir(data_dir.join(SPOOL_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, u64)> = listing
        .filter_map(|item| {
            let path = item.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".batch")?
                .to_owned();
            let count = name.rsplit_once('-')?.1.parse().ok()?;
            Some((path, count))
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_answered_request_is_logged_with_its_facts() {
    let echo = echo_upstream().await;
    let release = Arc::new(Notify::new());
    let streaming = streaming_upstream(release.clone()).await;
    let dead = dead_address().await;
    let echo_service = tagged(echo, "echo");
    let stream_service = tagged(streaming, "stream");
    let dead_service = service(json!({ "url": format!("http://{dead}/"), "retries": 0 }));
    let disabled_service = service(json!({ "url": format!("http://{echo}/"), "enabled": false }));
    let echo_route = route_to(&echo_service, json!({ "paths": ["/echo"] }));
    let upload_route = route_to(
        &echo_service,
        json!({ "paths": ["/upload"], "request_buffering": false }),
    );
    let secure_route = route_to(
        &echo_service,
        json!({ "paths": ["/secure"], "protocols": ["https"] }),
    );
    let dead_route = route_to(&dead_service, json!({ "paths": ["/dead"] }));
    let disabled_route = route_to(&disabled_service, json!({ "paths": ["/disabled"] }));
    let stream_route = route_to(&stream_service, json!({ "paths": ["/stream"] }));
    let control_plane = Uuid::now_v7();
    let organization = Uuid::now_v7();
    let snapshot = Snapshot::compile(
        control_plane,
        organization,
        1,
        vec![HOST.to_string()],
        vec![
            echo_service.clone(),
            stream_service.clone(),
            dead_service.clone(),
            disabled_service.clone(),
        ],
        vec![
            echo_route.clone(),
            upload_route.clone(),
            secure_route.clone(),
            dead_route.clone(),
            disabled_route.clone(),
            stream_route.clone(),
        ],
    );
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), quick_logs(1000)).await;
    wait_for_version(&edge, control_plane, 1).await;
    let mut queue = bus.log_queue("test").await.unwrap();
    let started = Utc::now() - chrono::Duration::milliseconds(1);
    let client = http();
    let url = |path: &str| format!("http://{}{path}", edge.proxy_addr);

    // Buffered request body (size known, under 1 MiB), a query string, Host in capitals with a port.
    let response = client
        .post(url("/echo/a?x=1"))
        .header("host", "Logs.Example.COM:8080")
        .header("x-request-id", "req-buffered")
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let buffered_out = response.bytes().await.unwrap().len() as u64;
    // Streamed request body (route without request buffering).
    let response = client
        .post(url("/upload"))
        .header("host", HOST)
        .header("x-request-id", "req-streamed")
        .body(vec![b'b'; 3000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let streamed_out = response.bytes().await.unwrap().len() as u64;
    // Edge-made answers.
    let mut edge_made = HashMap::new();
    for (path, id, status) in [
        ("/nothing", "req-404", 404),
        ("/dead", "req-502", 502),
        ("/disabled", "req-503", 503),
        ("/secure", "req-426", 426),
    ] {
        let answer = send(&edge, "GET", HOST, path, &[("x-request-id", id)]).await;
        assert_eq!(answer.status, status, "{path}");
        edge_made.insert(id, (path, status));
    }
    // A streamed response: the line is complete only when its body is.
    let mut response = client
        .get(url("/stream"))
        .header("host", HOST)
        .header("x-request-id", "req-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    release.notify_one();
    let mut stream_out = first.len() as u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        stream_out += chunk.len() as u64;
    }
    assert_eq!(stream_out, "first;second".len() as u64);
    // No control plane for this Host: no tenant, no line.
    let answer = send(
        &edge,
        "GET",
        "nobody.example.net",
        "/echo",
        &[("x-request-id", "req-nobody")],
    )
    .await;
    assert_eq!(answer.status, 404);
    let sent = 7;

    let lines = read_logs(&mut queue, sent, Duration::from_secs(10)).await;
    let finished = Utc::now();
    assert_eq!(
        lines.len(),
        sent,
        "one line per attributed request: {lines:#?}"
    );
    let by_request: HashMap<&str, &RequestLog> = lines
        .iter()
        .map(|(_, log)| (log.request_id.as_str(), log))
        .collect();
    assert_eq!(by_request.len(), sent);
    assert!(!by_request.contains_key("req-nobody"));
    let ids: HashSet<Uuid> = lines.iter().map(|(_, log)| log.id).collect();
    assert_eq!(ids.len(), sent, "log ids are unique");
    for (_, log) in &lines {
        assert_eq!(log.id.get_version_num(), 7, "UUIDv7 ids");
        assert_eq!(log.organization_id, organization);
        assert_eq!(log.control_plane_id, control_plane);
        assert_eq!(log.node_id, edge.node_id);
        assert_eq!(log.region, REGION);
        assert_eq!(log.host, HOST);
        assert_eq!(log.client_ip, "127.0.0.1");
        assert_eq!(log.consumer_id, None);
        assert!(log.time >= started && log.time <= finished, "{}", log.time);
        assert_eq!(
            log.time.timestamp_subsec_nanos() % 1_000_000,
            0,
            "milliseconds"
        );
        assert!(log.latency_total_us > 0);
        assert_eq!(
            log.latency_edge_us,
            log.latency_total_us - log.latency_upstream_us.unwrap_or(0)
        );
        assert_eq!(log.ai, Default::default());
    }

    let buffered = by_request["req-buffered"];
    assert_eq!(
        (
            buffered.method.as_str(),
            buffered.path.as_str(),
            buffered.status
        ),
        ("POST", "/echo/a", 200)
    );
    assert_eq!(
        (buffered.service_id, buffered.route_id),
        (Some(echo_service.id), Some(echo_route.id))
    );
    assert_eq!(
        (buffered.bytes_in, buffered.bytes_out),
        (1000, buffered_out)
    );
    let upstream = buffered
        .latency_upstream_us
        .expect("proxied: an upstream latency");
    assert!(upstream > 0 && upstream <= buffered.latency_total_us);

    let streamed = by_request["req-streamed"];
    assert_eq!((streamed.path.as_str(), streamed.status), ("/upload", 200));
    assert_eq!(streamed.route_id, Some(upload_route.id));
    assert_eq!(
        (streamed.bytes_in, streamed.bytes_out),
        (3000, streamed_out)
    );
    assert!(streamed.latency_upstream_us.is_some());

    for (id, (path, status)) in &edge_made {
        let log = by_request[id];
        assert_eq!(
            (log.path.as_str(), log.status, log.method.as_str()),
            (*path, *status, "GET"),
            "{id}"
        );
        assert_eq!(
            log.latency_upstream_us, None,
            "{id}: nothing answered from upstream"
        );
        assert_eq!(log.latency_edge_us, log.latency_total_us, "{id}");
        assert_eq!(log.bytes_in, 0, "{id}");
        assert!(log.bytes_out > 0, "{id}: the JSON error body");
    }
    assert_eq!(
        (
            by_request["req-404"].route_id,
            by_request["req-404"].service_id
        ),
        (None, None)
    );
    assert_eq!(by_request["req-502"].route_id, Some(dead_route.id));
    assert_eq!(by_request["req-503"].route_id, Some(disabled_route.id));
    assert_eq!(by_request["req-426"].route_id, Some(secure_route.id));

    let stream = by_request["req-stream"];
    assert_eq!((stream.status, stream.bytes_out), (200, stream_out));
    assert!(
        stream.latency_total_us >= 150_000,
        "total latency runs to the last byte: {}",
        stream.latency_total_us
    );
    assert!(stream.latency_upstream_us.unwrap() < stream.latency_total_us);

    assert_eq!(
        metric(&edge, "tollgate_request_logs_unattributed_total").await,
        1
    );
    assert_eq!(
        metric(&edge, "tollgate_request_logs_shipped_total").await,
        sent as u64
    );
    assert!(metric(&edge, "tollgate_request_log_batches_published_total").await >= 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn request_logs_off_make_no_lines_and_no_spool() {
    let snapshot = echo_snapshot().await;
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let off = RequestLogConfig {
        enabled: false,
        ..quick_logs(10)
    };
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), off).await;
    wait_for_version(&edge, snapshot.control_plane_id, 1).await;
    for _ in 0..5 {
        assert_eq!(get(&edge, HOST, "/x").await.status, 200);
    }
    let mut queue = bus.log_queue("test").await.unwrap();
    let mut lines = Vec::new();
    take(&mut queue, &mut lines, Duration::from_millis(500)).await;
    assert!(lines.is_empty());
    edge.shutdown().await;
    assert!(!dir.path().join(SPOOL_DIR).exists());
}

#[tokio::test]
async fn shutdown_publishes_the_lines_still_in_memory() {
    let snapshot = echo_snapshot().await;
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing would close this batch before the test gives up: only shutdown does.
    let slow = RequestLogConfig {
        flush_interval: Duration::from_secs(600),
        ..quick_logs(1000)
    };
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), slow).await;
    wait_for_version(&edge, snapshot.control_plane_id, 1).await;
    for _ in 0..5 {
        assert_eq!(get(&edge, HOST, "/x").await.status, 200);
    }
    let mut queue = bus.log_queue("test").await.unwrap();
    let mut lines = Vec::new();
    take(&mut queue, &mut lines, Duration::from_millis(300)).await;
    assert!(lines.is_empty(), "the batch is still open");
    edge.shutdown().await;
    let lines = read_logs(&mut queue, 5, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 5);
    assert!(spool_files(dir.path()).is_empty());
}

/// A `MemoryBus` whose log publishing can be switched off, as an unreachable NATS would be.
#[derive(Clone)]
struct SwitchableBus {
    inner: MemoryBus,
    logs_down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Bus for SwitchableBus {
    async fn publish_snapshot(&self, region: &str, snapshot: &Snapshot) -> Result<(), BusError> {
        self.inner.publish_snapshot(region, snapshot).await
    }
    async fn remove_control_plane(&self, region: &str, id: Uuid) -> Result<(), BusError> {
        self.inner.remove_control_plane(region, id).await
    }
    async fn heads(&self) -> Result<Vec<SnapshotHead>, BusError> {
        self.inner.heads().await
    }
    async fn watch_config(
        &self,
        filter: ConfigFilter,
    ) -> Result<BoxStream<'static, Result<ConfigEvent, BusError>>, BusError> {
        self.inner.watch_config(filter).await
    }
    async fn fetch_snapshot(&self, head: &SnapshotHead) -> Result<Option<Snapshot>, BusError> {
        self.inner.fetch_snapshot(head).await
    }
    async fn publish_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        self.inner.publish_heartbeat(heartbeat).await
    }
    async fn heartbeats(&self) -> Result<BoxStream<'static, Heartbeat>, BusError> {
        self.inner.heartbeats().await
    }
    async fn publish_logs(&self, batch: &LogBatch) -> Result<(), BusError> {
        if self.logs_down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BusError::Unavailable("down for the test".into()));
        }
        self.inner.publish_logs(batch).await
    }
    async fn log_queue(&self, consumer: &str) -> Result<Box<dyn LogQueue>, BusError> {
        self.inner.log_queue(consumer).await
    }
}

#[tokio::test]
async fn a_full_spool_drops_its_oldest_batches_and_a_restarted_edge_replays_the_rest() {
    let snapshot = echo_snapshot().await;
    let bus = SwitchableBus {
        inner: MemoryBus::new(),
        logs_down: Arc::new(AtomicBool::new(true)),
        refused: Arc::new(AtomicU64::new(0)),
    };
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Batches of 10 lines weigh about 1.2 KB: the spool holds two or three of them.
    let spool_max_bytes = 3_500;
    let tiny = RequestLogConfig {
        spool_max_bytes,
        ..quick_logs(10)
    };
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), tiny.clone()).await;
    wait_for_version(&edge, snapshot.control_plane_id, 1).await;
    let sent = 100u64;
    for i in 0..sent {
        let id = format!("bound-{i:03}");
        assert_eq!(
            send(&edge, "GET", HOST, "/x", &[("x-request-id", &id)])
                .await
                .status,
            200
        );
    }
    // Every line is either in the spool or counted as dropped.
    let dropped = within(
        Duration::from_secs(10),
        "all lines spooled or dropped",
        || async {
            let dropped = metric(&edge, DROPPED_SPOOL_FULL).await;
            let spooled: u64 = spool_files(dir.path()).iter().map(|(_, n)| n).sum();
            (dropped > 0 && dropped + spooled == sent).then_some(dropped)
        },
    )
    .await;
    assert!(bus.refused.load(Ordering::SeqCst) > 0, "the bus was asked");
    assert!(metric(&edge, "tollgate_request_log_spool_bytes").await <= spool_max_bytes);
    assert_eq!(
        metric(&edge, "tollgate_request_log_spool_batches").await,
        spool_files(dir.path()).len() as u64
    );
    assert_eq!(
        metric(&edge, "tollgate_request_logs_shipped_total").await,
        0
    );
    edge.shutdown().await;

    // What is left is the newest lines, without a gap: the oldest went first.
    let mut spooled = BTreeSet::new();
    let mut total_bytes = 0;
    for (path, count) in spool_files(dir.path()) {
        let body = std::fs::read(&path).unwrap();
        total_bytes += body.len() as u64;
        let batch = LogBatch::decode(&body).unwrap();
        assert_eq!(batch.logs.len() as u64, count);
        spooled.extend(batch.logs.into_iter().map(|log| log.request_id));
    }
    assert!(total_bytes <= spool_max_bytes);
    assert_eq!(spooled.len() as u64, sent - dropped);
    let expected: BTreeSet<String> = (dropped..sent).map(|i| format!("bound-{i:03}")).collect();
    assert_eq!(spooled, expected);

    // The bus is back: a new edge on the same data dir replays the spool, then deletes it.
    bus.logs_down.store(false, Ordering::SeqCst);
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), tiny).await;
    let mut queue = bus.log_queue("test").await.unwrap();
    let lines = read_logs(&mut queue, spooled.len(), Duration::from_secs(10)).await;
    let replayed: BTreeSet<String> = lines.into_iter().map(|(_, log)| log.request_id).collect();
    assert_eq!(replayed, spooled);
    within(Duration::from_secs(5), "an empty spool", || async {
        spool_files(dir.path()).is_empty().then_some(())
    })
    .await;
    assert_eq!(metric(&edge, "tollgate_request_log_spool_bytes").await, 0);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_during_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = PrivateNats::start(dir.path().join("nats"));
    let prefix = format!("edgelog_{}", Uuid::now_v7().simple());
    let bus = NatsBus::connect(&nats.url(), &prefix).await.unwrap();
    let snapshot = echo_snapshot().await;
    within(
        Duration::from_secs(10),
        "the snapshot published",
        || async { bus.publish_snapshot(REGION, &snapshot).await.ok() },
    )
    .await;
    let edge_dir = dir.path().join("edge");
    let edge = start_logging_edge(
        Arc::new(NatsBus::connect(&nats.url(), &prefix).await.unwrap()),
        &edge_dir,
        RequestLogConfig {
            flush_interval: Duration::from_millis(100),
            ..quick_logs(50)
        },
    )
    .await;
    wait_for_version(&edge, snapshot.control_plane_id, 1).await;

    // Load: two clients sending one request after another, each checking every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, sent, addr) = (stop.clone(), sent.clone(), edge.proxy_addr);
        clients.push(tokio::spawn(async move {
            let client = http();
            while !stop.load(Ordering::SeqCst) {
                let response = client
                    .get(format!("http://{addr}/load"))
                    .header("host", HOST)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .expect("the edge answers while NATS is down");
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    within(Duration::from_secs(10), "logs flowing to NATS", || async {
        (metric(&edge, "tollgate_request_logs_shipped_total").await > 0).then_some(())
    })
    .await;

    nats.stop();
    let before_outage = sent.load(Ordering::SeqCst);
    // Down long enough for publishes to time out, not only to be slow.
    within(
        Duration::from_secs(30),
        "batches in the spool, failed publishes",
        || async {
            let failures = metric(&edge, "tollgate_request_log_publish_failures_total").await;
            (spool_files(&edge_dir).len() >= 3 && failures > 0).then_some(())
        },
    )
    .await;
    assert!(
        sent.load(Ordering::SeqCst) > before_outage,
        "requests were answered during the outage"
    );
    nats.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let sent = sent.load(Ordering::SeqCst);

    within(Duration::from_secs(60), "the spool drained", || async {
        (spool_files(&edge_dir).is_empty()
            && metric(&edge, "tollgate_request_log_spool_batches").await == 0)
            .then_some(())
    })
    .await;
    let failures = metric(&edge, "tollgate_request_log_publish_failures_total").await;
    println!("{sent} requests, {failures} failed publishes, spool drained");

    let reader = NatsBus::connect(&nats.url(), &prefix).await.unwrap();
    let mut queue = reader.log_queue("verify").await.unwrap();
    let lines = read_logs(&mut queue, sent as usize, Duration::from_secs(60)).await;
    let distinct: HashSet<Uuid> = lines.iter().map(|(_, log)| log.id).collect();
    assert_eq!(
        distinct.len() as u64,
        sent,
        "every answered request has its line"
    );
    assert_eq!(lines.len() as u64, sent, "no line is stored twice");
    assert!(lines
        .iter()
        .all(|(_, log)| log.status == 200 && log.path == "/load"));
    let text = metrics_text(&edge).await;
    let dropped: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("tollgate_request_logs_dropped_total{"))
        .collect();
    assert_eq!(dropped.len(), 4, "{text}");
    assert!(
        dropped.iter().all(|line| line.ends_with(" 0")),
        "{dropped:?}"
    );
    edge.shutdown().await;
}

/// Opens a WebSocket to `/ws` on `edge` with `request_id`.
async fn open_websocket(
    edge: &RunningEdge,
    request_id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{HOST}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(edge.proxy_addr)
        .await
        .unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// Sends `size` bytes as one binary message and waits for the echo.
async fn echo_through(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    size: usize,
) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let message = Message::binary(vec![7u8; size]);
    socket.send(message.clone()).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an echo")
        .unwrap()
        .unwrap();
    assert_eq!(echoed, message);
}

/// A WebSocket's line is written when its tunnel closes, with the bytes the tunnel carried each
/// way (as Kong logs an upgraded request) and the handshake's latency; one still open when the
/// edge shuts down is shipped by the shutdown with the bytes so far.
#[tokio::test]
async fn websocket_lines_carry_the_tunnels_bytes_at_close_or_shutdown() {
    let up = websocket_echo_upstream().await;
    let ws = service(json!({ "url": format!("http://{up}") }));
    let route = route_to(&ws, json!({ "paths": ["/ws"] }));
    let control_plane = Uuid::now_v7();
    let snapshot = Snapshot::compile(
        control_plane,
        Uuid::now_v7(),
        1,
        vec![HOST.into()],
        vec![ws],
        vec![route],
    );
    let bus = MemoryBus::new();
    bus.publish_snapshot(REGION, &snapshot).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = start_logging_edge(Arc::new(bus.clone()), dir.path(), quick_logs(1000)).await;
    wait_for_version(&edge, control_plane, 1).await;
    let mut queue = bus.log_queue("test").await.unwrap();

    // Ten messages of 1,000 bytes each way, open for longer than its handshake took, then closed.
    let mut socket = open_websocket(&edge, "ws-closed").await;
    for _ in 0..10 {
        echo_through(&mut socket, 1000).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Nothing is logged while the tunnel is open.
    let mut early = Vec::new();
    take(&mut queue, &mut early, Duration::from_millis(200)).await;
    assert!(early.is_empty(), "{early:?}");
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    // The upstream ended the close handshake by closing its connection; the client closes too.
    drop(socket);
    let lines = read_logs(&mut queue, 1, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0].1;
    assert_eq!((line.request_id.as_str(), line.status), ("ws-closed", 101));
    // On the wire a client's 1,000-byte message is 1,008 bytes (masked), the server's 1,004; the
    // close handshake adds a few.
    assert!(
        (10_080..10_100).contains(&line.bytes_in),
        "bytes in {}",
        line.bytes_in
    );
    assert!(
        (10_040..10_060).contains(&line.bytes_out),
        "bytes out {}",
        line.bytes_out
    );
    assert!(
        line.latency_total_us < 300_000,
        "the handshake's latency, not the tunnel's life: {} µs",
        line.latency_total_us
    );

    // Still open at shutdown: shipped then, with what it carried so far.
    let mut socket = open_websocket(&edge, "ws-open").await;
    echo_through(&mut socket, 500).await;
    edge.shutdown().await;
    let lines = read_logs(&mut queue, 1, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0].1;
    assert_eq!(line.request_id, "ws-open");
    assert_eq!((line.bytes_in, line.bytes_out), (508, 504));
}
