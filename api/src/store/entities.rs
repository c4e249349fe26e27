use sea_orm::entity::prelude::*;

/// One gateway entity (service, route, …) of one control plane, stored as its validated JSON.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "entities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    /// `services`, `routes`, …
    pub kind: String,
    pub name: Option<String>,
    /// The entity this one belongs to (a route's service).
    pub parent_id: Option<Uuid>,
    pub data: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
