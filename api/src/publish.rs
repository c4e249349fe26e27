//! Publishing committed config to the bus. Writes only notify; a background task publishes the
//! latest stored snapshot of each notified control plane, retries while the bus is down, and
//! reconciles every head with the database at start and periodically, so a version committed
//! while NATS was unreachable still reaches the edges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::{mpsc, watch};
use tollgate_bus::Bus;
use tollgate_model::Snapshot;
use uuid::Uuid;

use crate::store::{config_versions, control_planes};

const RECONCILE_EVERY: Duration = Duration::from_secs(30);
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Publisher {
    jobs: mpsc::UnboundedSender<Uuid>,
}

impl Publisher {
    /// Asks for the control plane's latest config (or its removal) to be published.
    pub fn notify(&self, control_plane_id: Uuid) {
        // The receiver lives as long as the server; after shutdown there is nothing to tell.
        let _ = self.jobs.send(control_plane_id);
    }

    /// Starts the publishing task; it stops when `shutdown` turns true.
    pub fn spawn(
        db: DatabaseConnection,
        bus: Arc<dyn Bus>,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Publisher, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Uuid>();
        let task = tokio::spawn(async move {
            // Control planes whose publication failed, with when to try again and the backoff.
            let mut pending: HashMap<Uuid, (tokio::time::Instant, Duration)> = HashMap::new();
            let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
            let mut retry = tokio::time::interval(RETRY_FIRST);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    Some(id) = rx.recv() => {
                        let mut ids = vec![id];
                        while let Ok(more) = rx.try_recv() {
                            ids.push(more);
                        }
                        ids.sort();
                        ids.dedup();
                        for id in ids {
                            publish_or_queue(&db, bus.as_ref(), id, &mut pending).await;
                        }
                    }
                    _ = reconcile.tick() => {
                        if let Err(e) = reconcile_all(&db, bus.as_ref()).await {
                            tracing::warn!(error = %e, "config reconcile failed; will retry");
                        }
                    }
                    _ = retry.tick(), if !pending.is_empty() => {
                        let now = tokio::time::Instant::now();
                        let due: Vec<Uuid> = pending
                            .iter()
                            .filter(|(_, (at, _))| *at <= now)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in due {
                            publish_or_queue(&db, bus.as_ref(), id, &mut pending).await;
                        }
                    }
                }
            }
        });
        (Publisher { jobs: tx }, task)
    }
}

async fn publish_or_queue(
    db: &DatabaseConnection,
    bus: &dyn Bus,
    id: Uuid,
    pending: &mut HashMap<Uuid, (tokio::time::Instant, Duration)>,
) {
    match publish_latest(db, bus, id).await {
        Ok(()) => {
            pending.remove(&id);
        }
        Err(e) => {
            let backoff = pending
                .get(&id)
                .map_or(RETRY_FIRST, |(_, b)| (*b * 2).min(RETRY_MAX));
            tracing::warn!(control_plane = %id, error = %e, retry_in = ?backoff, "publishing config failed");
            pending.insert(id, (tokio::time::Instant::now() + backoff, backoff));
        }
    }
}

/// Publishes the newest stored version of `id`, or retires it from the bus if it was deleted.
async fn publish_latest(db: &DatabaseConnection, bus: &dyn Bus, id: Uuid) -> Result<(), String> {
    let cp = control_planes::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(|e| e.to_string())?;
    let Some(cp) = cp else {
        for head in bus.heads().await.map_err(|e| e.to_string())? {
            if head.control_plane_id == id {
                bus.remove_control_plane(&head.region, id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        return Ok(());
    };
    let latest = config_versions::Entity::find()
        .filter(config_versions::Column::ControlPlaneId.eq(id))
        .order_by_desc(config_versions::Column::Version)
        .one(db)
        .await
        .map_err(|e| e.to_string())?;
    let Some(latest) = latest else {
        return Ok(());
    };
    let snapshot: Snapshot = serde_json::from_value(latest.snapshot)
        .map_err(|e| format!("stored snapshot of {id} v{}: {e}", latest.version))?;
    bus.publish_snapshot(&cp.region, &snapshot)
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(control_plane = %id, version = snapshot.version, "published config");
    Ok(())
}

/// Brings every head on the bus in line with the database.
async fn reconcile_all(db: &DatabaseConnection, bus: &dyn Bus) -> Result<(), String> {
    let heads = bus.heads().await.map_err(|e| e.to_string())?;
    let published: HashMap<Uuid, i64> = heads
        .iter()
        .map(|h| (h.control_plane_id, h.version))
        .collect();
    let planes = control_planes::Entity::find()
        .all(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut known = std::collections::HashSet::new();
    for cp in planes {
        known.insert(cp.id);
        if published.get(&cp.id).is_none_or(|v| *v < cp.config_version) {
            publish_latest(db, bus, cp.id).await?;
        }
    }
    for head in heads {
        if !known.contains(&head.control_plane_id) {
            bus.remove_control_plane(&head.region, head.control_plane_id)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
