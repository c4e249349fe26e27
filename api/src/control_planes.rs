//! Control planes: one gateway configuration each, selected on shared edges by Host name.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tollgate_model::hostname::validate_host;
use tollgate_model::ValidationError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit;
use crate::auth::Auth;
use crate::config::{find_control_plane, ConfigWrite};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::store::{control_plane_hostnames, control_planes};

#[derive(Debug, Serialize, ToSchema)]
pub struct ControlPlaneView {
    pub id: Uuid,
    pub name: String,
    /// Unique across Tollgate; part of the default hostname.
    pub slug: String,
    pub region: String,
    /// Where this control plane's routes are served in this deployment.
    pub proxy_url: String,
    /// The Host names shared edges select this control plane by: the default first.
    pub hostnames: Vec<String>,
    pub config_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateControlPlane {
    pub name: String,
    /// Defaults to the server's region.
    pub region: Option<String>,
    /// Extra exact or wildcard host names, e.g. `api.example.com`, `*.example.com`.
    pub hostnames: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateControlPlane {
    pub name: Option<String>,
    /// Replaces the extra host names; the default one always stays.
    pub hostnames: Option<Vec<String>>,
}

pub(crate) async fn view(
    state: &AppState,
    db: &impl ConnectionTrait,
    cp: control_planes::Model,
) -> ApiResult<ControlPlaneView> {
    let mut names = control_plane_hostnames::Entity::find()
        .filter(control_plane_hostnames::Column::ControlPlaneId.eq(cp.id))
        .all(db)
        .await?;
    names.sort_by(|a, b| {
        b.is_default
            .cmp(&a.is_default)
            .then(a.hostname.cmp(&b.hostname))
    });
    Ok(ControlPlaneView {
        proxy_url: state.settings.proxy_url(&cp.slug),
        hostnames: names.into_iter().map(|h| h.hostname).collect(),
        id: cp.id,
        name: cp.name,
        slug: cp.slug,
        region: cp.region,
        config_version: cp.config_version,
        created_at: cp.created_at,
        updated_at: cp.updated_at,
    })
}

fn check_name(name: &str, errors: &mut ValidationError) -> String {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.add("name", "must be 1 to 100 characters");
    }
    name
}

fn slug_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(40).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "cp".into()
    } else {
        slug
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 3];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Validates the extra host names: lowercase, unique, and not under the platform's own domain
/// (those are assigned by Tollgate).
fn check_hostnames(
    state: &AppState,
    names: &[String],
    errors: &mut ValidationError,
) -> Vec<String> {
    let domain = state.settings.proxy_domain();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        if let Err(message) = validate_host(&name, true) {
            errors.add(format!("hostnames[{i}]"), message);
        } else if name == domain || name.ends_with(&format!(".{domain}")) {
            errors.add(
                format!("hostnames[{i}]"),
                format!("names under {domain} are assigned by Tollgate"),
            );
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Makes the control plane's extra host names exactly `names`; a name held by any other control
/// plane is a 409.
async fn set_hostnames(
    txn: &DatabaseTransaction,
    cp: &control_planes::Model,
    names: &[String],
) -> ApiResult<()> {
    let held = control_plane_hostnames::Entity::find()
        .filter(control_plane_hostnames::Column::Hostname.is_in(names.iter().cloned()))
        .filter(control_plane_hostnames::Column::ControlPlaneId.ne(cp.id))
        .all(txn)
        .await?;
    if let Some(taken) = held.first() {
        return Err(ApiError::conflict(
            "hostnames",
            format!(
                "{} is already in use by another control plane",
                taken.hostname
            ),
        ));
    }
    control_plane_hostnames::Entity::delete_many()
        .filter(control_plane_hostnames::Column::ControlPlaneId.eq(cp.id))
        .filter(control_plane_hostnames::Column::IsDefault.eq(false))
        .filter(control_plane_hostnames::Column::Hostname.is_not_in(names.iter().cloned()))
        .exec(txn)
        .await?;
    let mine: Vec<String> = control_plane_hostnames::Entity::find()
        .filter(control_plane_hostnames::Column::ControlPlaneId.eq(cp.id))
        .all(txn)
        .await?
        .into_iter()
        .map(|h| h.hostname)
        .collect();
    for name in names.iter().filter(|n| !mine.contains(n)) {
        insert_hostname(txn, cp, name, false).await?;
    }
    Ok(())
}

async fn insert_hostname(
    txn: &DatabaseTransaction,
    cp: &control_planes::Model,
    name: &str,
    is_default: bool,
) -> ApiResult<()> {
    let inserted = control_plane_hostnames::ActiveModel {
        hostname: Set(name.to_string()),
        control_plane_id: Set(cp.id),
        organization_id: Set(cp.organization_id),
        is_default: Set(is_default),
        created_at: Set(Utc::now()),
    }
    .insert(txn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) => match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Err(ApiError::conflict(
                "hostnames",
                format!("{name} is already in use by another control plane"),
            )),
            _ => Err(e.into()),
        },
    }
}

/// List the organization's control planes.
#[utoipa::path(get, path = "/api/v1/control-planes", tag = "control planes",
    params(PageQuery),
    responses((status = 200, description = "`{data, next, offset}`"), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ControlPlaneView>>> {
    let planes = control_planes::Entity::find()
        .filter(control_planes::Column::OrganizationId.eq(auth.organization_id))
        .order_by_asc(control_planes::Column::Id)
        .all(&state.db)
        .await?;
    let page = page.paginate(planes, "/api/v1/control-planes")?;
    let mut data = Vec::with_capacity(page.data.len());
    for cp in page.data {
        data.push(view(&state, &state.db, cp).await?);
    }
    Ok(Json(Page {
        data,
        next: page.next,
        offset: page.offset,
    }))
}

/// Create a control plane. It starts at config version 1 with no services or routes.
#[utoipa::path(post, path = "/api/v1/control-planes", tag = "control planes",
    request_body = CreateControlPlane,
    responses((status = 201, body = ControlPlaneView), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "A host name is held by another control plane")))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateControlPlane>,
) -> ApiResult<impl IntoResponse> {
    let created = create_control_plane(&state, &auth, req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates a control plane at version 1; shared by the API and the console.
pub async fn create_control_plane(
    state: &AppState,
    auth: &Auth,
    req: CreateControlPlane,
) -> ApiResult<ControlPlaneView> {
    auth.require_write()?;
    let mut errors = ValidationError::new();
    let name = check_name(&req.name, &mut errors);
    let region = req
        .region
        .unwrap_or_else(|| state.settings.default_region.clone());
    if let Err(message) = tollgate_bus::validate_region(&region) {
        errors.add("region", message);
    }
    let extra = check_hostnames(state, req.hostnames.as_deref().unwrap_or(&[]), &mut errors);
    errors.into_result()?;

    let txn = state.db.begin().await?;
    let base = slug_of(&name);
    let mut slug = base.clone();
    for _ in 0..8 {
        let slug_taken = control_planes::Entity::find()
            .filter(control_planes::Column::Slug.eq(&slug))
            .one(&txn)
            .await?
            .is_some();
        let host_taken =
            control_plane_hostnames::Entity::find_by_id(state.settings.default_hostname(&slug))
                .one(&txn)
                .await?
                .is_some();
        if !slug_taken && !host_taken {
            break;
        }
        slug = format!("{base}-{}", random_suffix());
    }
    let now = Utc::now();
    let cp = control_planes::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(auth.organization_id),
        name: Set(name.clone()),
        slug: Set(slug.clone()),
        region: Set(region),
        config_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    insert_hostname(&txn, &cp, &state.settings.default_hostname(&slug), true).await?;
    set_hostnames(&txn, &cp, &extra).await?;
    audit::record(
        &txn,
        auth.organization_id,
        &auth.actor(),
        "control_plane.create",
        &cp.id.to_string(),
        serde_json::json!({ "name": name, "slug": slug }),
    )
    .await?;
    let cp = crate::config::bump_version(&txn, cp.id).await?;
    let write = ConfigWrite {
        txn,
        control_plane: cp.clone(),
    };
    write
        .commit(state, &auth.actor(), "create control plane")
        .await?;
    let fresh = find_control_plane(&state.db, auth.organization_id, &cp.id.to_string()).await?;
    view(state, &state.db, fresh).await
}

/// One control plane, by id or slug.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}", tag = "control planes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    responses((status = 200, body = ControlPlaneView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(cp): Path<String>,
) -> ApiResult<Json<ControlPlaneView>> {
    let cp = find_control_plane(&state.db, auth.organization_id, &cp).await?;
    Ok(Json(view(&state, &state.db, cp).await?))
}

/// Rename a control plane or set its extra host names.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}", tag = "control planes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = UpdateControlPlane,
    responses((status = 200, body = ControlPlaneView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(cp): Path<String>,
    JsonBody(req): JsonBody<UpdateControlPlane>,
) -> ApiResult<Json<ControlPlaneView>> {
    // The role first: a viewer hears "not allowed", not what is wrong with the body.
    auth.require_write()?;
    let mut errors = ValidationError::new();
    let name = req.name.as_deref().map(|n| check_name(n, &mut errors));
    let hostnames = req
        .hostnames
        .as_deref()
        .map(|h| check_hostnames(&state, h, &mut errors));
    errors.into_result()?;
    let write = ConfigWrite::begin(&state, &auth, &cp).await?;
    let mut summary = Vec::new();
    if let Some(name) = name {
        let mut active: control_planes::ActiveModel = write.control_plane.clone().into();
        active.name = Set(name.clone());
        active.update(&write.txn).await?;
        summary.push(format!("rename to {name}"));
    }
    if let Some(hostnames) = &hostnames {
        set_hostnames(&write.txn, &write.control_plane, hostnames).await?;
        summary.push(format!("set hostnames [{}]", hostnames.join(", ")));
    }
    let id = write.control_plane.id;
    let summary = if summary.is_empty() {
        "no change".to_string()
    } else {
        summary.join("; ")
    };
    write.commit(&state, &auth.actor(), &summary).await?;
    let fresh = find_control_plane(&state.db, auth.organization_id, &id.to_string()).await?;
    Ok(Json(view(&state, &state.db, fresh).await?))
}

/// Delete a control plane with all its config. Edges stop serving it.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}", tag = "control planes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(cp): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_write()?;
    let txn = state.db.begin().await?;
    let cp = find_control_plane(&txn, auth.organization_id, &cp).await?;
    control_planes::Entity::delete_by_id(cp.id)
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        auth.organization_id,
        &auth.actor(),
        "control_plane.delete",
        &cp.id.to_string(),
        serde_json::json!({ "name": cp.name, "slug": cp.slug }),
    )
    .await?;
    txn.commit().await?;
    state.publisher.notify(cp.id);
    Ok(StatusCode::NO_CONTENT)
}
