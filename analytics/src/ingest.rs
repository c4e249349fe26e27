//! The ingester: takes log batches from the bus and stores them, acknowledging a batch only
//! after the insert that holds it succeeded (DESIGN §9). A store outage delays logs and loses
//! none: the same deliveries are retried with backoff while their leases on the bus are kept
//! alive, so no other ingester takes them meanwhile. A crash between insert and ack makes the
//! bus deliver the batches again, and the store drops batch ids it already has, so counts stay
//! exact. Store- and bus-agnostic: production runs it on JetStream and ClickHouse, `tollgate dev`
//! on the in-process channel and SQLite.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};
use tokio::sync::{mpsc, oneshot};
use tollgate_bus::{BusError, LogDelivery, LogQueue};
use tollgate_model::request_log::LogBatch;

use crate::{AnalyticsStore, Inserted};

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Most batches stored by one insert.
    pub max_batches: usize,
    /// Most rows stored by one insert (give or take one fetch). Batches are gathered over
    /// several fetches up to this: ClickHouse spends far less per row on few big inserts than
    /// on many small ones (fewer parts to write and merge, one pass of the materialized views).
    pub max_rows: usize,
    /// How long batches are gathered for one insert (the latency floor of a quiet stream is
    /// this, not more).
    pub wait: Duration,
    /// First pause after a failed insert; doubled per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often held deliveries' leases are renewed while their insert waits. Well inside the
    /// bus's acknowledgement deadline (60 s on JetStream).
    pub lease_refresh: Duration,
    /// How often the queue's backlog is read for the lag gauge.
    pub lag_interval: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_batches: 5_000,
            max_rows: 200_000,
            wait: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            lease_refresh: Duration::from_secs(15),
            lag_interval: Duration::from_secs(1),
        }
    }
}

/// The ingester's Prometheus metrics, in a registry of its own (several ingesters in one
/// process, as in tests, keep theirs apart).
pub struct IngestMetrics {
    registry: Registry,
    pub rows: IntCounter,
    pub batches: IntCounter,
    pub duplicate_batches: IntCounter,
    pub insert_errors: IntCounter,
    pub queue_errors: IntCounter,
    pub ack_errors: IntCounter,
    pub lag: IntGauge,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::with_opts(Opts::new(name, help)).expect("static metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric name");
            counter
        };
        let rows = counter(
            "tollgate_ingest_rows_total",
            "Request logs stored (rows of batches not stored before).",
        );
        let batches = counter(
            "tollgate_ingest_batches_total",
            "Log batches stored and acknowledged.",
        );
        let duplicate_batches = counter(
            "tollgate_ingest_duplicate_batches_total",
            "Redelivered log batches skipped because the store had them.",
        );
        let insert_errors = counter(
            "tollgate_ingest_insert_errors_total",
            "Failed inserts (each is retried).",
        );
        let queue_errors = counter(
            "tollgate_ingest_queue_errors_total",
            "Failed reads from the bus.",
        );
        let ack_errors = counter(
            "tollgate_ingest_ack_errors_total",
            "Failed acknowledgements (those batches come again and are skipped).",
        );
        let lag = IntGauge::with_opts(Opts::new(
            "tollgate_ingest_lag_batches",
            "Log batches on the bus not yet handed to an ingester.",
        ))
        .expect("static metric");
        registry
            .register(Box::new(lag.clone()))
            .expect("unique metric name");
        IngestMetrics {
            registry,
            rows,
            batches,
            duplicate_batches,
            insert_errors,
            queue_errors,
            ack_errors,
            lag,
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What the loop did when it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub rows: u64,
    pub batches: u64,
    pub duplicate_batches: u64,
}

/// Moves batches from `queue` into `store` until `shutdown` completes. An insert under way when
/// it does is finished and acknowledged first; batches waiting out a store outage, and those
/// gathered for the next insert, are handed back to the bus unacknowledged.
///
/// Two tasks form a pipeline: a fetcher gathers (and decodes) the next insert's batches while
/// this one stores the previous, so the ingester's work overlaps the store's. Every batch taken
/// from the bus is held by exactly one of them, which keeps its lease alive until it is
/// acknowledged or handed back.
pub async fn run(
    queue: Box<dyn LogQueue>,
    store: Arc<dyn AnalyticsStore>,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> IngestSummary {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut summary = IngestSummary::default();
    let (requests, requested) = mpsc::channel(1);
    let (stop_fetcher, fetcher_stopped) = oneshot::channel::<()>();
    let fetcher = tokio::spawn(fetch_loop(
        queue,
        config.clone(),
        metrics.clone(),
        requested,
        fetcher_stopped,
    ));
    loop {
        let (reply, mut replied) = oneshot::channel::<Vec<LogDelivery>>();
        if requests.send(reply).await.is_err() {
            break;
        }
        let mut deliveries = tokio::select! {
            biased;
            _ = &mut shutdown => {
                // Handed over just as the shutdown came: back to the bus with them.
                if let Ok(deliveries) = replied.try_recv() {
                    release(&deliveries).await;
                }
                break;
            }
            gathered = &mut replied => match gathered {
                Ok(deliveries) => deliveries,
                Err(_) => break,
            },
        };
        // The batches move out of their deliveries (which keep what acknowledging needs), so
        // the store reads them without a copy.
        let batches: Vec<LogBatch> = deliveries
            .iter_mut()
            .map(|d| {
                let emptied = LogBatch {
                    id: d.batch.id,
                    node_id: d.batch.node_id,
                    logs: Vec::new(),
                };
                std::mem::replace(&mut d.batch, emptied)
            })
            .collect();
        let inserting = Instant::now();
        let Some(inserted) = store_with_retries(
            store.as_ref(),
            &batches,
            &deliveries,
            &config,
            &metrics,
            &mut shutdown,
        )
        .await
        else {
            tracing::info!(
                batches = batches.len(),
                "stopping with batches not stored; the bus delivers them again"
            );
            // Handing back needs the batches themselves where the bus keeps no copy (dev).
            for (delivery, batch) in deliveries.iter_mut().zip(batches) {
                delivery.batch = batch;
            }
            release(&deliveries).await;
            break;
        };
        let insert_took = inserting.elapsed();
        // The bus needs no answer to an acknowledgement: these only queue messages.
        for delivery in &deliveries {
            if let Err(e) = delivery.ack().await {
                // Stored already: the bus delivers it again and the store skips it.
                metrics.ack_errors.inc();
                tracing::warn!(batch = %delivery.batch.id, error = %e, "acknowledging a stored log batch failed");
            }
        }
        let stored_batches = batches.len() as u64 - inserted.duplicate_batches;
        tracing::debug!(batches = batches.len(), rows = inserted.rows, took = ?insert_took, "stored log batches");
        metrics.rows.inc_by(inserted.rows);
        metrics.batches.inc_by(stored_batches);
        metrics.duplicate_batches.inc_by(inserted.duplicate_batches);
        summary.rows += inserted.rows;
        summary.batches += stored_batches;
        summary.duplicate_batches += inserted.duplicate_batches;
        if inserted.duplicate_batches > 0 {
            tracing::info!(
                duplicates = inserted.duplicate_batches,
                "skipped log batches stored before (redelivered)"
            );
        }
    }
    // The fetcher hands back what it gathered before it stops.
    drop(stop_fetcher);
    drop(requests);
    let _ = fetcher.await;
    summary
}

/// The fetcher's side of [`run`]: gathers one insert's worth of batches ahead, waits to be
/// asked for it while keeping its leases alive, hands it over and gathers the next. Stops when
/// `stop` completes or the loop is gone, handing back what it holds. Then it flushes the bus's
/// connection, which also carries what the loop handed back before stopping it: a process that
/// exits right after would lose those messages, and its batches would wait out their deadline.
async fn fetch_loop(
    mut queue: Box<dyn LogQueue>,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    requests: mpsc::Receiver<oneshot::Sender<Vec<LogDelivery>>>,
    stop: oneshot::Receiver<()>,
) {
    fetch_until_stopped(queue.as_mut(), config, metrics, requests, stop).await;
    if let Err(e) = queue.flush().await {
        tracing::debug!(error = %e, "flushing the bus after stopping failed");
    }
}

async fn fetch_until_stopped(
    queue: &mut dyn LogQueue,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    mut requests: mpsc::Receiver<oneshot::Sender<Vec<LogDelivery>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = config.min_backoff;
    let mut lag_read = Instant::now() - config.lag_interval;
    loop {
        if lag_read.elapsed() >= config.lag_interval {
            lag_read = Instant::now();
            if let Ok(pending) = queue.pending().await {
                metrics.lag.set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        // A gathering is not cut short by `stop`: what it took must be handed back, or it would
        // wait out its deadline. That includes batches the loop hands back while stopping, which
        // the bus may deliver again at once to this very fetch. (It ends within 4 × `wait`.)
        let gathered = gather(queue, &config, &metrics).await;
        if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            if let Ok(deliveries) = gathered {
                release(&deliveries).await;
            }
            return;
        }
        let deliveries = match gathered {
            Ok(deliveries) => {
                backoff = config.min_backoff;
                deliveries
            }
            Err(e) => {
                metrics.queue_errors.inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "reading log batches failed");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        let mut leases = tokio::time::interval_at(
            tokio::time::Instant::now() + config.lease_refresh,
            config.lease_refresh,
        );
        leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reply = loop {
            tokio::select! {
                biased;
                _ = &mut stop => break None,
                request = requests.recv() => break request,
                _ = leases.tick() => renew_leases(&deliveries).await,
            }
        };
        let Some(reply) = reply else {
            release(&deliveries).await;
            return;
        };
        if let Err(deliveries) = reply.send(deliveries) {
            // The loop stopped waiting (shutting down).
            release(&deliveries).await;
            return;
        }
    }
}

/// Batches for one insert: fetched until `max_rows` rows or `max_batches` batches came, or a
/// fetch came back empty. The first fetches wait up to `wait` for batches; once that passed,
/// only briefly, so a backlog is gathered whole while a trickle is stored soon, and never
/// later than four times `wait` after the first fetch began. Empty when none came within
/// `wait`. A failed fetch after some batches came ends the gathering early: those are stored.
async fn gather(
    queue: &mut dyn LogQueue,
    config: &IngestConfig,
    metrics: &IngestMetrics,
) -> Result<Vec<LogDelivery>, BusError> {
    // Long enough for a server with batches ready to send them, short enough to add little
    // latency when it has none.
    const BRIEF_FETCH: Duration = Duration::from_millis(20);
    let began = Instant::now();
    let max_batches = config.max_batches.max(1);
    let mut deliveries: Vec<LogDelivery> = Vec::new();
    let mut rows = 0;
    while deliveries.len() < max_batches && rows < config.max_rows {
        let elapsed = began.elapsed();
        if !deliveries.is_empty() && elapsed >= config.wait * 4 {
            break;
        }
        let fetched = match queue
            .next(
                max_batches - deliveries.len(),
                config.wait.saturating_sub(elapsed).max(BRIEF_FETCH),
            )
            .await
        {
            Ok(fetched) => fetched,
            Err(e) if !deliveries.is_empty() => {
                metrics.queue_errors.inc();
                tracing::warn!(error = %e, "reading log batches failed; storing those that came");
                break;
            }
            Err(e) => return Err(e),
        };
        if fetched.is_empty() {
            break;
        }
        rows += fetched.iter().map(|d| d.batch.logs.len()).sum::<usize>();
        deliveries.extend(fetched);
    }
    Ok(deliveries)
}

/// Hands batches back unstored, for this or another ingester to take again at once.
async fn release(deliveries: &[LogDelivery]) {
    for delivery in deliveries {
        if let Err(e) = delivery.release().await {
            // It comes back after its acknowledgement deadline instead.
            tracing::debug!(batch = %delivery.batch.id, error = %e, "handing back a log batch failed");
        }
    }
}

/// Inserts `batches` until it succeeds, renewing the deliveries' leases meanwhile. `None` when
/// `shutdown` came while waiting to retry (an attempt under way is always finished).
async fn store_with_retries(
    store: &dyn AnalyticsStore,
    batches: &[LogBatch],
    deliveries: &[LogDelivery],
    config: &IngestConfig,
    metrics: &IngestMetrics,
    shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Option<Inserted> {
    let mut backoff = config.min_backoff;
    let mut leases = tokio::time::interval_at(
        tokio::time::Instant::now() + config.lease_refresh,
        config.lease_refresh,
    );
    leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let attempt = store.insert(batches);
        let mut attempt = std::pin::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break result,
                _ = leases.tick() => renew_leases(deliveries).await,
            }
        };
        match result {
            Ok(inserted) => return Some(inserted),
            Err(e) => {
                metrics.insert_errors.inc();
                tracing::warn!(error = %e, batches = batches.len(), retry_in = ?backoff, "storing log batches failed");
            }
        }
        let pause = tokio::time::sleep(backoff);
        let mut pause = std::pin::pin!(pause);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return None,
                _ = &mut pause => break,
                _ = leases.tick() => renew_leases(deliveries).await,
            }
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

async fn renew_leases(deliveries: &[LogDelivery]) {
    for delivery in deliveries {
        if let Err(e) = delivery.in_progress().await {
            // The worst case is a redelivery, which the store deduplicates.
            tracing::debug!(batch = %delivery.batch.id, error = %e, "renewing a log batch's lease failed");
        }
    }
}

/// The ingester's status listener: `GET /metrics` (Prometheus) and `GET /status`.
pub struct StatusServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl StatusServer {
    pub async fn start(
        listen: SocketAddr,
        metrics: Arc<IngestMetrics>,
    ) -> std::io::Result<StatusServer> {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let status_metrics = metrics.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            metrics.render(),
                        )
                    }
                }),
            )
            .route(
                "/status",
                get(move || {
                    let m = status_metrics.clone();
                    async move {
                        axum::Json(serde_json::json!({
                            "rows": m.rows.get(),
                            "batches": m.batches.get(),
                            "duplicate_batches": m.duplicate_batches.get(),
                            "insert_errors": m.insert_errors.get(),
                            "lag_batches": m.lag.get(),
                        }))
                    }
                }),
            );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the ingester's status listener stopped");
            }
        });
        Ok(StatusServer { addr, task })
    }

    pub fn shutdown(self) {
        self.task.abort();
    }
}
