//! What the proxy, the status server, the config sync and the heartbeat share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    ready: AtomicBool,
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
            ready: AtomicBool::new(ready),
        }
    }

    /// Installs a new set of control planes; requests already running keep the old one.
    pub fn swap(&self, served: ServedConfig) {
        if !served.is_empty() {
            self.ready.store(true, Ordering::Release);
        }
        self.served.store(Arc::new(served));
        self.config_changed.notify_one();
    }

    /// True once any snapshot has been loaded; it stays true (an edge whose last control plane
    /// was deleted still answers correctly, with 404s).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
