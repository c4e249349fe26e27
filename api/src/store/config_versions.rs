use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "config_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    pub version: i64,
    pub hash: String,
    /// The compiled `Snapshot` of this version, as published to edges.
    pub snapshot: Json,
    /// Who made the change: a user's email, or `token:<name> (<email>)`.
    pub actor: String,
    pub summary: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
