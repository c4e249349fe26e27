//! Accounts, control planes, gateway entities, config versions, audit and nodes.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000001_foundation"
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    OrganizationId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    OrganizationId,
    UserId,
    Name,
    TokenHash,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum ControlPlanes {
    Table,
    Id,
    OrganizationId,
    Name,
    Slug,
    Region,
    ConfigVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ControlPlaneHostnames {
    Table,
    Hostname,
    ControlPlaneId,
    OrganizationId,
    IsDefault,
    CreatedAt,
}

/// Gateway entities of every kind (services, routes, …) as their validated JSON: one table keeps
/// the generic entity endpoints generic; references between them are checked by the API inside
/// the control plane's write lock.
#[derive(DeriveIden)]
enum Entities {
    Table,
    Id,
    OrganizationId,
    ControlPlaneId,
    Kind,
    Name,
    ParentId,
    Data,
}

#[derive(DeriveIden)]
enum ConfigVersions {
    Table,
    Id,
    OrganizationId,
    ControlPlaneId,
    Version,
    Hash,
    Snapshot,
    Actor,
    Summary,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OrganizationId,
    Actor,
    Action,
    Target,
    Details,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    NodeId,
    ControlPlaneId,
    OrganizationId,
    Hostname,
    BinaryVersion,
    Region,
    ConfigVersion,
    ConfigHash,
    FirstSeen,
    LastSeen,
}

fn fk_org<T: IntoIden + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Organizations::Table, Organizations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Organizations::Table)
                .col(
                    ColumnDef::new(Organizations::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Organizations::Name).string().not_null())
                .col(
                    ColumnDef::new(Organizations::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                .col(
                    ColumnDef::new(Users::Email)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Users::PasswordHash).string().not_null())
                .col(
                    ColumnDef::new(Users::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Memberships::Table)
                .col(
                    ColumnDef::new(Memberships::OrganizationId)
                        .uuid()
                        .not_null(),
                )
                .col(ColumnDef::new(Memberships::UserId).uuid().not_null())
                .col(ColumnDef::new(Memberships::Role).string().not_null())
                .col(
                    ColumnDef::new(Memberships::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(Memberships::OrganizationId)
                        .col(Memberships::UserId),
                )
                .foreign_key(&mut fk_org(Memberships::Table, Memberships::OrganizationId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Memberships::Table, Memberships::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiTokens::Table)
                .col(
                    ColumnDef::new(ApiTokens::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ApiTokens::OrganizationId).uuid().not_null())
                .col(ColumnDef::new(ApiTokens::UserId).uuid().not_null())
                .col(ColumnDef::new(ApiTokens::Name).string().not_null())
                .col(
                    ColumnDef::new(ApiTokens::TokenHash)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(ApiTokens::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ApiTokens::LastUsedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .foreign_key(&mut fk_org(ApiTokens::Table, ApiTokens::OrganizationId))
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiTokens::Table, ApiTokens::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ControlPlanes::Table)
                .col(
                    ColumnDef::new(ControlPlanes::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ControlPlanes::OrganizationId)
                        .uuid()
                        .not_null(),
                )
                .col(ColumnDef::new(ControlPlanes::Name).string().not_null())
                .col(
                    ColumnDef::new(ControlPlanes::Slug)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(ControlPlanes::Region).string().not_null())
                .col(
                    ColumnDef::new(ControlPlanes::ConfigVersion)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ControlPlanes::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ControlPlanes::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(&mut fk_org(
                    ControlPlanes::Table,
                    ControlPlanes::OrganizationId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_control_planes_org")
                .table(ControlPlanes::Table)
                .col(ControlPlanes::OrganizationId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ControlPlaneHostnames::Table)
                .col(
                    ColumnDef::new(ControlPlaneHostnames::Hostname)
                        .string()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ControlPlaneHostnames::ControlPlaneId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ControlPlaneHostnames::OrganizationId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ControlPlaneHostnames::IsDefault)
                        .boolean()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ControlPlaneHostnames::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            ControlPlaneHostnames::Table,
                            ControlPlaneHostnames::ControlPlaneId,
                        )
                        .to(ControlPlanes::Table, ControlPlanes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Entities::Table)
                .col(ColumnDef::new(Entities::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Entities::OrganizationId).uuid().not_null())
                .col(ColumnDef::new(Entities::ControlPlaneId).uuid().not_null())
                .col(ColumnDef::new(Entities::Kind).string().not_null())
                .col(ColumnDef::new(Entities::Name).string().null())
                .col(ColumnDef::new(Entities::ParentId).uuid().null())
                .col(ColumnDef::new(Entities::Data).json_binary().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(Entities::Table, Entities::ControlPlaneId)
                        .to(ControlPlanes::Table, ControlPlanes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_entities_cp_kind_name")
                .table(Entities::Table)
                .col(Entities::ControlPlaneId)
                .col(Entities::Kind)
                .col(Entities::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_entities_parent")
                .table(Entities::Table)
                .col(Entities::ParentId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ConfigVersions::Table)
                .col(
                    ColumnDef::new(ConfigVersions::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ConfigVersions::OrganizationId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConfigVersions::ControlPlaneId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConfigVersions::Version)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(ConfigVersions::Hash).string().not_null())
                .col(
                    ColumnDef::new(ConfigVersions::Snapshot)
                        .json_binary()
                        .not_null(),
                )
                .col(ColumnDef::new(ConfigVersions::Actor).string().not_null())
                .col(ColumnDef::new(ConfigVersions::Summary).string().not_null())
                .col(
                    ColumnDef::new(ConfigVersions::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ConfigVersions::Table, ConfigVersions::ControlPlaneId)
                        .to(ControlPlanes::Table, ControlPlanes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_config_versions_cp_version")
                .table(ConfigVersions::Table)
                .col(ConfigVersions::ControlPlaneId)
                .col(ConfigVersions::Version)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(AuditLog::OrganizationId).uuid().not_null())
                .col(ColumnDef::new(AuditLog::Actor).string().not_null())
                .col(ColumnDef::new(AuditLog::Action).string().not_null())
                .col(ColumnDef::new(AuditLog::Target).string().not_null())
                .col(ColumnDef::new(AuditLog::Details).json_binary().not_null())
                .col(
                    ColumnDef::new(AuditLog::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(&mut fk_org(AuditLog::Table, AuditLog::OrganizationId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_audit_org_time")
                .table(AuditLog::Table)
                .col(AuditLog::OrganizationId)
                .col(AuditLog::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Nodes::Table)
                .col(ColumnDef::new(Nodes::NodeId).uuid().not_null())
                .col(ColumnDef::new(Nodes::ControlPlaneId).uuid().not_null())
                .col(ColumnDef::new(Nodes::OrganizationId).uuid().not_null())
                .col(ColumnDef::new(Nodes::Hostname).string().not_null())
                .col(ColumnDef::new(Nodes::BinaryVersion).string().not_null())
                .col(ColumnDef::new(Nodes::Region).string().not_null())
                .col(
                    ColumnDef::new(Nodes::ConfigVersion)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Nodes::ConfigHash).string().not_null())
                .col(
                    ColumnDef::new(Nodes::FirstSeen)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Nodes::LastSeen)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(Nodes::NodeId)
                        .col(Nodes::ControlPlaneId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Nodes::Table, Nodes::ControlPlaneId)
                        .to(ControlPlanes::Table, ControlPlanes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Nodes::Table.into_iden(),
            AuditLog::Table.into_iden(),
            ConfigVersions::Table.into_iden(),
            Entities::Table.into_iden(),
            ControlPlaneHostnames::Table.into_iden(),
            ControlPlanes::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Memberships::Table.into_iden(),
            Users::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
