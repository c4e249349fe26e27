//! Schema history. The control-plane database (Postgres in production, SQLite in `tollgate dev`)
//! is migrated by [`Migrator`]; ClickHouse SQL files join in `clickhouse/` with analytics.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_foundation;
mod m20261126_000002_invitations;
mod m20261126_000003_target_health;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_foundation::Migration),
            Box::new(m20261126_000002_invitations::Migration),
            Box::new(m20261126_000003_target_health::Migration),
        ]
    }
}
