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
}
