use sea_orm::entity::prelude::*;

/// Host names are globally unique: the primary key is what refuses a name another tenant holds.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "control_plane_hostnames")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hostname: String,
    pub control_plane_id: Uuid,
    pub organization_id: Uuid,
    /// The `<slug>.<proxy domain>` name Tollgate assigned.
    pub is_default: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
