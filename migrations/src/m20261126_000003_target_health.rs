//! The target health each node reports: a JSON list on the node's row per control plane,
//! replaced by every heartbeat.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000003_target_health"
    }
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    TargetHealth,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Nullable: rows of nodes seen before this migration have reported nothing yet.
        m.alter_table(
            Table::alter()
                .table(Nodes::Table)
                .add_column(ColumnDef::new(Nodes::TargetHealth).json_binary().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Nodes::Table)
                .drop_column(Nodes::TargetHealth)
                .to_owned(),
        )
        .await
    }
}
