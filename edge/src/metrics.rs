//! Prometheus metrics of one edge, served at `GET /metrics` on the status listener: requests by
//! control plane, service, route and status; latency histograms (total and upstream); the
//! applied config version per control plane; each balanced target's health. One registry per edge, so several edges in one
//! process (tests, `tollgate dev`) keep their own.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tollgate_model::TargetHealth;
use uuid::Uuid;

use crate::served::ServedConfig;

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

/// An id as a label value, written into `buf`; `none` when the request never got that far.
fn label(id: Option<Uuid>, buf: &mut [u8; 36]) -> &str {
    match id {
        Some(id) => id.hyphenated().encode_lower(buf),
        None => "none",
    }
}

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
    config_version: IntGaugeVec,
    target_health: IntGaugeVec,
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
            Box::new(target_health.clone()),
        ] {
            registry
                .register(metric)
                .expect("metric names are unique in a fresh registry");
        }
        EdgeMetrics {
            registry,
            requests,
            duration,
            upstream,
            config_version,
            target_health,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, labels: &RequestLabels, status: http::StatusCode, total: Duration) {
        // Ids are written into stack buffers: no allocation per request.
        let mut buffers = [[0u8; 36]; 3];
        let [cp_buf, service_buf, route_buf] = &mut buffers;
        let cp = label(labels.control_plane, cp_buf);
        let service = label(labels.service, service_buf);
        let route = label(labels.route, route_buf);
        self.requests
            .with_label_values(&[cp, service, route, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[cp])
            .observe(total.as_secs_f64());
        if let Some(upstream) = labels.upstream {
            self.upstream
                .with_label_values(&[cp])
                .observe(upstream.as_secs_f64());
        }
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
