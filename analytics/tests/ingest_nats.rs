//! The ingester with the real pieces: log batches on JetStream (the shared NATS, a prefix per
//! test), the ingester loop, ClickHouse. N logs in, exactly N rows out, also when ClickHouse is
//! stopped during the load and when an ingester dies between insert and acknowledgement.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::sync::{oneshot, Notify};
use tollgate_analytics::ingest::{self, IngestConfig, IngestMetrics, IngestSummary};
use tollgate_analytics::query::{Filters, Month, TimeRange};
use tollgate_analytics::{AnalyticsStore, Inserted, StoreError};
use tollgate_bus::{Bus, NatsBus};
use tollgate_model::request_log::{LogBatch, RequestLog};
use uuid::Uuid;

const CONSUMER: &str = "ingest";

fn test_config() -> IngestConfig {
    IngestConfig {
        max_batches: 50,
        max_rows: 100_000,
        wait: Duration::from_millis(200),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        // Inside the test consumer's 3 s acknowledgement deadline.
        lease_refresh: Duration::from_millis(500),
        lag_interval: Duration::from_millis(200),
    }
}

/// An ingester running in a task, stopped by [`Ingester::stop`] (gracefully) or by dropping
/// its handle's task (a crash).
struct Ingester {
    metrics: Arc<IngestMetrics>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<IngestSummary>,
}

async fn start_ingester(prefix: &str, store: Arc<dyn AnalyticsStore>) -> Ingester {
    let bus = NatsBus::connect(NATS, prefix).await.expect("bus");
    let queue = bus.log_queue(CONSUMER).await.expect("queue");
    let metrics = Arc::new(IngestMetrics::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ingest::run(
        queue,
        store,
        test_config(),
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Ingester {
        metrics,
        stop,
        task,
    }
}

impl Ingester {
    async fn stop(self) -> IngestSummary {
        let _ = self.stop.send(());
        self.task.await.expect("ingester task")
    }
}

async fn publish_all(bus: &NatsBus, batches: &[LogBatch]) {
    for batch in batches {
        bus.publish_logs(batch).await.expect("publish");
    }
}

async fn rows_of(db: &TestDb, organization: Uuid) -> Option<u64> {
    db.try_number(&format!(
        "SELECT count() FROM request_logs WHERE organization_id = toUUID('{organization}')"
    ))
    .await
}

/// Waits until the tenant has `n` rows, then checks it stays at `n` with every log id once.
async fn expect_exactly(db: &TestDb, organization: Uuid, n: u64) {
    eventually(
        &format!("{n} rows for {organization}"),
        Duration::from_secs(60),
        || async {
            let rows = rows_of(db, organization).await?;
            assert!(
                rows <= n,
                "{rows} rows for {organization}, more than the {n} sent"
            );
            (rows == n).then_some(())
        },
    )
    .await;
    let distinct = db
        .number(&format!(
            "SELECT uniqExact(id) FROM request_logs WHERE organization_id = toUUID('{organization}')"
        ))
        .await;
    assert_eq!(distinct, n, "every log stored once");
    // An INSERT makes the raw rows visible before its materialized views have written theirs,
    // so the rollups may trail the raw table for a moment (until the INSERT has run every view,
    // in their names' order). The daily one is fed by a view on the hourly view's output: it must
    // count too, after a ClickHouse restart as well.
    for (rollup, requests) in [
        ("requests_1m_cp", "countMerge(requests)"),
        ("requests_1d_status", "countMerge(requests)"),
        ("usage_1d", "sum(requests)"),
    ] {
        eventually(
            &format!("{rollup} to count {n} requests for {organization}"),
            Duration::from_secs(10),
            || async {
                let counted = db
                    .number(&format!(
                        "SELECT {requests} FROM {rollup} WHERE organization_id = toUUID('{organization}')"
                    ))
                    .await;
                assert!(counted <= n, "{rollup} counts {counted} requests for {n} logs");
                (counted == n).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn every_published_log_becomes_exactly_one_row_with_its_fields() {
    let db = TestDb::new().await;
    let nats = NatsPrefix::new(CONSUMER).await;
    let ingester = start_ingester(&nats.prefix, db.store.clone()).await;
    // Batches made here, so every field is known; `ingest_edge.rs` sends real requests through
    // an edge instead.
    let bus = NatsBus::connect(NATS, &nats.prefix).await.expect("bus");
    let a = Tenant::new();
    let b = Tenant::new();
    let start = now_ms() - chrono::Duration::minutes(5);
    let a_batches = batches(&a, start, 40, 50);
    let b_batches = batches(&b, start, 10, 30);
    // Interleaved, as a shared edge publishes them.
    for (i, batch) in a_batches.iter().enumerate() {
        publish_all(&bus, std::slice::from_ref(batch)).await;
        if let Some(b) = b_batches.get(i) {
            publish_all(&bus, std::slice::from_ref(b)).await;
        }
    }
    expect_exactly(&db, a.organization, 2000).await;
    expect_exactly(&db, b.organization, 300).await;

    // The fields come back as published, through the store's own query.
    let range = TimeRange {
        from: start - chrono::Duration::minutes(1),
        to: now_ms() + chrono::Duration::minutes(1),
    };
    let stored = db
        .store
        .recent(a.organization, &range, &Filters::default(), 10_000)
        .await
        .unwrap();
    let sent: Vec<RequestLog> = a_batches.iter().flat_map(|b| b.logs.clone()).collect();
    assert_same_logs(stored, sent);
    let usage = db
        .store
        .usage(b.organization, Month::of(start))
        .await
        .unwrap();
    assert_eq!(usage.requests, 300);

    eventually(
        "the lag gauge to reach 0",
        Duration::from_secs(10),
        || async { (ingester.metrics.lag.get() == 0).then_some(()) },
    )
    .await;
    let metrics = ingester.metrics.render();
    assert!(
        metrics.contains("tollgate_ingest_rows_total 2300"),
        "{metrics}"
    );
    let summary = ingester.stop().await;
    assert_eq!(
        summary,
        IngestSummary {
            rows: 2300,
            batches: 50,
            duplicate_batches: 0
        }
    );
}

#[tokio::test]
async fn a_clickhouse_outage_delays_logs_and_loses_or_doubles_none() {
    let mut clickhouse = PrivateClickHouse::start().await;
    let db = TestDb::on(&clickhouse.server).await;
    let nats = NatsPrefix::new(CONSUMER).await;
    let ingester = start_ingester(&nats.prefix, db.store.clone()).await;
    let bus = NatsBus::connect(NATS, &nats.prefix).await.expect("bus");
    let t = Tenant::new();
    let all = batches(&t, now_ms(), 90, 40);

    // A third before the outage, stored.
    publish_all(&bus, &all[..30]).await;
    expect_exactly(&db, t.organization, 1200).await;

    // A third while ClickHouse is down: the ingester fails, retries and holds its batches
    // longer than the bus's acknowledgement deadline (3 s here).
    clickhouse.stop().await;
    publish_all(&bus, &all[30..60]).await;
    eventually(
        "failed inserts while ClickHouse is down",
        Duration::from_secs(30),
        || async { (ingester.metrics.insert_errors.get() >= 3).then_some(()) },
    )
    .await;
    tokio::time::sleep(TEST_ACK_WAIT + Duration::from_secs(1)).await;

    // The rest after it is back.
    clickhouse.run().await;
    publish_all(&bus, &all[60..]).await;
    expect_exactly(&db, t.organization, 3600).await;
    let batches_stored = db
        .number(&format!(
            "SELECT uniqExact(batch_id) FROM request_logs WHERE organization_id = toUUID('{}')",
            t.organization
        ))
        .await;
    assert_eq!(batches_stored, 90);
    let summary = ingester.stop().await;
    assert_eq!(summary.rows, 3600);
}

/// The ClickHouse store with its inserts watched: it remembers the most batches one insert got,
/// and with `hang_after_insert` it stores, notifies, then never answers (the ingester is stuck
/// between its insert and its acknowledgements, where a test kills it); with `fail_inserts`
/// every insert fails as if ClickHouse were down. Queries pass through.
struct WatchedStore {
    inner: Arc<dyn AnalyticsStore>,
    largest_insert: Arc<std::sync::atomic::AtomicUsize>,
    hang_after_insert: Option<Arc<Notify>>,
    fail_inserts: bool,
}

impl WatchedStore {
    fn new(inner: Arc<dyn AnalyticsStore>) -> WatchedStore {
        WatchedStore {
            inner,
            largest_insert: Arc::default(),
            hang_after_insert: None,
            fail_inserts: false,
        }
    }
}

#[async_trait::async_trait]
impl AnalyticsStore for WatchedStore {
    async fn insert(&self, batches: &[LogBatch]) -> Result<Inserted, StoreError> {
        self.largest_insert
            .fetch_max(batches.len(), std::sync::atomic::Ordering::Relaxed);
        if self.fail_inserts {
            return Err(StoreError::Unavailable("ClickHouse is down (test)".into()));
        }
        let inserted = self.inner.insert(batches).await?;
        if let Some(notify) = &self.hang_after_insert {
            notify.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(inserted)
    }
    async fn series(
        &self,
        organization: Uuid,
        query: &tollgate_analytics::query::SeriesQuery,
    ) -> Result<Vec<tollgate_analytics::query::Point>, StoreError> {
        self.inner.series(organization, query).await
    }
    async fn top(
        &self,
        organization: Uuid,
        query: &tollgate_analytics::query::TopQuery,
    ) -> Result<Vec<tollgate_analytics::query::TopRow>, StoreError> {
        self.inner.top(organization, query).await
    }
    async fn totals(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
    ) -> Result<tollgate_analytics::query::Totals, StoreError> {
        self.inner.totals(organization, range, filters).await
    }
    async fn recent(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
        limit: u32,
    ) -> Result<Vec<RequestLog>, StoreError> {
        self.inner.recent(organization, range, filters, limit).await
    }
    async fn usage(
        &self,
        organization: Uuid,
        month: Month,
    ) -> Result<tollgate_analytics::query::Usage, StoreError> {
        self.inner.usage(organization, month).await
    }
}

#[tokio::test]
async fn an_ingester_killed_between_insert_and_ack_leaves_exact_counts() {
    let db = TestDb::new().await;
    let nats = NatsPrefix::new(CONSUMER).await;
    let bus = NatsBus::connect(NATS, &nats.prefix).await.expect("bus");
    let t = Tenant::new();
    let all = batches(&t, now_ms(), 30, 20);
    publish_all(&bus, &all[..20]).await;

    let inserted = Arc::new(Notify::new());
    let doomed = start_ingester(
        &nats.prefix,
        Arc::new(WatchedStore {
            hang_after_insert: Some(inserted.clone()),
            ..WatchedStore::new(db.store.clone())
        }),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), inserted.notified())
        .await
        .expect("the first insert");
    // Killed with its batches stored and not acknowledged.
    doomed.task.abort();
    let stored_before = rows_of(&db, t.organization).await.unwrap_or(0);
    assert!(
        stored_before > 0,
        "the doomed ingester stored its first batches"
    );

    // A new ingester gets those batches again once their deadline passes, skips them, and
    // stores the rest, including batches published after the crash.
    let survivor = start_ingester(&nats.prefix, db.store.clone()).await;
    publish_all(&bus, &all[20..]).await;
    expect_exactly(&db, t.organization, 600).await;
    eventually(
        "the redelivered batches to be skipped",
        Duration::from_secs(30),
        || async { (survivor.metrics.duplicate_batches.get() > 0).then_some(()) },
    )
    .await;
    let summary = survivor.stop().await;
    assert_eq!(summary.rows + stored_before, 600);
}

#[tokio::test]
async fn a_stopping_ingester_hands_back_its_batches_at_once() {
    // Redelivery after the acknowledgement deadline would take two minutes: anything delivered
    // again within the test's deadlines was handed back (NAKed) by the stopping ingester.
    let db = TestDb::new().await;
    let nats = NatsPrefix::with_ack_wait(CONSUMER, Duration::from_secs(120)).await;
    let bus = NatsBus::connect(NATS, &nats.prefix).await.expect("bus");
    let t = Tenant::new();
    let all = batches(&t, now_ms(), 20, 30);
    publish_all(&bus, &all).await;

    let stuck = start_ingester(
        &nats.prefix,
        Arc::new(WatchedStore {
            fail_inserts: true,
            ..WatchedStore::new(db.store.clone())
        }),
    )
    .await;
    eventually(
        "the stuck ingester to hold batches through failed inserts",
        Duration::from_secs(30),
        || async { (stuck.metrics.insert_errors.get() >= 2).then_some(()) },
    )
    .await;
    let summary = stuck.stop().await;
    assert_eq!(summary.rows, 0);
    assert_eq!(rows_of(&db, t.organization).await.unwrap_or(0), 0);

    let next = start_ingester(&nats.prefix, db.store.clone()).await;
    expect_exactly(&db, t.organization, 600).await;
    let summary = next.stop().await;
    assert_eq!(summary.rows, 600);
}

/// The bus's side with each fetch cut to a few batches, so one insert has to gather several.
struct SmallFetches {
    inner: Box<dyn tollgate_bus::LogQueue>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl tollgate_bus::LogQueue for SmallFetches {
    async fn next(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<tollgate_bus::LogDelivery>, tollgate_bus::BusError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.next(max.min(3), wait).await
    }
    async fn pending(&mut self) -> Result<u64, tollgate_bus::BusError> {
        self.inner.pending().await
    }
}

#[tokio::test]
async fn one_insert_gathers_batches_of_several_fetches_and_counts_stay_exact() {
    let db = TestDb::new().await;
    let nats = NatsPrefix::new(CONSUMER).await;
    let bus = NatsBus::connect(NATS, &nats.prefix).await.expect("bus");
    let t = Tenant::new();
    let all = batches(&t, now_ms(), 40, 25);
    // A backlog first, as after an ingester outage.
    publish_all(&bus, &all).await;

    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let queue = Box::new(SmallFetches {
        inner: bus.log_queue(CONSUMER).await.expect("queue"),
        fetches: fetches.clone(),
    });
    let store = WatchedStore::new(db.store.clone());
    let largest = store.largest_insert.clone();
    let store = Arc::new(store);
    let metrics = Arc::new(IngestMetrics::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ingest::run(
        queue,
        store,
        IngestConfig {
            wait: Duration::from_secs(2),
            ..test_config()
        },
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    expect_exactly(&db, t.organization, 1000).await;
    let _ = stop.send(());
    let summary = task.await.expect("ingester task");
    assert_eq!(
        summary,
        IngestSummary {
            rows: 1000,
            batches: 40,
            duplicate_batches: 0
        }
    );
    let largest = largest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest > 3,
        "an insert held {largest} batches: no more than one fetch brings"
    );
    assert!(fetches.load(std::sync::atomic::Ordering::Relaxed) >= 14);
    let batches_stored = db
        .number(&format!(
            "SELECT uniqExact(batch_id) FROM request_logs WHERE organization_id = toUUID('{}')",
            t.organization
        ))
        .await;
    assert_eq!(batches_stored, 40);
}
