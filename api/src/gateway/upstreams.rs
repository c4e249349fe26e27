//! Upstreams and their targets (`/upstreams/{u}/targets`, a target addressed by id or by its
//! `host:port`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;
use tollgate_model::{Target, Upstream};

use super::{
    create_entity, delete_entity, get_entity, list_entities, update_entity, upsert_entity,
    CpItemPath, CpPath, Shown,
};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

type NestedItemPath = Path<(String, String, String)>;

/// List upstreams.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/upstreams", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Upstream], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_upstreams(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Upstream>(&s, &auth, &cp, None, q).await?,
    ))
}

/// Create an upstream. Its `name` is the host a service sets to be balanced over its targets.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/upstreams", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Upstream,
    responses((status = 201, body = Upstream), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_upstream(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Upstream>(&s, &auth, &cp, None, input).await
}

/// One upstream, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    responses((status = 200, body = Upstream), (status = 404, body = ErrorBody)))]
pub async fn get_upstream(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Shown<Upstream>> {
    get_entity(&s, &auth, &cp, None, &id).await
}

/// Change some fields of an upstream.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    request_body = Upstream,
    responses((status = 200, body = Upstream), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_upstream(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Upstream>> {
    update_entity(&s, &auth, &cp, None, &id, input).await
}

/// Create or replace an upstream by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    request_body = Upstream,
    responses((status = 200, body = Upstream), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_upstream(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Upstream>> {
    upsert_entity(&s, &auth, &cp, None, &id, input).await
}

/// Delete an upstream and, as Kong does, its targets.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}", tag = "upstreams",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    responses((status = 204, description = "Deleted, with its targets"), (status = 404, body = ErrorBody)))]
pub async fn delete_upstream(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Upstream>(&s, &auth, &cp, None, &id).await
}

/// List the targets of an upstream.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name"), PageQuery),
    responses((status = 200, description = "`{data: [Target], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_upstream_targets(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream)): CpItemPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Target>(&s, &auth, &cp, Some(&upstream), q).await?,
    ))
}

/// Add a target (`host:port`; the port defaults to 8000) to an upstream. A target is unique per
/// upstream: a second one with the same `host:port` is 409.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name")),
    request_body = Target,
    responses((status = 201, body = Target), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The upstream already has this target")))]
pub async fn create_upstream_target(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Target>(&s, &auth, &cp, Some(&upstream), input).await
}

/// One target of an upstream, by id or by `host:port`.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets/{target}", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name"),
           ("target" = String, Path, description = "Target id or `host:port`")),
    responses((status = 200, body = Target), (status = 404, body = ErrorBody)))]
pub async fn get_upstream_target(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream, target)): NestedItemPath,
) -> ApiResult<Shown<Target>> {
    get_entity(&s, &auth, &cp, Some(&upstream), &target).await
}

/// Change some fields of a target.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets/{target}", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name"),
           ("target" = String, Path, description = "Target id or `host:port`")),
    request_body = Target,
    responses((status = 200, body = Target), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_upstream_target(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream, target)): NestedItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Target>> {
    update_entity(&s, &auth, &cp, Some(&upstream), &target, input).await
}

/// Create or replace a target of an upstream by id or `host:port`.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets/{target}", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name"),
           ("target" = String, Path, description = "Target id or `host:port`")),
    request_body = Target,
    responses((status = 200, body = Target), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upsert_upstream_target(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream, target)): NestedItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Target>> {
    upsert_entity(&s, &auth, &cp, Some(&upstream), &target, input).await
}

/// Remove a target from an upstream, by id or `host:port`.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/upstreams/{upstream}/targets/{target}", tag = "targets",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("upstream" = String, Path, description = "Upstream id or name"),
           ("target" = String, Path, description = "Target id or `host:port`")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_upstream_target(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, upstream, target)): NestedItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Target>(&s, &auth, &cp, Some(&upstream), &target).await
}
