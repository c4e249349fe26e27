//! Config history: every committed write is a numbered version with its snapshot.

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::config::find_control_plane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::store::config_versions;

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
    /// The compiled snapshot edges load for this version.
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
    let version: i64 = version.parse().map_err(|_| ApiError::NotFound)?;
    let found = config_versions::Entity::find()
        .filter(config_versions::Column::ControlPlaneId.eq(cp.id))
        .filter(config_versions::Column::Version.eq(version))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(VersionDetail {
        version: view(&found),
        snapshot: found.snapshot,
    }))
}
