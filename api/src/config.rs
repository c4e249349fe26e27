//! The config write path. Every change runs inside a [`ConfigWrite`]: the control plane's version
//! is bumped first (which also locks its row, so writers of one control plane queue), the change
//! is made, the snapshot of the new version is compiled from what the transaction sees and stored
//! with an audit row, and only after commit is the publisher told.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use tollgate_model::snapshot::Entities;
use tollgate_model::Snapshot;
use uuid::Uuid;

use crate::audit;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{config_versions, control_plane_hostnames, control_planes, entities};

/// Finds a control plane of the caller's organization by id or slug; anything else is 404.
pub async fn find_control_plane(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    id_or_slug: &str,
) -> ApiResult<control_planes::Model> {
    let query = control_planes::Entity::find()
        .filter(control_planes::Column::OrganizationId.eq(organization_id));
    let query = match Uuid::parse_str(id_or_slug) {
        Ok(id) => query.filter(control_planes::Column::Id.eq(id)),
        Err(_) => query.filter(control_planes::Column::Slug.eq(id_or_slug)),
    };
    query.one(db).await?.ok_or(ApiError::NotFound)
}

/// A config change in progress.
pub struct ConfigWrite {
    pub txn: DatabaseTransaction,
    /// The control plane with its new `config_version`.
    pub control_plane: control_planes::Model,
}

impl ConfigWrite {
    /// Opens the transaction and bumps the version of the caller's control plane `id_or_slug`.
    pub async fn begin(state: &AppState, auth: &Auth, id_or_slug: &str) -> ApiResult<Self> {
        auth.require_write()?;
        let txn = state.db.begin().await?;
        let found = find_control_plane(&txn, auth.organization_id, id_or_slug).await?;
        let control_plane = bump_version(&txn, found.id).await?;
        Ok(ConfigWrite { txn, control_plane })
    }

    /// Compiles and records the new version, commits, and hands it to the publisher.
    pub async fn commit(self, state: &AppState, actor: &str, summary: &str) -> ApiResult<i64> {
        let cp = self.control_plane;
        let snapshot = compile_snapshot(&self.txn, &cp).await?;
        let body = serde_json::to_value(&snapshot).map_err(ApiError::internal)?;
        config_versions::ActiveModel {
            id: Set(Uuid::now_v7()),
            organization_id: Set(cp.organization_id),
            control_plane_id: Set(cp.id),
            version: Set(cp.config_version),
            hash: Set(snapshot.hash.clone()),
            snapshot: Set(body),
            actor: Set(actor.to_string()),
            summary: Set(summary.to_string()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.txn)
        .await?;
        audit::record(
            &self.txn,
            cp.organization_id,
            actor,
            "config.change",
            &cp.id.to_string(),
            serde_json::json!({ "version": cp.config_version, "summary": summary, "hash": snapshot.hash }),
        )
        .await?;
        self.txn.commit().await?;
        state.publisher.notify(cp.id);
        Ok(cp.config_version)
    }
}

/// `UPDATE … SET config_version = config_version + 1 … RETURNING *`: the row lock this takes in
/// Postgres is what orders concurrent writes to one control plane.
pub async fn bump_version(txn: &DatabaseTransaction, id: Uuid) -> ApiResult<control_planes::Model> {
    let mut updated = control_planes::Entity::update_many()
        .col_expr(
            control_planes::Column::ConfigVersion,
            Expr::col(control_planes::Column::ConfigVersion).add(1),
        )
        .col_expr(control_planes::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(control_planes::Column::Id.eq(id))
        .exec_with_returning(txn)
        .await?;
    updated.pop().ok_or(ApiError::NotFound)
}

/// The snapshot of `cp` as the connection sees it now.
pub async fn compile_snapshot(
    db: &impl ConnectionTrait,
    cp: &control_planes::Model,
) -> ApiResult<Snapshot> {
    let hostnames = control_plane_hostnames::Entity::find()
        .filter(control_plane_hostnames::Column::ControlPlaneId.eq(cp.id))
        .all(db)
        .await?
        .into_iter()
        .map(|h| h.hostname)
        .collect();
    let rows = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp.id))
        .order_by_asc(entities::Column::Id)
        .all(db)
        .await?;
    let mut found = Entities::default();
    for row in rows {
        // Sealed secrets stay sealed: edges open them with the master key.
        match row.kind.as_str() {
            "services" => found.services.push(decode(row)?),
            "routes" => found.routes.push(decode(row)?),
            "upstreams" => found.upstreams.push(decode(row)?),
            "targets" => found.targets.push(decode(row)?),
            "certificates" => found.certificates.push(decode(row)?),
            "snis" => found.snis.push(decode(row)?),
            other => return Err(ApiError::internal(format!("unknown entity kind {other}"))),
        }
    }
    Ok(Snapshot::of(
        cp.id,
        cp.organization_id,
        cp.config_version,
        hostnames,
        found,
    ))
}

fn decode<T: serde::de::DeserializeOwned>(row: entities::Model) -> ApiResult<T> {
    serde_json::from_value(row.data)
        .map_err(|e| ApiError::internal(format!("stored {} {}: {e}", row.kind, row.id)))
}
