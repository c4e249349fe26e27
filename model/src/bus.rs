//! Messages between the control plane and edges.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The latest config of one control plane, as published after each commit. Small on purpose: the
/// body is fetched separately, and only when the edge does not have this hash yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHead {
    pub control_plane_id: Uuid,
    pub region: String,
    pub version: i64,
    pub hash: String,
}

/// What one control plane's config is on one edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedConfig {
    pub control_plane_id: Uuid,
    pub version: i64,
    pub hash: String,
}

/// Sent by every edge periodically and after each applied snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: Uuid,
    pub hostname: String,
    /// The `tollgate` binary's version.
    pub binary_version: String,
    pub region: String,
    /// Unix seconds.
    pub sent_at: i64,
    pub control_planes: Vec<AppliedConfig>,
    /// The health this edge sees for each target of each upstream it balances.
    #[serde(default)]
    pub target_health: Vec<TargetHealthReport>,
}

/// One target's health as one edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetHealthReport {
    pub control_plane_id: Uuid,
    pub upstream_id: Uuid,
    /// The target as configured, `host:port`.
    pub target: String,
    pub health: TargetHealth,
}

/// Kong's target health values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetHealth {
    Healthy,
    Unhealthy,
    /// Neither active nor passive checks are configured: always used.
    HealthchecksOff,
    /// The target's host name does not resolve.
    DnsError,
}
