//! Config history: every committed write is a numbered version with its snapshot, and any
//! version can be restored as a new one.

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use serde_json::Value;
use tollgate_model::entity::Entity;
use tollgate_model::{Certificate, Route, Service, Sni, Target, Upstream};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::{find_control_plane, ConfigWrite};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::gateway::strip_snapshot_secrets;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::store::{config_versions, entities};

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: i64,
    pub hash: String,
    /// Who made the change.
    pub actor: String,
    pub summary: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    #[serde(flatten)]
    pub version: VersionView,
    /// The compiled snapshot edges load for this version, without secret fields (a
    /// certificate's `key` and `key_alt`).
    pub snapshot: serde_json::Value,
}

fn view(v: &config_versions::Model) -> VersionView {
    VersionView {
        version: v.version,
        hash: v.hash.clone(),
        actor: v.actor.clone(),
        summary: v.summary.clone(),
        created_at: v.created_at,
    }
}

/// Config versions, newest first.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/config/versions", tag = "config",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [VersionView], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Path(cp): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<VersionView>>> {
    let cp = find_control_plane(&state.db, auth.organization_id, &cp).await?;
    let versions = config_versions::Entity::find()
        .filter(config_versions::Column::ControlPlaneId.eq(cp.id))
        .order_by_desc(config_versions::Column::Version)
        .all(&state.db)
        .await?;
    let items = versions.iter().map(view).collect();
    let path = format!("/api/v1/control-planes/{}/config/versions", cp.id);
    Ok(Json(page.paginate(items, &path)?))
}

/// One version with its snapshot.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/config/versions/{version}", tag = "config",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("version" = i64, Path)),
    responses((status = 200, body = VersionDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path((cp, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionDetail>> {
    let cp = find_control_plane(&state.db, auth.organization_id, &cp).await?;
    let mut found = find_version(&state.db, cp.id, parse_version(&version)?).await?;
    strip_snapshot_secrets(&mut found.snapshot);
    Ok(Json(VersionDetail {
        version: view(&found),
        snapshot: found.snapshot,
    }))
}

/// A version number from a path; anything else names no version.
fn parse_version(version: &str) -> ApiResult<i64> {
    version.parse().map_err(|_| ApiError::NotFound)
}

async fn find_version(
    db: &impl ConnectionTrait,
    control_plane_id: Uuid,
    version: i64,
) -> ApiResult<config_versions::Model> {
    config_versions::Entity::find()
        .filter(config_versions::Column::ControlPlaneId.eq(control_plane_id))
        .filter(config_versions::Column::Version.eq(version))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The entities of one kind in a stored snapshot, typed (for id, name and parent) and as stored.
fn snapshot_entities<E: Entity>(snapshot: &Value, version: i64) -> ApiResult<Vec<(E, Value)>> {
    let Some(items) = snapshot.get(E::KIND) else {
        return Ok(Vec::new());
    };
    let items = items.as_array().ok_or_else(|| {
        ApiError::internal(format!(
            "snapshot of version {version}: {} is not a list",
            E::KIND
        ))
    })?;
    items
        .iter()
        .map(|item| {
            let entity: E = serde_json::from_value(item.clone()).map_err(|e| {
                ApiError::internal(format!("snapshot of version {version}: {}: {e}", E::KIND))
            })?;
            Ok((entity, item.clone()))
        })
        .collect()
}

/// One kind's rows from a stored snapshot, ready to insert: sealed secrets stay as they were
/// sealed, for this same control plane.
fn restored_rows<E: Entity>(
    cp: &crate::store::control_planes::Model,
    snapshot: &Value,
    version: i64,
) -> ApiResult<Vec<(Uuid, entities::ActiveModel)>> {
    Ok(snapshot_entities::<E>(snapshot, version)?
        .into_iter()
        .map(|(entity, data)| {
            let row = entities::ActiveModel {
                id: Set(entity.id()),
                organization_id: Set(cp.organization_id),
                control_plane_id: Set(cp.id),
                kind: Set(E::KIND.to_string()),
                name: Set(entity.name().map(str::to_string)),
                parent_id: Set(entity.parent()),
                data: Set(data),
            };
            (entity.id(), row)
        })
        .collect())
}

/// Restore a version: a new version whose entities (services, routes, upstreams, targets,
/// certificates, SNIs) are those of version `{version}`.
///
/// Host names are not restored: they stay as they are now, because a name this control plane
/// released since may be held by another control plane by now. With unchanged host names the
/// new version's hash equals the restored version's.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/config/versions/{version}/restore", tag = "config",
    params(("cp" = String, Path, description = "Control plane id or slug"),
           ("version" = i64, Path, description = "The version to restore")),
    responses((status = 200, body = VersionView, description = "The new version"),
              (status = 403, body = ErrorBody, description = "Viewers cannot change config"),
              (status = 404, body = ErrorBody, description = "No such control plane or version"),
              (status = 409, body = ErrorBody, description = "An entity id of that version is now used by another control plane")))]
pub async fn restore(
    State(state): State<AppState>,
    auth: Auth,
    Path((cp, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionView>> {
    let write = ConfigWrite::begin(&state, &auth, &cp).await?;
    let cp_id = write.control_plane.id;
    let source = find_version(&write.txn, cp_id, parse_version(&version)?).await?;
    let snapshot = &source.snapshot;
    let rows: Vec<(Uuid, entities::ActiveModel)> = [
        restored_rows::<Service>(&write.control_plane, snapshot, source.version)?,
        restored_rows::<Route>(&write.control_plane, snapshot, source.version)?,
        restored_rows::<Upstream>(&write.control_plane, snapshot, source.version)?,
        restored_rows::<Target>(&write.control_plane, snapshot, source.version)?,
        restored_rows::<Certificate>(&write.control_plane, snapshot, source.version)?,
        restored_rows::<Sni>(&write.control_plane, snapshot, source.version)?,
    ]
    .into_iter()
    .flatten()
    .collect();

    entities::Entity::delete_many()
        .filter(entities::Column::ControlPlaneId.eq(cp_id))
        .exec(&write.txn)
        .await?;
    // Entity ids are global and can be chosen on create, so one this control plane released
    // may have been taken elsewhere since; say so instead of failing on the primary key.
    let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
    if let Some(taken) = entities::Entity::find()
        .filter(entities::Column::Id.is_in(ids))
        .one(&write.txn)
        .await?
    {
        return Err(ApiError::conflict(
            "version",
            format!(
                "cannot restore version {}: its {} {} now belongs to another control plane",
                source.version, taken.kind, taken.id
            ),
        ));
    }
    for (_, row) in rows {
        row.insert(&write.txn).await?;
    }
    let new_version = write
        .commit(
            &state,
            &auth.actor(),
            &format!("restore version {}", source.version),
        )
        .await?;
    let created = find_version(&state.db, cp_id, new_version).await?;
    Ok(Json(view(&created)))
}
