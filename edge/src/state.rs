//! What the proxy, the status server, the config sync and the heartbeat share.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::balancer::targets::TargetRegistry;
use crate::metrics::EdgeMetrics;
use crate::served::ServedConfig;

pub struct EdgeState {
    pub node_id: Uuid,
    pub region: String,
    pub binary_version: String,
    /// Swapped whole by the config sync, its only writer.
    pub served: ArcSwap<ServedConfig>,
    /// Woken after each applied or removed snapshot, so a heartbeat reports it at once.
    pub config_changed: Notify,
    pub metrics: EdgeMetrics,
    /// Balanced targets' health, in-flight counts and latency, kept across swaps.
    pub targets: Arc<TargetRegistry>,
    /// How the latest apply of each control plane went, step by step, for `/status`.
    applies: Mutex<BTreeMap<Uuid, ApplyReport>>,
    ready: AtomicBool,
}

/// The steps of applying a snapshot from the bus, in order; `Total` runs from taking its head
/// off the watch to the swap, waits between the steps included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyPhase {
    /// Reading the body from the bus.
    Fetch,
    /// Unpacking and parsing it.
    Decode,
    /// Checking its hash.
    Verify,
    /// Building routers, balancers and certificates.
    Compile,
    /// Installing it for new requests.
    Swap,
    Total,
}

impl ApplyPhase {
    pub const ALL: [ApplyPhase; 6] = [
        ApplyPhase::Fetch,
        ApplyPhase::Decode,
        ApplyPhase::Verify,
        ApplyPhase::Compile,
        ApplyPhase::Swap,
        ApplyPhase::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyPhase::Fetch => "fetch",
            ApplyPhase::Decode => "decode",
            ApplyPhase::Verify => "verify",
            ApplyPhase::Compile => "compile",
            ApplyPhase::Swap => "swap",
            ApplyPhase::Total => "total",
        }
    }
}

/// How applying one snapshot went.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyReport {
    pub control_plane_id: Uuid,
    pub version: i64,
    /// Indexed like [`ApplyPhase::ALL`].
    pub phases: [Duration; 6],
}

impl ApplyReport {
    pub fn new(control_plane_id: Uuid, version: i64) -> ApplyReport {
        ApplyReport {
            control_plane_id,
            version,
            phases: [Duration::ZERO; 6],
        }
    }

    pub fn set(&mut self, phase: ApplyPhase, took: Duration) {
        self.phases[phase as usize] = took;
    }

    pub fn get(&self, phase: ApplyPhase) -> Duration {
        self.phases[phase as usize]
    }

    /// `{"control_plane_id", "version", "seconds": {"fetch": …, …}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let seconds: serde_json::Map<String, serde_json::Value> = ApplyPhase::ALL
            .iter()
            .map(|&phase| {
                (
                    phase.as_str().to_string(),
                    self.get(phase).as_secs_f64().into(),
                )
            })
            .collect();
        serde_json::json!({
            "control_plane_id": self.control_plane_id,
            "version": self.version,
            "seconds": seconds,
        })
    }
}

impl EdgeState {
    pub fn new(
        node_id: Uuid,
        region: String,
        binary_version: String,
        served: ServedConfig,
        targets: Arc<TargetRegistry>,
    ) -> Self {
        let ready = !served.is_empty();
        EdgeState {
            node_id,
            region,
            binary_version,
            served: ArcSwap::from_pointee(served),
            config_changed: Notify::new(),
            metrics: EdgeMetrics::new(),
            targets,
            applies: Mutex::new(BTreeMap::new()),
            ready: AtomicBool::new(ready),
        }
    }

    /// Installs a new set of control planes; requests already running keep the old one. Returns
    /// the one replaced, for the caller to drop where freeing it delays no request.
    pub fn swap(&self, served: ServedConfig) -> Arc<ServedConfig> {
        if !served.is_empty() {
            self.ready.store(true, Ordering::Release);
        }
        let replaced = self.served.swap(Arc::new(served));
        self.config_changed.notify_one();
        replaced
    }

    /// True once any snapshot has been loaded; it stays true (an edge whose last control plane
    /// was deleted still answers correctly, with 404s).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records how an apply went: in the metrics, and as the control plane's latest for
    /// `/status`.
    pub fn record_apply(&self, report: ApplyReport) {
        self.metrics.observe_apply(&report);
        self.applies_mut().insert(report.control_plane_id, report);
    }

    /// Forgets the apply report of a removed control plane.
    pub fn forget_apply(&self, control_plane_id: Uuid) {
        self.applies_mut().remove(&control_plane_id);
    }

    /// The latest apply of each control plane, by id.
    pub fn applies(&self) -> Vec<ApplyReport> {
        self.applies_mut().values().cloned().collect()
    }

    fn applies_mut(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, ApplyReport>> {
        // Single inserts and removes: a panic while holding the lock leaves the map consistent.
        self.applies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
