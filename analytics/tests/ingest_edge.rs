//! End to end with every real piece: requests through a real edge (in-process, on the shared
//! NATS under a prefix of the test's own), its request logs on JetStream, the ingester, and
//! ClickHouse. N requests in, exactly N rows for that tenant with the facts of each request, and
//! none of them visible to another tenant.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::sync::oneshot;
use tollgate_analytics::ingest::{self, IngestConfig, IngestMetrics};
use tollgate_analytics::query::{Dimension, Filters, TimeRange, TopQuery};
use tollgate_analytics::AnalyticsStore;
use tollgate_bus::{Bus, NatsBus};
use tollgate_edge::{EdgeConfig, RequestLogConfig};
use tollgate_model::entity::{build, Build};
use tollgate_model::{Route, Service, Snapshot};
use uuid::Uuid;

const REGION: &str = "e2e";
const HOST: &str = "shop.example.com";

async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|| async { "hello from upstream" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn requests_through_the_edge_become_exactly_their_rows() {
    let db = TestDb::new().await;
    let nats = NatsPrefix::new("ingest").await;
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(NATS, &nats.prefix).await.expect("bus"));

    // A control plane with one service and one route, published as the API does.
    let upstream = upstream().await;
    let service = build::<Service>(
        Build::Create { id: Uuid::now_v7() },
        &json!({ "name": "shop", "url": format!("http://{upstream}/") }),
        1,
    )
    .expect("service");
    let route = build::<Route>(
        Build::Create { id: Uuid::now_v7() },
        &json!({ "name": "items", "paths": ["/items"], "service": { "id": service.id } }),
        1,
    )
    .expect("route");
    let organization = Uuid::now_v7();
    let control_plane = Uuid::now_v7();
    let snapshot = Snapshot::compile(
        control_plane,
        organization,
        1,
        vec![HOST.to_string()],
        vec![service.clone()],
        vec![route.clone()],
    );
    bus.publish_snapshot(REGION, &snapshot)
        .await
        .expect("publish snapshot");

    let dir = tempfile::tempdir().expect("temp dir");
    let edge = tollgate_edge::start(
        EdgeConfig {
            header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
            proxy_listen: "127.0.0.1:0".parse().expect("addr"),
            proxy_tls_listen: None,
            master_key: None,
            status_listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            region: REGION.into(),
            control_plane: None,
            heartbeat_interval: Duration::from_secs(5),
            binary_version: "e2e".into(),
            request_logs: RequestLogConfig {
                enabled: true,
                batch_size: 50,
                flush_interval: Duration::from_millis(100),
                ..RequestLogConfig::default()
            },
        },
        bus.clone(),
    )
    .await
    .expect("edge");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let ready = format!("http://{}/status/ready", edge.status_addr);
    eventually(
        "the edge to load its config",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let ready = ready.clone();
            async move {
                let response = client.get(&ready).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await;

    let metrics = Arc::new(IngestMetrics::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let ingester = tokio::spawn(ingest::run(
        bus.log_queue("ingest").await.expect("queue"),
        db.store.clone(),
        IngestConfig {
            wait: Duration::from_millis(200),
            ..IngestConfig::default()
        },
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    // 300 proxied requests and 20 that match no route, with request ids we can find again.
    let started = now_ms() - chrono::Duration::seconds(1);
    let proxied = 300u64;
    let unmatched = 20u64;
    for n in 0..proxied + unmatched {
        let path = if n < proxied {
            format!("/items/{n}")
        } else {
            format!("/nowhere/{n}")
        };
        let response = client
            .get(format!("http://{}{path}", edge.proxy_addr))
            .header("host", HOST)
            .header("x-request-id", format!("e2e-{n}"))
            .send()
            .await
            .expect("request");
        let expected = if n < proxied { 200 } else { 404 };
        assert_eq!(response.status().as_u16(), expected, "{path}");
        let _ = response.bytes().await;
    }
    let total = proxied + unmatched;
    eventually(
        &format!("{total} rows for the tenant"),
        Duration::from_secs(60),
        || async {
            let rows = db
                .try_number(&format!(
                    "SELECT count() FROM request_logs WHERE organization_id = toUUID('{organization}')"
                ))
                .await?;
            assert!(rows <= total, "{rows} rows for {total} requests");
            (rows == total).then_some(())
        },
    )
    .await;

    // Each request once, with its facts.
    let range = TimeRange {
        from: started,
        to: now_ms() + chrono::Duration::seconds(1),
    };
    let logs = db
        .store
        .recent(organization, &range, &Filters::default(), 10_000)
        .await
        .expect("recent");
    assert_eq!(logs.len() as u64, total);
    let mut ids: Vec<&str> = logs.iter().map(|l| l.request_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "every request id once");
    for log in &logs {
        let n: u64 = log
            .request_id
            .strip_prefix("e2e-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected request id {}", log.request_id));
        assert_eq!(log.control_plane_id, control_plane);
        assert_eq!(log.node_id, edge.node_id);
        assert_eq!(log.region, REGION);
        assert_eq!(log.host, HOST);
        assert_eq!(log.method, "GET");
        assert!(log.time >= started && log.time < range.to, "{:?}", log.time);
        if n < proxied {
            assert_eq!(log.path, format!("/items/{n}"));
            assert_eq!(log.status, 200);
            assert_eq!(log.service_id, Some(service.id));
            assert_eq!(log.route_id, Some(route.id));
            assert!(log.latency_upstream_us.is_some());
            assert_eq!(log.bytes_out, "hello from upstream".len() as u64);
        } else {
            assert_eq!(log.path, format!("/nowhere/{n}"));
            assert_eq!(log.status, 404);
            assert_eq!(log.route_id, None);
            assert_eq!(log.latency_upstream_us, None);
        }
    }
    // The rollup the totals read is written just after the raw rows by the same INSERT.
    let totals = eventually(
        &format!("totals of {total} requests"),
        Duration::from_secs(10),
        || async {
            let totals = db
                .store
                .totals(organization, &range, &Filters::default())
                .await
                .expect("totals");
            assert!(totals.requests <= total, "{totals:?}");
            (totals.requests == total).then_some(totals)
        },
    )
    .await;
    assert_eq!(totals.errors_4xx, unmatched);

    // Another tenant sees none of it, even filtering on this tenant's ids.
    let other = Uuid::now_v7();
    for filters in [
        Filters::default(),
        Filters {
            control_plane: Some(control_plane),
            ..Default::default()
        },
        Filters {
            route: Some(route.id),
            ..Default::default()
        },
    ] {
        let totals = db
            .store
            .totals(other, &range, &filters)
            .await
            .expect("totals");
        assert_eq!(totals.requests, 0);
        let top = db
            .store
            .top(
                other,
                &TopQuery {
                    range,
                    filters: filters.clone(),
                    by: Dimension::Route,
                    limit: 10,
                },
            )
            .await
            .expect("top");
        assert!(top.is_empty());
    }

    let _ = stop.send(());
    let summary = ingester.await.expect("ingester");
    assert_eq!(summary.rows, total);
    edge.shutdown().await;
}
