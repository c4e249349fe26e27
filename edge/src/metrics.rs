//! Prometheus metrics of one edge, served at `GET /metrics` on the status listener: requests by
//! control plane, service, route and status; latency histograms (total and upstream); the
//! applied config version per control plane and how long applying snapshots takes, by phase; each
//! balanced target's health; request log shipping ([`LogMetrics`]). One registry per edge, so several edges in one process (tests, `tollgate dev`)
//! keep their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use fnv::FnvHashMap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tollgate_model::TargetHealth;
use uuid::Uuid;

use crate::router::CompiledRoute;
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
#[derive(Debug, Default, Clone)]
pub struct RequestLabels {
    pub control_plane: Option<Uuid>,
    pub service: Option<Uuid>,
    pub route: Option<Uuid>,
    /// The route that matched, once its service is known too: its [`RouteSeries`] hold the
    /// request's series.
    pub matched: Option<Arc<CompiledRoute>>,
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
#[derive(Clone)]
struct RequestSeries {
    requests: IntCounter,
    duration: Histogram,
    upstream: Histogram,
}

impl RequestSeries {
    /// Observes a request's durations (its count is the caller's).
    fn time(&self, total: Duration, upstream: Option<Duration>) {
        self.duration.observe(total.as_secs_f64());
        if let Some(upstream) = upstream {
            self.upstream.observe(upstream.as_secs_f64());
        }
    }
}

/// How many statuses a route keeps the series of.
const ROUTE_SERIES_SLOTS: usize = 4;

/// A compiled route's request series for the statuses it answers with, slotted by status (a
/// status whose slot another took is counted through [`EdgeMetrics`]' table). With thousands of
/// routes, a request's series in the table of every route's series, and its counter in the
/// Prometheus registry's memory, each cost a cache miss; here the series sits next to memory the
/// request has just read, and requests are counted in the slot and added to the Prometheus
/// counter when metrics are rendered and when the route is dropped (after its last request, when
/// a newer snapshot replaced it). A new snapshot's routes start empty and find the same series
/// again.
#[derive(Default)]
pub struct RouteSeries {
    slots: [RouteSlot; ROUTE_SERIES_SLOTS],
}

#[derive(Default)]
struct RouteSlot {
    series: OnceLock<(u16, RequestSeries)>,
    /// Requests counted here and not yet in `series`' counter.
    pending: AtomicU64,
}

impl RouteSeries {
    /// Adds the requests counted in the slots to their Prometheus counters.
    pub fn fold(&self) {
        for slot in &self.slots {
            if let Some((_, series)) = slot.series.get() {
                let pending = slot.pending.swap(0, Ordering::Relaxed);
                if pending > 0 {
                    series.requests.inc_by(pending);
                }
            }
        }
    }
}

impl Drop for RouteSeries {
    fn drop(&mut self) {
        self.fold();
    }
}

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses: Vec<u16> = self
            .slots
            .iter()
            .filter_map(|slot| Some(slot.series.get()?.0))
            .collect();
        f.debug_struct("RouteSeries")
            .field("statuses", &statuses)
            .finish()
    }
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
        let code = status.as_u16();
        if let Some(route) = &labels.matched {
            let slot = &route.series.slots[usize::from(code) % ROUTE_SERIES_SLOTS];
            let (slotted, series) = slot
                .series
                .get_or_init(|| (code, self.with_series(labels, status, RequestSeries::clone)));
            if *slotted == code {
                slot.pending.fetch_add(1, Ordering::Relaxed);
                return series.time(total, labels.upstream);
            }
        }
        self.with_series(labels, status, |series| {
            series.requests.inc();
            series.time(total, labels.upstream);
        });
    }

    /// Applies `apply` to the series of `labels` and `status` in the table, added the first
    /// time.
    fn with_series<R>(
        &self,
        labels: &RequestLabels,
        status: http::StatusCode,
        apply: impl FnOnce(&RequestSeries) -> R,
    ) -> R {
        let key = (
            (labels.control_plane, labels.service, labels.route),
            status.as_u16(),
        );
        if let Some(series) = read(&self.request_series).get(&key) {
            return apply(series);
        }
        let by_control_plane = |histograms: &HistogramVec| {
            let mut buffer = [0u8; 36];
            histograms.with_label_values(&[label(labels.control_plane, &mut buffer)])
        };
        let series = RequestSeries {
            requests: self.request_counter(labels, status),
            duration: by_control_plane(&self.duration),
            upstream: by_control_plane(&self.upstream),
        };
        let applied = apply(&series);
        write(&self.request_series).insert(key, series);
        applied
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
        for cp in served.control_planes() {
            for route in cp.router.routes() {
                route.series.fold();
            }
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use http::StatusCode;
    use serde_json::json;
    use tollgate_model::entity::{build, Build};
    use tollgate_model::{Entities, Route, Service, Snapshot};

    use super::*;
    use crate::balancer::targets::TargetRegistry;
    use crate::served::{LoadedControlPlane, ServedConfig};

    /// The counter `tollgate_edge_requests_total` of `route` and `status` in `text`.
    fn requests(text: &str, route: Uuid, status: u16) -> Option<u64> {
        let route = format!("route=\"{route}\"");
        let status = format!("status=\"{status}\"");
        text.lines()
            .filter(|line| line.starts_with("tollgate_edge_requests_total{"))
            .find(|line| line.contains(&route) && line.contains(&status))
            .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
    }

    /// Requests counted in a route's slots reach `/metrics` when it is rendered while the route
    /// is served, and when the route is dropped after a swap; statuses sharing a slot, and more
    /// statuses than slots, are counted apart and exactly.
    #[test]
    fn route_slots_count_every_request_exactly_once() {
        let service: Service = build(
            Build::Create { id: Uuid::now_v7() },
            &json!({"url": "http://127.0.0.1:9"}),
            1,
        )
        .unwrap();
        let route: Route = build(
            Build::Create { id: Uuid::now_v7() },
            &json!({"paths": ["/"], "service": {"id": service.id}}),
            1,
        )
        .unwrap();
        let control_plane = Uuid::now_v7();
        let snapshot = Snapshot::of(
            control_plane,
            Uuid::nil(),
            1,
            vec![],
            Entities {
                services: vec![service.clone()],
                routes: vec![route.clone()],
                ..Entities::default()
            },
        );
        let loaded = Arc::new(LoadedControlPlane::compile(
            &snapshot,
            None,
            &TargetRegistry::default(),
        ));
        let metrics = EdgeMetrics::new();
        let served = ServedConfig::of(None, [loaded.clone()]);
        let compiled = loaded.router.routes().next().unwrap().clone();
        let labels = RequestLabels {
            control_plane: Some(control_plane),
            service: Some(service.id),
            route: Some(route.id),
            matched: Some(compiled),
            upstream: Some(Duration::from_millis(1)),
        };
        // 200 and 204 share a slot (4 slots, by status); 200, 201, 502 and 503 fill all four.
        let answered = [200, 200, 204, 201, 502, 503, 200, 404, 204];
        for status in answered {
            let status = StatusCode::from_u16(status).unwrap();
            metrics.observe(&labels, status, Duration::from_millis(2));
        }
        let text = metrics.render(&served);
        for (status, count) in [(200, 3), (204, 2), (201, 1), (502, 1), (503, 1), (404, 1)] {
            assert_eq!(requests(&text, route.id, status), Some(count), "{status}");
        }
        // Rendering twice adds nothing.
        let text = metrics.render(&served);
        assert_eq!(requests(&text, route.id, 200), Some(3));

        // Counted after the last render, then the route is replaced and dropped: still counted.
        metrics.observe(&labels, StatusCode::OK, Duration::from_millis(2));
        metrics.observe(&labels, StatusCode::OK, Duration::from_millis(2));
        drop(labels);
        drop(served);
        drop(loaded);
        let text = metrics.render(&ServedConfig::default());
        assert_eq!(requests(&text, route.id, 200), Some(5));
        assert!(text.contains("tollgate_edge_request_duration_seconds_count"));
    }
}
