use sea_orm::entity::prelude::*;

/// One edge node as seen by one control plane (a shared edge appears under each it serves).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub control_plane_id: Uuid,
    pub organization_id: Uuid,
    pub hostname: String,
    pub binary_version: String,
    pub region: String,
    pub config_version: i64,
    pub config_hash: String,
    pub first_seen: DateTimeUtc,
    pub last_seen: DateTimeUtc,
    /// `[{upstream_id, target, health}]`: what this node last reported for this control plane's
    /// targets (`TargetHealthRow`s).
    pub target_health: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
