//! Edge nodes as their heartbeats report them: recorded per control plane they serve (with the
//! health they see for its targets), listed with their applied config and a status derived from it.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tollgate_bus::Bus;
use tollgate_model::{Heartbeat, TargetHealth};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::find_control_plane;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{control_planes, nodes};

/// A node not heard from for this long is shown offline.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(60);

/// At most this many target health reports are kept per node and control plane, so one node
/// cannot grow a row without bound.
const MAX_TARGET_REPORTS: usize = 10_000;

/// One target's health as one node reported it, as kept in `nodes.target_health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTargetHealth {
    pub upstream_id: Uuid,
    /// `host:port` as configured.
    pub target: String,
    pub health: TargetHealth,
}

/// Whether a node last seen at `last_seen` counts as online now.
pub fn is_online(last_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - last_seen <= chrono::Duration::from_std(OFFLINE_AFTER).unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: Uuid,
    pub hostname: String,
    pub binary_version: String,
    pub region: String,
    pub config_version: i64,
    pub config_hash: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// `up to date`, `out of date` (behind the latest version) or `offline`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub data: Vec<NodeView>,
}

/// Edge nodes serving this control plane.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/nodes", tag = "nodes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    responses((status = 200, body = NodeList), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(cp): Path<String>,
) -> ApiResult<Json<NodeList>> {
    let cp = find_control_plane(&state.db, auth.organization_id, &cp).await?;
    Ok(Json(NodeList {
        data: node_views(&state.db, &cp).await?,
    }))
}

/// The nodes of a control plane with their status, most recently seen first.
pub async fn node_views(
    db: &DatabaseConnection,
    cp: &control_planes::Model,
) -> ApiResult<Vec<NodeView>> {
    let rows = nodes::Entity::find()
        .filter(nodes::Column::ControlPlaneId.eq(cp.id))
        .order_by_desc(nodes::Column::LastSeen)
        .all(db)
        .await?;
    let now = Utc::now();
    let data = rows
        .into_iter()
        .map(|n| {
            let status = if !is_online(n.last_seen, now) {
                "offline"
            } else if n.config_version < cp.config_version {
                "out of date"
            } else {
                "up to date"
            };
            NodeView {
                id: n.node_id,
                hostname: n.hostname,
                binary_version: n.binary_version,
                region: n.region,
                config_version: n.config_version,
                config_hash: n.config_hash,
                first_seen: n.first_seen,
                last_seen: n.last_seen,
                status: status.into(),
            }
        })
        .collect();
    Ok(data)
}

/// Records heartbeats until shutdown, resubscribing while the bus is down.
pub async fn record_heartbeats(
    db: DatabaseConnection,
    bus: std::sync::Arc<dyn Bus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut stream = tokio::select! {
            _ = shutdown.changed() => return,
            subscribed = bus.heartbeats() => match subscribed {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to heartbeats; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let heartbeat = tokio::select! {
                _ = shutdown.changed() => return,
                next = stream.next() => match next {
                    Some(hb) => hb,
                    None => break,
                }
            };
            if let Err(e) = record(&db, &heartbeat).await {
                tracing::warn!(node = %heartbeat.node_id, error = %e, "recording heartbeat failed");
            }
        }
    }
}

async fn record(db: &DatabaseConnection, hb: &Heartbeat) -> Result<(), sea_orm::DbErr> {
    let seen = Utc
        .timestamp_opt(hb.sent_at, 0)
        .single()
        .unwrap_or_else(Utc::now)
        .min(Utc::now());
    for applied in &hb.control_planes {
        // Only control planes that exist: a node cannot plant rows for arbitrary ids.
        let Some(cp) = control_planes::Entity::find_by_id(applied.control_plane_id)
            .one(db)
            .await?
        else {
            continue;
        };
        let reports: Vec<StoredTargetHealth> = hb
            .target_health
            .iter()
            .filter(|r| r.control_plane_id == cp.id)
            .take(MAX_TARGET_REPORTS)
            .map(|r| StoredTargetHealth {
                upstream_id: r.upstream_id,
                target: truncate(&r.target, 255),
                health: r.health,
            })
            .collect();
        let target_health = serde_json::to_value(reports).unwrap_or_default();
        let row = nodes::ActiveModel {
            node_id: Set(hb.node_id),
            control_plane_id: Set(cp.id),
            organization_id: Set(cp.organization_id),
            hostname: Set(truncate(&hb.hostname, 255)),
            binary_version: Set(truncate(&hb.binary_version, 64)),
            region: Set(truncate(&hb.region, 63)),
            config_version: Set(applied.version),
            config_hash: Set(truncate(&applied.hash, 100)),
            first_seen: Set(seen),
            last_seen: Set(seen),
            target_health: Set(Some(target_health)),
        };
        nodes::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([nodes::Column::NodeId, nodes::Column::ControlPlaneId])
                    .update_columns([
                        nodes::Column::Hostname,
                        nodes::Column::BinaryVersion,
                        nodes::Column::Region,
                        nodes::Column::ConfigVersion,
                        nodes::Column::ConfigHash,
                        nodes::Column::LastSeen,
                        nodes::Column::TargetHealth,
                    ])
                    .to_owned(),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}
