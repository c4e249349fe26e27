//! Prometheus metrics of one edge, served at `GET /metrics` on the status listener: requests by
//! control plane, service, route and status; latency histograms (total and upstream); the
//! applied config version per control plane and how long applying snapshots takes, by phase; each
//! balanced target's health; request log shipping ([`LogMetrics`]). One registry per edge, so several edges in one process (tests, `tollgate dev`)
//! keep their own.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use fnv::FnvHashMap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tollgate_model::TargetHealth;
use uuid::Uuid;

use crate::served::ServedConfig;
use crate::state::{ApplyPhase, ApplyReport};

/// Kong's `kong_upstream_target_health` states, as label values.
const HEALTH_STATES: [(TargetHealth, &str); 4] = [
    (TargetHealth::Healthy, "healthy"),
    (TargetHealth::Unhealthy, "unhealthy"),
    (TargetHealth::HealthchecksOff, "healthchecks_off"),
    (TargetHealth::DnsError, "dns_error"),
];

/// Seconds; from sub-millisecond proxying to slow upstreams.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Seconds; a snapshot applies in well under a millisecond when small, in tens when it holds
/// thousands of routes.
const APPLY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Applies `apply` to the series `key` names in `cache`, resolving it first if needed.
fn with_series<K, M>(
    cache: &RwLock<FnvHashMap<K, M>>,
    key: K,
    resolve: impl FnOnce() -> M,
    apply: impl FnOnce(&M),
) where
    K: Eq + std::hash::Hash,
{
    if let Some(series) = read(cache).get(&key) {
        apply(series);
        return;
    }
    let series = resolve();
    apply(&series);
    write(cache).insert(key, series);
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// An id as a label value, written into `buf`; `none` when the request never got that far.
fn label(id: Option<Uuid>, buf: &mut [u8; 36]) -> &str {
    match id {
        Some(id) => id.hyphenated().encode_lower(buf),
        None => "none",
    }
}

/// The ids a request's counter is labelled with: control plane, service, route.
type RequestLabelIds = (Option<Uuid>, Option<Uuid>, Option<Uuid>);

/// What a request turned out to be, filled in as the proxy learns it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestLabels {
    pub control_plane: Option<Uuid>,
    pub service: Option<Uuid>,
    pub route: Option<Uuid>,
    /// From sending the attempt that got the answer to the upstream's response head.
    pub upstream: Option<Duration>,
}

pub struct EdgeMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream: HistogramVec,
    /// The series a request is counted in, by ids and status: a request hashes those once
    /// instead of having prometheus format and hash label strings under its lock. They hold what
    /// the vectors hold (series are never removed), so they grow no further than those.
    request_series: RwLock<FnvHashMap<(RequestLabelIds, u16), RequestSeries>>,
    config_version: IntGaugeVec,
    /// By phase, as [`ApplyPhase::as_str`] names them.
    config_apply: HistogramVec,
    target_health: IntGaugeVec,
    pub logs: LogMetrics,
}

/// One kind of request's counter, and its control plane's duration histograms.
struct RequestSeries {
    requests: IntCounter,
    duration: Histogram,
    upstream: Histogram,
}

/// How request log shipping is doing. Clones share the same counters.
#[derive(Clone)]
pub struct LogMetrics {
    /// Log lines the bus accepted (published directly or replayed from the spool).
    pub shipped: IntCounter,
    pub batches_published: IntCounter,
    /// Publish attempts that failed or timed out (the batch went to, or stayed in, the spool).
    pub publish_failures: IntCounter,
    pub spool_bytes: IntGauge,
    pub spool_batches: IntGauge,
    /// Requests whose Host selected no control plane: no tenant, so no log line.
    pub unattributed: IntCounter,
    pub dropped_queue_full: IntCounter,
    pub dropped_spool_full: IntCounter,
    /// A spool file that cannot be written, or read back as a batch.
    pub dropped_spool_error: IntCounter,
    /// Logs finished after the shipper stopped (a response still streaming at shutdown).
    pub dropped_shutdown: IntCounter,
}

impl LogMetrics {
    fn new(registry: &Registry) -> LogMetrics {
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(counter.clone()))
                .expect("metric names are unique in a fresh registry");
            counter
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(gauge.clone()))
                .expect("metric names are unique in a fresh registry");
            gauge
        };
        let dropped = IntCounterVec::new(
            Opts::new(
                "tollgate_request_logs_dropped_total",
                "Request log lines lost, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(dropped.clone()))
            .expect("metric names are unique in a fresh registry");
        LogMetrics {
            shipped: counter(
                "tollgate_request_logs_shipped_total",
                "Request log lines the bus accepted.",
            ),
            batches_published: counter(
                "tollgate_request_log_batches_published_total",
                "Request log batches the bus accepted, replayed ones included.",
            ),
            publish_failures: counter(
                "tollgate_request_log_publish_failures_total",
                "Publishes of a request log batch that failed or timed out.",
            ),
            spool_bytes: gauge(
                "tollgate_request_log_spool_bytes",
                "Bytes of request log batches waiting in the spool.",
            ),
            spool_batches: gauge(
                "tollgate_request_log_spool_batches",
                "Request log batches waiting in the spool.",
            ),
            unattributed: counter(
                "tollgate_request_logs_unattributed_total",
                "Requests not logged because their Host selected no control plane.",
            ),
            // Resolved once: the request path only bumps an atomic.
            dropped_queue_full: dropped.with_label_values(&["queue_full"]),
            dropped_spool_full: dropped.with_label_values(&["spool_full"]),
            dropped_spool_error: dropped.with_label_values(&["spool_error"]),
            dropped_shutdown: dropped.with_label_values(&["shutdown"]),
        }
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EdgeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_edge_requests_total",
                "Requests answered by the edge.",
            ),
            &["control_plane", "service", "route", "status"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_edge_request_duration_seconds",
                "Time from receiving a request to sending the response head.",
            )
            .buckets(BUCKETS.to_vec()),
            &["control_plane"],
        )
        .expect("static metric definition");
        let upstream = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_edge_upstream_duration_seconds",
                "Time from sending a request upstream to its response head.",
            )
            .buckets(BUCKETS.to_vec()),
            &["control_plane"],
        )
        .expect("static metric definition");
        let config_version = IntGaugeVec::new(
            Opts::new(
                "tollgate_edge_config_version",
                "The config version applied, per control plane.",
            ),
            &["control_plane"],
        )
        .expect("static metric definition");
        let config_apply = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_edge_config_apply_seconds",
                "Time to apply a snapshot from the bus, by phase: fetch, decode, verify, compile, swap, and total from taking its head off the watch to the swap.",
            )
            .buckets(APPLY_BUCKETS.to_vec()),
            &["phase"],
        )
        .expect("static metric definition");
        let target_health = IntGaugeVec::new(
            Opts::new(
                "tollgate_upstream_target_health",
                "1 for the state each balanced target is in, 0 for the others.",
            ),
            &["control_plane", "upstream", "target", "state"],
        )
        .expect("static metric definition");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(upstream.clone()),
            Box::new(config_version.clone()),
            Box::new(config_apply.clone()),
            Box::new(target_health.clone()),
        ] {
            registry
                .register(metric)
                .expect("metric names are unique in a fresh registry");
        }
        let logs = LogMetrics::new(&registry);
        EdgeMetrics {
            logs,
            registry,
            requests,
            duration,
            upstream,
            request_series: RwLock::default(),
            config_version,
            config_apply,
            target_health,
        }
    }

    /// Counts one applied snapshot in the apply-time histograms.
    pub fn observe_apply(&self, report: &ApplyReport) {
        for phase in ApplyPhase::ALL {
            self.config_apply
                .with_label_values(&[phase.as_str()])
                .observe(report.get(phase).as_secs_f64());
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, labels: &RequestLabels, status: http::StatusCode, total: Duration) {
        let ids = (labels.control_plane, labels.service, labels.route);
        let by_control_plane = |histograms: &HistogramVec| {
            let mut buffer = [0u8; 36];
            histograms.with_label_values(&[label(labels.control_plane, &mut buffer)])
        };
        with_series(
            &self.request_series,
            (ids, status.as_u16()),
            || RequestSeries {
                requests: self.request_counter(labels, status),
                duration: by_control_plane(&self.duration),
                upstream: by_control_plane(&self.upstream),
            },
            |series| {
                series.requests.inc();
                series.duration.observe(total.as_secs_f64());
                if let Some(upstream) = labels.upstream {
                    series.upstream.observe(upstream.as_secs_f64());
                }
            },
        );
    }

    /// The requests counter of `labels` and `status`, looked up by its label values.
    fn request_counter(&self, labels: &RequestLabels, status: http::StatusCode) -> IntCounter {
        // Ids are written into stack buffers: no allocation.
        let mut buffers = [[0u8; 36]; 3];
        let [cp_buf, service_buf, route_buf] = &mut buffers;
        let cp = label(labels.control_plane, cp_buf);
        let service = label(labels.service, service_buf);
        let route = label(labels.route, route_buf);
        self.requests
            .with_label_values(&[cp, service, route, status.as_str()])
    }

    /// The text exposition format, with the config versions and target health of `served` as
    /// they are now.
    pub fn render(&self, served: &ServedConfig) -> String {
        self.config_version.reset();
        for applied in served.applied() {
            self.config_version
                .with_label_values(&[&applied.control_plane_id.to_string()])
                .set(applied.version);
        }
        // Rebuilt at each scrape, so removed targets and upstreams disappear.
        self.target_health.reset();
        for cp in served.control_planes() {
            let cp_label = cp.id.to_string();
            for balancer in cp.balancers.values() {
                for (index, target) in balancer.targets().iter().enumerate() {
                    let health = balancer.health(index);
                    for (state, name) in HEALTH_STATES {
                        self.target_health
                            .with_label_values(&[&cp_label, balancer.name(), &target.name, name])
                            .set(i64::from(state == health));
                    }
                }
            }
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
