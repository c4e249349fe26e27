//! sea-orm entities of the control-plane database, and how to connect to it. One set of entities
//! serves Postgres and SQLite; the schema comes from `tollgate-migrations`.

pub mod api_tokens;
pub mod audit_log;
pub mod config_versions;
pub mod control_plane_hostnames;
pub mod control_planes;
pub mod entities;
pub mod invitations;
pub mod memberships;
pub mod nodes;
pub mod organizations;
pub mod users;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
use tollgate_migrations::Migrator;

/// Opens the database at `url` (`postgres://…` or `sqlite://path?mode=rwc`).
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // SQLite allows one writer; one connection turns lock contention into queueing.
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(20);
    }
    Database::connect(options).await
}

/// Applies pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Names of migrations not yet applied.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_string())
        .collect())
}
