//! `/upstreams/{u}/health`: the health of an upstream's targets as the online edge nodes report
//! it in their heartbeats, per node and aggregated by one documented rule.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use tollgate_model::entity::Entity;
use tollgate_model::{ForeignKey, Target, TargetHealth, Upstream};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{decode, find_item, CpItemPath};
use crate::auth::Auth;
use crate::config::find_control_plane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::nodes::{is_online, StoredTargetHealth};
use crate::state::AppState;
use crate::store::{entities, nodes};

/// A target's health across the online nodes that report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AggregateHealth {
    Healthy,
    Unhealthy,
    HealthchecksOff,
    DnsError,
    /// No online node reports this target (yet).
    Unknown,
}

/// The rule: no report → `UNKNOWN`; any `UNHEALTHY` → `UNHEALTHY`; else any `DNS_ERROR` →
/// `DNS_ERROR`; every report `HEALTHCHECKS_OFF` → `HEALTHCHECKS_OFF`; otherwise (every report
/// `HEALTHY`, or `HEALTHY` beside `HEALTHCHECKS_OFF` from nodes still on an older config) →
/// `HEALTHY`. One node's bad view wins because that node is failing traffic to the target.
pub fn aggregate(reports: &[TargetHealth]) -> AggregateHealth {
    if reports.is_empty() {
        AggregateHealth::Unknown
    } else if reports.contains(&TargetHealth::Unhealthy) {
        AggregateHealth::Unhealthy
    } else if reports.contains(&TargetHealth::DnsError) {
        AggregateHealth::DnsError
    } else if reports.iter().all(|h| *h == TargetHealth::HealthchecksOff) {
        AggregateHealth::HealthchecksOff
    } else {
        AggregateHealth::Healthy
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeTargetHealth {
    pub node_id: Uuid,
    pub hostname: String,
    pub health: TargetHealth,
    /// When the node's last heartbeat was sent.
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TargetHealthView {
    pub id: Uuid,
    pub target: String,
    pub weight: i64,
    pub upstream: ForeignKey,
    pub tags: Vec<String>,
    /// Across the online nodes that report this target; see `nodes`.
    pub health: AggregateHealth,
    /// What each online node reports, by hostname.
    pub nodes: Vec<NodeTargetHealth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamHealth {
    pub data: Vec<TargetHealthView>,
    /// The number of targets.
    pub total: usize,
    /// Online nodes serving this control plane.
    pub node_count: usize,
}

/// The health of an upstream's targets, as the online edge nodes report it in their heartbeats.
///
/// A target's `health` is `UNKNOWN` while no online node reports it, `UNHEALTHY` if any online
/// node reports it unhealthy, else `DNS_ERROR` if any reports that, `HEALTHCHECKS_OFF` if every
/// report says so, and `HEALTHY` otherwise. Nodes not heard from for 60 s are left out.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/health", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    responses((status = 200, body = UpstreamHealth), (status = 404, body = ErrorBody)))]
pub async fn upstream_health(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream)): CpItemPath,
) -> ApiResult<Json<UpstreamHealth>> {
    let cp = find_control_plane(&s.db, auth.organization_id, &cp).await?;
    let row = find_item::<Upstream>(&s.db, cp.id, None, &upstream)
        .await?
        .ok_or(ApiError::NotFound)?;
    let upstream: Upstream = decode(row.data.clone(), &row)?;
    let targets: Vec<Target> = targets_of(&s.db, cp.id, upstream.id).await?;
    let reports = OnlineReports::load(&s.db, cp.id).await?;
    let data: Vec<TargetHealthView> = targets.into_iter().map(|t| reports.view(t)).collect();
    Ok(Json(UpstreamHealth {
        total: data.len(),
        data,
        node_count: reports.node_count(),
    }))
}

/// The targets of one upstream, oldest first.
pub(crate) async fn targets_of(
    db: &impl ConnectionTrait,
    cp: Uuid,
    upstream: Uuid,
) -> ApiResult<Vec<Target>> {
    let rows = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(Target::KIND))
        .filter(entities::Column::ParentId.eq(upstream))
        .order_by_asc(entities::Column::Id)
        .all(db)
        .await?;
    rows.iter()
        .map(|row| decode(row.data.clone(), row))
        .collect()
}

/// What the online nodes of one control plane last reported, by hostname.
pub(crate) struct OnlineReports {
    nodes: Vec<(nodes::Model, Vec<StoredTargetHealth>)>,
}

impl OnlineReports {
    pub(crate) async fn load(db: &impl ConnectionTrait, cp: Uuid) -> ApiResult<Self> {
        let now = Utc::now();
        let mut online: Vec<(nodes::Model, Vec<StoredTargetHealth>)> = nodes::Entity::find()
            .filter(nodes::Column::ControlPlaneId.eq(cp))
            .all(db)
            .await?
            .into_iter()
            .filter(|n| is_online(n.last_seen, now))
            .map(|mut n| {
                // A row written before any report, or unreadable, reports nothing.
                let reports = n
                    .target_health
                    .take()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                (n, reports)
            })
            .collect();
        online
            .sort_by(|(a, _), (b, _)| a.hostname.cmp(&b.hostname).then(a.node_id.cmp(&b.node_id)));
        Ok(OnlineReports { nodes: online })
    }

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// `target` with what each online node reports for it and the aggregate.
    pub(crate) fn view(&self, target: Target) -> TargetHealthView {
        let nodes: Vec<NodeTargetHealth> = self
            .nodes
            .iter()
            .filter_map(|(node, reports)| {
                let report = reports
                    .iter()
                    .find(|r| r.upstream_id == target.upstream.id && r.target == target.target)?;
                Some(NodeTargetHealth {
                    node_id: node.node_id,
                    hostname: node.hostname.clone(),
                    health: report.health,
                    last_seen: node.last_seen,
                })
            })
            .collect();
        let reported: Vec<TargetHealth> = nodes.iter().map(|n| n.health).collect();
        TargetHealthView {
            id: target.id,
            target: target.target,
            weight: target.weight,
            upstream: target.upstream,
            tags: target.tags,
            health: aggregate(&reported),
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetHealth::*;

    #[test]
    fn one_unhealthy_node_makes_a_target_unhealthy() {
        assert_eq!(aggregate(&[]), AggregateHealth::Unknown);
        assert_eq!(aggregate(&[Healthy, Healthy]), AggregateHealth::Healthy);
        assert_eq!(aggregate(&[Healthy, Unhealthy]), AggregateHealth::Unhealthy);
        assert_eq!(
            aggregate(&[DnsError, Unhealthy]),
            AggregateHealth::Unhealthy
        );
        assert_eq!(aggregate(&[Healthy, DnsError]), AggregateHealth::DnsError);
        assert_eq!(
            aggregate(&[HealthchecksOff, HealthchecksOff]),
            AggregateHealth::HealthchecksOff
        );
        assert_eq!(
            aggregate(&[HealthchecksOff, Healthy]),
            AggregateHealth::Healthy
        );
    }
}
