//! Gateway entities under `/api/v1/control-planes/{cp}/…`, with Kong Admin API conventions:
//! lookup by id or name, `PUT` as upsert, `?tags=`, the list envelope, nested
//! `/services/{service}/routes`. One generic implementation serves every kind; the handlers at
//! the bottom are thin, typed doors for routing and the OpenAPI document.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use serde_json::{json, Value};
use tollgate_model::entity::{build, tags_match, Build, Entity};
use tollgate_model::{Route, Service};
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::{find_control_plane, ConfigWrite};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::store::entities;

/// The kinds that reference another kind, and which field holds the reference.
const REFERENCES: &[(&str, &str, &str)] = &[("routes", "service", "services")];

/// Every entity of one kind in a control plane, oldest first.
pub(crate) async fn all_of<E: Entity>(db: &impl ConnectionTrait, cp: Uuid) -> ApiResult<Vec<E>> {
    let rows = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(E::KIND))
        .order_by_asc(entities::Column::Id)
        .all(db)
        .await?;
    rows.iter().map(decode).collect()
}

fn decode<E: Entity>(row: &entities::Model) -> ApiResult<E> {
    serde_json::from_value(row.data.clone())
        .map_err(|e| ApiError::internal(format!("stored {} {}: {e}", row.kind, row.id)))
}

async fn find_row(
    db: &impl ConnectionTrait,
    cp: Uuid,
    kind: &str,
    id_or_name: &str,
) -> ApiResult<Option<entities::Model>> {
    let query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(kind));
    let query = match Uuid::parse_str(id_or_name) {
        Ok(id) => query.filter(entities::Column::Id.eq(id)),
        Err(_) => query.filter(entities::Column::Name.eq(id_or_name)),
    };
    Ok(query.one(db).await?)
}

async fn find_entity<E: Entity>(
    db: &impl ConnectionTrait,
    cp: Uuid,
    id_or_name: &str,
) -> ApiResult<E> {
    let row = find_row(db, cp, E::KIND, id_or_name)
        .await?
        .ok_or(ApiError::NotFound)?;
    decode(&row)
}

/// Turns `{"service": {"name": "x"}}` into `{"service": {"id": "…"}}` and checks the target exists
/// in the same control plane.
async fn resolve_references(
    db: &impl ConnectionTrait,
    cp: Uuid,
    kind: &str,
    input: &mut Value,
) -> ApiResult<()> {
    let Some(object) = input.as_object_mut() else {
        return Ok(());
    };
    for (_, field, target) in REFERENCES.iter().filter(|(k, _, _)| *k == kind) {
        let Some(reference) = object.get(*field) else {
            continue;
        };
        if reference.is_null() {
            continue;
        }
        let key = match reference {
            Value::Object(map) if map.len() == 1 => map
                .get("id")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let Some(key) = key else {
            return Err(ApiError::field(
                field,
                format!("expected {{\"id\": \"…\"}} or {{\"name\": \"…\"}} of a {target} entity"),
            ));
        };
        let row = find_row(db, cp, target, &key).await?.ok_or_else(|| {
            ApiError::foreign_key(
                field,
                format!("does not reference an existing '{target}' entity: '{key}'"),
            )
        })?;
        object.insert(field.to_string(), json!({ "id": row.id }));
    }
    Ok(())
}

/// Writes `entity` as new or updated, refusing a name another entity of its kind holds.
async fn save<E: Entity>(write: &ConfigWrite, entity: &E, is_new: bool) -> ApiResult<()> {
    let cp = &write.control_plane;
    if let Some(name) = entity.name() {
        let holder = find_row(&write.txn, cp.id, E::KIND, name).await?;
        if holder.is_some_and(|h| h.id != entity.id()) {
            return Err(ApiError::unique(
                "name",
                format!("a {} named '{name}' already exists", E::SINGULAR),
            ));
        }
    }
    if is_new {
        // An id in use by another control plane (ids can be given on create) is refused plainly.
        if entities::Entity::find_by_id(entity.id())
            .one(&write.txn)
            .await?
            .is_some()
        {
            return Err(ApiError::unique(
                "id",
                "an entity with this id already exists",
            ));
        }
    }
    let data = serde_json::to_value(entity).map_err(ApiError::internal)?;
    let row = entities::ActiveModel {
        id: Set(entity.id()),
        organization_id: Set(cp.organization_id),
        control_plane_id: Set(cp.id),
        kind: Set(E::KIND.to_string()),
        name: Set(entity.name().map(str::to_string)),
        parent_id: Set(entity.parent()),
        data: Set(data),
    };
    if is_new {
        row.insert(&write.txn).await?;
    } else {
        row.update(&write.txn).await?;
    }
    Ok(())
}

fn label<E: Entity>(entity: &E) -> String {
    match entity.name() {
        Some(name) => format!("{} {name}", E::SINGULAR),
        None => format!("{} {}", E::SINGULAR, entity.id()),
    }
}

/// Pins a nested create or upsert to its parent: `/services/{s}/routes` sets `service`.
fn pin_parent(input: &mut Value, field: &str, parent: Uuid) -> ApiResult<()> {
    let Some(object) = input.as_object_mut() else {
        return Ok(());
    };
    match object.get(field) {
        None | Some(Value::Null) => {
            object.insert(field.into(), json!({ "id": parent }));
            Ok(())
        }
        Some(given) if given == &json!({ "id": parent }) => Ok(()),
        Some(_) => Err(ApiError::field(
            field,
            "conflicts with the service in the path",
        )),
    }
}

async fn list_entities<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    page: PageQuery,
    parent: Option<&str>,
) -> ApiResult<Page<Value>> {
    let cp = find_control_plane(&state.db, auth.organization_id, cp).await?;
    let mut query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp.id))
        .filter(entities::Column::Kind.eq(E::KIND));
    let mut path = format!("/api/v1/control-planes/{}/{}", cp.id, E::KIND);
    if let Some(parent) = parent {
        let service: Service = find_entity(&state.db, cp.id, parent).await?;
        query = query.filter(entities::Column::ParentId.eq(service.id));
        path = format!(
            "/api/v1/control-planes/{}/services/{}/{}",
            cp.id,
            service.id,
            E::KIND
        );
    }
    let rows = query
        .order_by_asc(entities::Column::Id)
        .all(&state.db)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let entity: E = decode(row)?;
        if page
            .tags
            .as_deref()
            .is_none_or(|filter| tags_match(entity.tags(), filter))
        {
            items.push(row.data.clone());
        }
    }
    page.paginate(items, &path)
}

pub(crate) async fn create_entity<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    mut input: Value,
    parent: Option<&str>,
) -> ApiResult<(StatusCode, Json<E>)> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    if let Some(parent) = parent {
        let service: Service = find_entity(&write.txn, write.control_plane.id, parent).await?;
        pin_parent(&mut input, "service", service.id)?;
    }
    resolve_references(&write.txn, write.control_plane.id, E::KIND, &mut input).await?;
    let entity: E = build(
        Build::Create { id: Uuid::now_v7() },
        &input,
        Utc::now().timestamp(),
    )?;
    save(&write, &entity, true).await?;
    write
        .commit(state, &auth.actor(), &format!("create {}", label(&entity)))
        .await?;
    Ok((StatusCode::CREATED, Json(entity)))
}

pub(crate) async fn get_entity<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    id_or_name: &str,
) -> ApiResult<Json<E>> {
    let cp = find_control_plane(&state.db, auth.organization_id, cp).await?;
    Ok(Json(find_entity(&state.db, cp.id, id_or_name).await?))
}

pub(crate) async fn update_entity<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    id_or_name: &str,
    mut input: Value,
) -> ApiResult<Json<E>> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let existing: E = find_entity(&write.txn, write.control_plane.id, id_or_name).await?;
    resolve_references(&write.txn, write.control_plane.id, E::KIND, &mut input).await?;
    let entity: E = build(
        Build::Update {
            existing: &existing,
        },
        &input,
        Utc::now().timestamp(),
    )?;
    save(&write, &entity, false).await?;
    write
        .commit(state, &auth.actor(), &format!("update {}", label(&entity)))
        .await?;
    Ok(Json(entity))
}

pub(crate) async fn upsert_entity<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    id_or_name: &str,
    mut input: Value,
) -> ApiResult<Json<E>> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let cp_id = write.control_plane.id;
    let existing: Option<E> = match find_row(&write.txn, cp_id, E::KIND, id_or_name).await? {
        Some(row) => Some(decode(&row)?),
        None => None,
    };
    let path_id = Uuid::parse_str(id_or_name).ok();
    if path_id.is_none() {
        if let Some(object) = input.as_object_mut() {
            match object.get("name") {
                None | Some(Value::Null) => {
                    object.insert("name".into(), Value::String(id_or_name.to_string()));
                }
                Some(Value::String(n)) if n == id_or_name => {}
                Some(_) => {
                    return Err(ApiError::field(
                        "name",
                        "conflicts with the name in the path",
                    ))
                }
            }
        }
    }
    resolve_references(&write.txn, cp_id, E::KIND, &mut input).await?;
    let now = Utc::now().timestamp();
    let (entity, is_new): (E, bool) = match &existing {
        Some(existing) => (build(Build::Replace { existing }, &input, now)?, false),
        None => {
            let id = path_id.unwrap_or_else(Uuid::now_v7);
            if let (Some(path_id), Some(given)) = (path_id, input.get("id")) {
                if given.as_str() != Some(path_id.to_string().as_str()) {
                    return Err(ApiError::field("id", "conflicts with the id in the path"));
                }
            }
            (build(Build::Create { id }, &input, now)?, true)
        }
    };
    save(&write, &entity, is_new).await?;
    let verb = if is_new { "create" } else { "replace" };
    write
        .commit(state, &auth.actor(), &format!("{verb} {}", label(&entity)))
        .await?;
    Ok(Json(entity))
}

pub(crate) async fn delete_entity<E: Entity>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    id_or_name: &str,
) -> ApiResult<StatusCode> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let cp_id = write.control_plane.id;
    let entity: E = find_entity(&write.txn, cp_id, id_or_name).await?;
    for (child_kind, _, target) in REFERENCES {
        if *target != E::KIND {
            continue;
        }
        let children = entities::Entity::find()
            .filter(entities::Column::ControlPlaneId.eq(cp_id))
            .filter(entities::Column::Kind.eq(*child_kind))
            .filter(entities::Column::ParentId.eq(entity.id()))
            .count(&write.txn)
            .await?;
        if children > 0 {
            return Err(ApiError::field(
                "@entity",
                format!(
                    "an existing '{child_kind}' entity references this '{}' entity; delete or move its {children} {child_kind} first",
                    E::KIND
                ),
            ));
        }
    }
    entities::Entity::delete_by_id(entity.id())
        .exec(&write.txn)
        .await?;
    write
        .commit(state, &auth.actor(), &format!("delete {}", label(&entity)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- typed handlers -------------------------------------------------------------------------

type CpPath = Path<String>;
type CpItemPath = Path<(String, String)>;

/// List services.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Service], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_services(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Service>(&s, &auth, &cp, q, None).await?,
    ))
}

/// Create a service. `url` is shorthand for protocol, host, port and path.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/services", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Service,
    responses((status = 201, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_service(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Service>(&s, &auth, &cp, input, None).await
}

/// One service, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody)))]
pub async fn get_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Json<Service>> {
    get_entity(&s, &auth, &cp, &id).await
}

/// Change some fields of a service.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Service,
    responses((status = 200, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Json<Service>> {
    update_entity(&s, &auth, &cp, &id, input).await
}

/// Create or replace a service by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Service,
    responses((status = 200, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Json<Service>> {
    upsert_entity(&s, &auth, &cp, &id, input).await
}

/// Delete a service that no route uses.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody, description = "Routes still use it"), (status = 404, body = ErrorBody)))]
pub async fn delete_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Service>(&s, &auth, &cp, &id).await
}

/// List routes.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Route], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_routes(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(list_entities::<Route>(&s, &auth, &cp, q, None).await?))
}

/// Create a route; `service` is `{"id": …}` or `{"name": …}`.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Route,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_route(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Route>(&s, &auth, &cp, input, None).await
}

/// One route, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Json<Route>> {
    get_entity(&s, &auth, &cp, &id).await
}

/// Change some fields of a route.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    request_body = Route,
    responses((status = 200, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Json<Route>> {
    update_entity(&s, &auth, &cp, &id, input).await
}

/// Create or replace a route by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    request_body = Route,
    responses((status = 200, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Json<Route>> {
    upsert_entity(&s, &auth, &cp, &id, input).await
}

/// Delete a route.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Route>(&s, &auth, &cp, &id).await
}

/// List the routes of one service.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services/{service}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name"), PageQuery),
    responses((status = 200, description = "`{data: [Route], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_service_routes(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, service)): CpItemPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Route>(&s, &auth, &cp, q, Some(&service)).await?,
    ))
}

/// Create a route of this service.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/services/{service}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Route,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_service_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, service)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Route>(&s, &auth, &cp, input, Some(&service)).await
}
