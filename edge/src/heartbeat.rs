//! Tells the control plane what this node runs and how it sees each balanced target's health: a
//! heartbeat every interval and right after each config change. A failed publish is retried on
//! the next beat.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tollgate_bus::Bus;
use tollgate_model::Heartbeat;

use crate::shutdown::wait_for_shutdown;
use crate::state::EdgeState;

pub async fn run(
    bus: Arc<dyn Bus>,
    state: Arc<EdgeState>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = state.config_changed.notified() => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
        let heartbeat = Heartbeat {
            node_id: state.node_id,
            hostname: hostname.clone(),
            binary_version: state.binary_version.clone(),
            region: state.region.clone(),
            sent_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            control_planes: state.served.load().applied(),
            target_health: state.served.load().target_health(),
        };
        match bus.publish_heartbeat(&heartbeat).await {
            Ok(()) => tracing::trace!("heartbeat sent"),
            Err(e) => tracing::debug!(error = %e, "heartbeat not sent"),
        }
    }
}
