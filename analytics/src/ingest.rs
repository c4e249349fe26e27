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
use tollgate_bus::{LogDelivery, LogQueue};
use tollgate_model::request_log::LogBatch;

use crate::{AnalyticsStore, Inserted};

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Most batches taken from the queue for one insert.
    pub max_batches: usize,
    /// How long to wait for batches before storing what came (the latency floor of a quiet
    /// stream is this, not more).
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
            max_batches: 500,
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
/// it does is finished and acknowledged first; batches waiting out a store outage are left
/// unacknowledged for the bus to deliver again.
pub async fn run(
    mut queue: Box<dyn LogQueue>,
    store: Arc<dyn AnalyticsStore>,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> IngestSummary {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut summary = IngestSummary::default();
    let mut queue_backoff = config.min_backoff;
    let mut lag_read = Instant::now() - config.lag_interval;
    loop {
        if lag_read.elapsed() >= config.lag_interval {
            lag_read = Instant::now();
            if let Ok(pending) = queue.pending().await {
                metrics.lag.set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        let next = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            next = queue.next(config.max_batches, config.wait) => next,
        };
        let mut deliveries = match next {
            Ok(deliveries) => {
                queue_backoff = config.min_backoff;
                deliveries
            }
            Err(e) => {
                metrics.queue_errors.inc();
                tracing::warn!(error = %e, retry_in = ?queue_backoff, "reading log batches failed");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(queue_backoff) => {}
                }
                queue_backoff = (queue_backoff * 2).min(config.max_backoff);
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
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
            return summary;
        };
        for delivery in &deliveries {
            if let Err(e) = delivery.ack().await {
                // Stored already: the bus delivers it again and the store skips it.
                metrics.ack_errors.inc();
                tracing::warn!(batch = %delivery.batch.id, error = %e, "acknowledging a stored log batch failed");
            }
        }
        let stored_batches = batches.len() as u64 - inserted.duplicate_batches;
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
    summary
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
