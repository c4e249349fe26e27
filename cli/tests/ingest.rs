//! `tollgate ingest` as a process: killed with SIGKILL right after its first insert, while most of
//! the stream is still to go, then started again. Every log arrives, none twice: whatever it had
//! fetched or inserted without acknowledging comes back after the ack deadline and is skipped by
//! batch id. (The exact window between an insert and its acks is hit deterministically by
//! `analytics/tests/ingest_nats.rs`; a kill of a real process cannot aim that precisely.)
//! An ingester also refuses a database that lacks migrations, until `tollgate migrate` runs.
//! Needs NATS on 127.0.0.1:4222 and ClickHouse on 127.0.0.1:8123 (`scripts/services.sh`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tollgate_bus::{Bus, NatsBus};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

const NATS: &str = "nats://127.0.0.1:4222";
const CLICKHOUSE: &str = "http://127.0.0.1:8123";
const BATCHES: usize = 400;
const LOGS_PER_BATCH: usize = 250;

async fn clickhouse(database: &str, sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{CLICKHOUSE}/?database={database}"))
        .body(sql.to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("ClickHouse must run on {CLICKHOUSE} (scripts/services.sh): {e}")
        });
    let ok = response.status().is_success();
    let text = response.text().await.unwrap_or_default();
    assert!(ok, "{sql}: {text}");
    text.trim().to_string()
}

async fn count(database: &str, what: &str) -> usize {
    clickhouse(database, &format!("SELECT {what} FROM request_logs"))
        .await
        .parse()
        .expect("a number")
}

fn log(organization: Uuid, control_plane: Uuid, node: Uuid, n: usize) -> RequestLog {
    RequestLog {
        id: Uuid::now_v7(),
        time: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .expect("now"),
        organization_id: organization,
        control_plane_id: control_plane,
        node_id: node,
        region: "kill".into(),
        request_id: format!("kill-{n}"),
        service_id: None,
        route_id: None,
        consumer_id: None,
        method: "GET".into(),
        host: "kill.example.com".into(),
        path: format!("/items/{n}"),
        status: 200,
        latency_total_us: 900,
        latency_upstream_us: Some(700),
        latency_edge_us: 200,
        bytes_in: 0,
        bytes_out: 1024,
        client_ip: "127.0.0.1".into(),
        ai: AiUsage::default(),
    }
}

/// `tollgate migrate` of the ClickHouse database at `url`, which must succeed.
fn migrate(dir: &std::path::Path, url: &str) {
    let mut migrate = Process::spawn("migrate", dir, &["migrate", "--clickhouse-url", url]);
    assert!(
        migrate.wait_success(Duration::from_secs(60)),
        "migrate failed: {}",
        std::fs::read_to_string(&migrate.log).unwrap_or_default()
    );
}

/// `tollgate ingest` on the shared NATS under `prefix`, into the ClickHouse database at `url`.
fn ingest_args(url: &str, prefix: &str, more: &[&str]) -> Vec<String> {
    let base = [
        "ingest",
        "--nats-url",
        NATS,
        "--clickhouse-url",
        url,
        "--nats-prefix",
        prefix,
        "--status-listen",
        "127.0.0.1:0",
    ];
    base.iter().chain(more).map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingester_process_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("tg_cli_ingest_{}", Uuid::new_v4().simple());
    let url = format!("{CLICKHOUSE}/{database}");
    let prefix = format!("tgkill{}", &Uuid::new_v4().simple().to_string()[..10]);

    migrate(dir.path(), &url);

    let bus = NatsBus::connect(NATS, &prefix).await.expect("NATS");
    let (organization, control_plane, node) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for b in 0..BATCHES {
        let batch = LogBatch {
            id: Uuid::now_v7(),
            node_id: node,
            logs: (0..LOGS_PER_BATCH)
                .map(|i| log(organization, control_plane, node, b * LOGS_PER_BATCH + i))
                .collect(),
        };
        bus.publish_logs(&batch).await.expect("publish");
    }
    let total = BATCHES * LOGS_PER_BATCH;

    // Small inserts, so the kill lands with most of the stream still to go.
    let ingest_args = ingest_args(&url, &prefix, &["--max-batches", "10"]);
    let ingest_args: Vec<&str> = ingest_args.iter().map(String::as_str).collect();
    let mut first = Process::spawn("ingest-1", dir.path(), &ingest_args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&database, "count()").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the first ingester stored nothing: {}",
            std::fs::read_to_string(&first.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let at_kill = count(&database, "count()").await;
    assert!(
        at_kill < total,
        "the ingester finished before it was killed ({at_kill} rows); the test proves nothing"
    );

    // Batches it held unacknowledged, if any, come back after the 60 s ack deadline.
    let _second = Process::spawn("ingest-2", dir.path(), &ingest_args);
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let rows = count(&database, "count()").await;
        assert!(rows <= total, "{rows} rows for {total} logs: stored twice");
        if rows == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} of {total} rows after the restart (killed at {at_kill})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&database, "uniqExact(id)").await, total);
    assert_eq!(count(&database, "uniqExact(request_id)").await, total);

    clickhouse("default", &format!("DROP DATABASE IF EXISTS {database}")).await;
    if let Ok(client) = async_nats::connect(NATS).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("{prefix}_logs"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingester_refuses_a_database_that_lacks_migrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("tg_cli_ingest_{}", Uuid::new_v4().simple());
    let url = format!("{CLICKHOUSE}/{database}");
    let prefix = format!("tgmig{}", &Uuid::new_v4().simple().to_string()[..10]);
    let ingest_args = ingest_args(&url, &prefix, &[]);
    let ingest_args: Vec<&str> = ingest_args.iter().map(String::as_str).collect();
    let refused = |process: &mut Process, missing: &str| {
        assert!(
            !process.wait_success(Duration::from_secs(30)),
            "{} started",
            process.name
        );
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        assert!(
            log.contains("run `tollgate migrate") && log.contains(missing),
            "{log}"
        );
    };

    // Never migrated.
    let mut fresh = Process::spawn("ingest-fresh", dir.path(), &ingest_args);
    refused(&mut fresh, "lacks migrations: all");

    // As the release before the daily rollups left it.
    let parsed = tollgate_analytics::clickhouse::ClickHouseUrl::parse(&url).expect("url");
    tollgate_analytics::clickhouse::schema::migrate_through(&parsed, "0003_narrow_rollups")
        .await
        .expect("migrate through 0003");
    let mut old = Process::spawn("ingest-old", dir.path(), &ingest_args);
    refused(&mut old, "0004_daily_and_status_rollups");

    migrate(dir.path(), &url);
    let mut current = Process::spawn("ingest-current", dir.path(), &ingest_args);
    current.wait_for_line("ingesting", Duration::from_secs(30));
    drop(current);
    clickhouse("default", &format!("DROP DATABASE IF EXISTS {database}")).await;
}
