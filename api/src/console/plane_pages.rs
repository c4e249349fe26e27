//! The overview and the control plane pages with their forms.

pub mod certificate_pages;
pub mod upstream_pages;

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Map, Value};
use tollgate_console::forms::FormState;
use tollgate_console::layout::Flash;
use tollgate_console::pages::control_plane::{
    confirm_page, history_page, nodes_page, route_page, routes_page, service_page, services_page,
    DiffLine, DiffView, ListPage, NodeRow, PlaneHeader, RouteRow, ServiceRow, Tab, VersionRow,
};
use tollgate_console::pages::overview::{overview_page, ControlPlaneRow};
use tollgate_model::entity::Entity;
use tollgate_model::{Route, Service};

use super::{done, flash, or_page, refused, CheckedForm, ConsoleUser, Fields};
use crate::config::find_control_plane;
use crate::control_planes::{create_control_plane, view, CreateControlPlane};
use crate::error::{ApiError, ApiResult};
use crate::gateway::{
    all_of, create_entity, delete_entity, strip_snapshot_secrets, update_entity, upsert_entity,
    Kind,
};
use crate::nodes::node_views;
use crate::state::AppState;
use crate::store::{config_versions, control_planes};

const PAGE_SIZE: usize = 50;

type QueryMap = Query<BTreeMap<String, String>>;

pub(super) async fn header(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
) -> ApiResult<(control_planes::Model, PlaneHeader)> {
    let model = find_control_plane(&state.db, user.auth.organization_id, cp).await?;
    let shown = view(state, &state.db, model.clone()).await?;
    Ok((
        model,
        PlaneHeader {
            id: shown.id.to_string(),
            name: shown.name,
            proxy_url: shown.proxy_url,
            hostnames: shown.hostnames,
            config_version: shown.config_version,
        },
    ))
}

/// The confirmation page for a destructive form on this control plane, unless the form says
/// `confirmed=yes` (the islands' dialog, or the confirmation page itself, adds it).
#[allow(clippy::too_many_arguments)]
async fn ask_first(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    fields: &Fields,
    tab: Tab,
    question: &str,
    action: &str,
    confirm_label: &str,
    cancel: &str,
) -> ApiResult<Option<Response>> {
    if fields.get("confirmed").map(String::as_str) == Some("yes") {
        return Ok(None);
    }
    let (_, header) = header(state, user, cp).await?;
    let html = confirm_page(
        &user.viewer,
        &header,
        tab,
        question,
        action,
        confirm_label,
        cancel,
        user.bundle,
    );
    Ok(Some(Html(html).into_response()))
}

/// A destructive console form: what [`ask_first`] asks, and where the deletion leads.
struct Deletion<'a> {
    tab: Tab,
    question: &'a str,
    confirm_label: &'a str,
    /// The entity's page: where cancelling goes, and where a refusal is explained.
    page: String,
    /// The form's own address, posted again once confirmed.
    action: String,
    /// Where a done deletion redirects, saying `message`.
    after: String,
    message: &'a str,
}

/// Asks first (see [`ask_first`]); once confirmed, deletes `id` of kind `E` (`parent` for nested
/// paths). A deletion the API refuses — a service that routes use, a certificate a service uses —
/// goes back to the entity's page with the API's reason.
#[allow(clippy::too_many_arguments)]
async fn delete_after_asking<E: Kind>(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    fields: &Fields,
    parent: Option<&str>,
    id: &str,
    deletion: Deletion<'_>,
) -> ApiResult<Response> {
    if let Some(question) = ask_first(
        state,
        user,
        cp,
        fields,
        deletion.tab,
        deletion.question,
        &deletion.action,
        deletion.confirm_label,
        &deletion.page,
    )
    .await?
    {
        return Ok(question);
    }
    match delete_entity::<E>(state, &user.auth, cp, parent, id).await {
        Ok(_) => Ok(done(&deletion.after, deletion.message)),
        Err(ApiError::Validation(v)) => {
            let message = v.fields.into_values().collect::<Vec<_>>().join("; ");
            Ok(Redirect::to(&format!(
                "{}?error={}",
                deletion.page,
                tollgate_console::pages::auth::encode(&message)
            ))
            .into_response())
        }
        Err(e) => Err(e),
    }
}

// ---- overview -------------------------------------------------------------------------------

async fn render_overview(
    state: &AppState,
    user: &ConsoleUser,
    form: &FormState,
    flash: Option<Flash>,
) -> ApiResult<String> {
    let planes = control_planes::Entity::find()
        .filter(control_planes::Column::OrganizationId.eq(user.auth.organization_id))
        .order_by_asc(control_planes::Column::Id)
        .all(&state.db)
        .await?;
    let mut rows = Vec::with_capacity(planes.len());
    for cp in planes {
        let nodes = node_views(&state.db, &cp).await?;
        let mut applied_versions: Vec<i64> = nodes
            .iter()
            .filter(|n| n.status != "offline")
            .map(|n| n.config_version)
            .collect();
        applied_versions.sort_unstable_by(|a, b| b.cmp(a));
        applied_versions.dedup();
        let shown = view(state, &state.db, cp).await?;
        rows.push(ControlPlaneRow {
            id: shown.id.to_string(),
            name: shown.name,
            slug: shown.slug,
            proxy_url: shown.proxy_url,
            config_version: shown.config_version,
            nodes_current: nodes.iter().filter(|n| n.status == "up to date").count(),
            nodes: nodes.len(),
            applied_versions,
        });
    }
    let today = super::usage_pages::requests_today(state, user.auth.organization_id).await;
    Ok(overview_page(
        &user.viewer,
        &rows,
        &today,
        form,
        flash,
        user.bundle,
    ))
}

pub async fn overview(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_overview(&state, &user, &FormState::default(), flash(&query)).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

pub async fn create_plane(
    State(state): State<AppState>,
    user: ConsoleUser,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let request = CreateControlPlane {
        name: fields.get("name").cloned().unwrap_or_default(),
        region: None,
        hostnames: None,
    };
    or_page(
        &state,
        async {
            match create_control_plane(&state, &user.auth, request).await {
                Ok(cp) => Ok(done(
                    &format!("/control-planes/{}/services", cp.id),
                    &format!("Control plane {} created. Add a service next.", cp.name),
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_overview(&state, &user, &form, None).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

pub async fn plane_home(Path(cp): Path<String>) -> Redirect {
    Redirect::to(&format!("/control-planes/{cp}/services"))
}

// ---- lists ----------------------------------------------------------------------------------

fn list_page(query: &BTreeMap<String, String>, total: usize) -> ListPage {
    ListPage {
        name: query.get("name").cloned().unwrap_or_default(),
        tag: query.get("tag").cloned().unwrap_or_default(),
        offset: query
            .get("offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0),
        total,
        size: PAGE_SIZE,
    }
}

/// Filters by name substring and exact tag, then cuts the page out.
fn filter_page<E: Entity>(items: Vec<E>, query: &BTreeMap<String, String>) -> (Vec<E>, ListPage) {
    let name = query
        .get("name")
        .map(|n| n.to_lowercase())
        .unwrap_or_default();
    let tag = query.get("tag").cloned().unwrap_or_default();
    let matching: Vec<E> = items
        .into_iter()
        .filter(|e| name.is_empty() || e.name().is_some_and(|n| n.to_lowercase().contains(&name)))
        .filter(|e| tag.is_empty() || e.tags().contains(&tag))
        .collect();
    let list = list_page(query, matching.len());
    let shown = matching
        .into_iter()
        .skip(list.offset)
        .take(PAGE_SIZE)
        .collect();
    (shown, list)
}

fn service_url(s: &Service) -> String {
    format!(
        "{}://{}:{}{}",
        s.protocol,
        s.host,
        s.port,
        s.path.as_deref().unwrap_or("")
    )
}

fn service_label(s: &Service) -> String {
    s.name.clone().unwrap_or_else(|| s.id.to_string())
}

fn split_list(value: &str, separators: &[char]) -> Vec<String> {
    value
        .split(|c| separators.contains(&c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

// ---- services -------------------------------------------------------------------------------

async fn render_services(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    query: &BTreeMap<String, String>,
    form: &FormState,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let services: Vec<Service> = all_of(&state.db, model.id).await?;
    let (shown, list) = filter_page(services, query);
    let rows: Vec<ServiceRow> = shown
        .iter()
        .map(|s| ServiceRow {
            id: s.id.to_string(),
            name: service_label(s),
            url: service_url(s),
            tags: s.tags.clone(),
            enabled: s.enabled,
        })
        .collect();
    Ok(services_page(
        &user.viewer,
        &header,
        &rows,
        &list,
        form,
        flash(query),
        user.bundle,
    ))
}

pub async fn services(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_services(&state, &user, &cp, &query, &FormState::default()).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

pub async fn create_service(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let mut input = Map::new();
    let name = fields
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if !name.is_empty() {
        input.insert("name".into(), json!(name));
    }
    let url = fields
        .get("url")
        .map(|u| u.trim().to_string())
        .unwrap_or_default();
    input.insert("url".into(), json!(url));
    input.insert(
        "tags".into(),
        json!(split_list(
            fields.get("tags").map_or("", String::as_str),
            &[',']
        )),
    );
    or_page(
        &state,
        async {
            if url.is_empty() {
                let form = refused(
                    &fields,
                    ApiError::field("url", "required: the upstream URL"),
                )?;
                let html = render_services(&state, &user, &cp, &BTreeMap::new(), &form).await?;
                return Ok((StatusCode::BAD_REQUEST, Html(html)).into_response());
            }
            match create_entity::<Service>(&state, &user.auth, &cp, None, Value::Object(input))
                .await
            {
                Ok((_, created)) => Ok(done(
                    &format!("/control-planes/{cp}/services"),
                    &format!(
                        "Service {} created. Add a route to it on the Routes tab.",
                        service_label(&created.0)
                    ),
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_services(&state, &user, &cp, &BTreeMap::new(), &form).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

// ---- routes ---------------------------------------------------------------------------------

/// A curl command that reaches the route through the proxy.
fn curl_for(route: &Route, proxy_url: &str) -> String {
    let path = route
        .paths
        .as_ref()
        .and_then(|p| p.iter().find(|p| p.starts_with('/')))
        .cloned()
        .unwrap_or_else(|| "/".into());
    let mut command = String::from("curl -i");
    if let Some(method) = route.methods.as_ref().and_then(|m| m.first()) {
        if method != "GET" {
            command.push_str(&format!(" -X {method}"));
        }
    }
    if let Some(host) = route
        .hosts
        .as_ref()
        .and_then(|h| h.iter().find(|h| !h.contains('*')))
    {
        command.push_str(&format!(" -H 'Host: {host}'"));
    }
    for (name, values) in route.headers.iter().flatten() {
        if let Some(value) = values.first() {
            command.push_str(&format!(" -H '{name}: {value}'"));
        }
    }
    format!("{command} {proxy_url}{path}")
}

fn route_row(route: &Route, services: &[Service], proxy_url: &str) -> RouteRow {
    let service = route
        .service
        .and_then(|fk| services.iter().find(|s| s.id == fk.id))
        .map(service_label)
        .unwrap_or_else(|| "—".into());
    let join = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(", ")).unwrap_or_default();
    RouteRow {
        id: route.id.to_string(),
        name: route.name.clone().unwrap_or_else(|| route.id.to_string()),
        service,
        protocols: route.protocols.join(", "),
        methods: join(&route.methods),
        hosts: join(&route.hosts),
        paths: join(&route.paths),
        tags: route.tags.clone(),
        curl: curl_for(route, proxy_url),
    }
}

fn service_options(services: &[Service]) -> Vec<(String, String)> {
    services
        .iter()
        .map(|s| (s.id.to_string(), service_label(s)))
        .collect()
}

async fn render_routes(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    query: &BTreeMap<String, String>,
    form: &FormState,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let services: Vec<Service> = all_of(&state.db, model.id).await?;
    let routes: Vec<Route> = all_of(&state.db, model.id).await?;
    let (shown, list) = filter_page(routes, query);
    let rows: Vec<RouteRow> = shown
        .iter()
        .map(|r| route_row(r, &services, &header.proxy_url))
        .collect();
    Ok(routes_page(
        &user.viewer,
        &header,
        &rows,
        &list,
        &service_options(&services),
        form,
        flash(query),
        user.bundle,
    ))
}

pub async fn routes(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_routes(&state, &user, &cp, &query, &FormState::default()).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

/// The route form as the API's JSON: lists one item per line, booleans from checkboxes.
fn route_input(fields: &Fields) -> Result<Value, ApiError> {
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let list = |name: &str, seps: &[char]| {
        let items = split_list(&text(name), seps);
        if items.is_empty() {
            Value::Null
        } else {
            json!(items)
        }
    };
    let checked = |name: &str| json!(fields.get(name).is_some_and(|v| v == "on" || v == "true"));
    let number = |name: &str, default: i64| {
        let raw = text(name);
        if raw.is_empty() {
            json!(default)
        } else {
            raw.parse::<i64>().map_or(json!(raw), |n| json!(n))
        }
    };
    let mut input = Map::new();
    let name = text("name");
    if !name.is_empty() {
        input.insert("name".into(), json!(name));
    }
    let service = text("service");
    input.insert(
        "service".into(),
        if service.is_empty() {
            Value::Null
        } else {
            json!({ "id": service })
        },
    );
    let protocols = split_list(&text("protocols"), &[',', ' ']);
    input.insert(
        "protocols".into(),
        if protocols.is_empty() {
            json!(["http", "https"])
        } else {
            json!(protocols)
        },
    );
    let methods: Vec<String> = split_list(&text("methods"), &[',', ' '])
        .iter()
        .map(|m| m.to_uppercase())
        .collect();
    input.insert(
        "methods".into(),
        if methods.is_empty() {
            Value::Null
        } else {
            json!(methods)
        },
    );
    input.insert("paths".into(), list("paths", &['\n', '\r']));
    input.insert("hosts".into(), list("hosts", &['\n', '\r', ',']));
    input.insert("snis".into(), list("snis", &['\n', '\r', ',']));
    let mut headers = Map::new();
    for line in text("headers")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let Some((header, values)) = line.split_once(':') else {
            return Err(ApiError::field(
                "headers",
                format!("expected 'Name: value' in '{line}'"),
            ));
        };
        headers.insert(header.trim().to_string(), json!(split_list(values, &[','])));
    }
    input.insert(
        "headers".into(),
        if headers.is_empty() {
            Value::Null
        } else {
            Value::Object(headers)
        },
    );
    input.insert(
        "https_redirect_status_code".into(),
        number("https_redirect_status_code", 426),
    );
    input.insert("regex_priority".into(), number("regex_priority", 0));
    let handling = text("path_handling");
    input.insert(
        "path_handling".into(),
        json!(if handling.is_empty() {
            "v0".to_string()
        } else {
            handling
        }),
    );
    for flag in [
        "strip_path",
        "preserve_host",
        "request_buffering",
        "response_buffering",
    ] {
        input.insert(flag.into(), checked(flag));
    }
    input.insert("tags".into(), json!(split_list(&text("tags"), &[','])));
    Ok(Value::Object(input))
}

pub async fn create_route(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let created = match route_input(&fields) {
                Ok(input) => create_entity::<Route>(&state, &user.auth, &cp, None, input)
                    .await
                    .map(|(_, r)| r.0),
                Err(e) => Err(e),
            };
            match created {
                Ok(route) => Ok(done(
                    &format!("/control-planes/{cp}/routes"),
                    &format!(
                        "Route {} created. Edges pick it up within seconds.",
                        route.name.clone().unwrap_or_else(|| route.id.to_string())
                    ),
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_routes(&state, &user, &cp, &BTreeMap::new(), &form).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

/// The route form filled with a stored route.
fn route_form_values(route: &Route) -> FormState {
    let lines = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join("\n")).unwrap_or_default();
    let mut values = BTreeMap::new();
    values.insert("name".into(), route.name.clone().unwrap_or_default());
    values.insert(
        "service".into(),
        route.service.map(|s| s.id.to_string()).unwrap_or_default(),
    );
    values.insert("protocols".into(), route.protocols.join(", "));
    values.insert(
        "methods".into(),
        route
            .methods
            .as_ref()
            .map(|m| m.join(", "))
            .unwrap_or_default(),
    );
    values.insert("paths".into(), lines(&route.paths));
    values.insert("hosts".into(), lines(&route.hosts));
    values.insert("snis".into(), lines(&route.snis));
    let headers = route
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect::<Vec<_>>()
        .join("\n");
    values.insert("headers".into(), headers);
    values.insert(
        "https_redirect_status_code".into(),
        route.https_redirect_status_code.to_string(),
    );
    values.insert("regex_priority".into(), route.regex_priority.to_string());
    values.insert("path_handling".into(), route.path_handling.clone());
    values.insert("tags".into(), route.tags.join(", "));
    for (flag, on) in [
        ("strip_path", route.strip_path),
        ("preserve_host", route.preserve_host),
        ("request_buffering", route.request_buffering),
        ("response_buffering", route.response_buffering),
    ] {
        values.insert(flag.into(), if on { "on" } else { "off" }.into());
    }
    FormState {
        values,
        ..FormState::default()
    }
}

async fn render_route(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    id: &str,
    form: Option<FormState>,
    flash: Option<Flash>,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let services: Vec<Service> = all_of(&state.db, model.id).await?;
    let routes: Vec<Route> = all_of(&state.db, model.id).await?;
    let route = routes
        .iter()
        .find(|r| r.id.to_string() == id || r.name.as_deref() == Some(id))
        .ok_or(ApiError::NotFound)?;
    let form = form.unwrap_or_else(|| route_form_values(route));
    let row = route_row(route, &services, &header.proxy_url);
    Ok(route_page(
        &user.viewer,
        &header,
        &row.id,
        &row.name,
        &row.curl,
        &service_options(&services),
        &form,
        flash,
        user.bundle,
    ))
}

pub async fn route(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_route(&state, &user, &cp, &id, None, flash(&query)).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

pub async fn update_route(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            // The route must exist: PUT would otherwise create one under this id.
            render_route(&state, &user, &cp, &id, None, None).await?;
            let saved = match route_input(&fields) {
                Ok(input) => upsert_entity::<Route>(&state, &user.auth, &cp, None, &id, input)
                    .await
                    .map(|r| r.0),
                Err(e) => Err(e),
            };
            match saved {
                Ok(route) => Ok(done(
                    &format!("/control-planes/{cp}/routes/{}", route.id),
                    "Route saved.",
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_route(&state, &user, &cp, &id, Some(form), None).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

pub async fn delete_route(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/routes/{id}");
    let deletion = Deletion {
        tab: Tab::Routes,
        question: "Delete this route?",
        confirm_label: "Yes, delete",
        action: format!("{page}/delete"),
        after: format!("/control-planes/{cp}/routes"),
        message: "Route deleted.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Route>(&state, &user, &cp, &fields, None, &id, deletion).await,
    )
}

// ---- nodes and history ----------------------------------------------------------------------

pub async fn nodes(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
) -> Response {
    or_page(
        &state,
        async {
            let (model, header) = header(&state, &user, &cp).await?;
            let rows: Vec<NodeRow> = node_views(&state.db, &model)
                .await?
                .into_iter()
                .map(|n| NodeRow {
                    id: n.id.to_string(),
                    hostname: n.hostname,
                    binary_version: n.binary_version,
                    config_version: n.config_version,
                    config_hash: n.config_hash,
                    last_seen: n.last_seen.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    status: n.status,
                })
                .collect();
            Ok(Html(nodes_page(&user.viewer, &header, &rows, user.bundle)).into_response())
        }
        .await,
    )
}

/// The content of a snapshot as comparable lines, without secret fields.
fn snapshot_lines(snapshot: &Value) -> Vec<String> {
    let mut content = json!({
        "hostnames": snapshot.get("hostnames"),
        "services": snapshot.get("services"),
        "routes": snapshot.get("routes"),
        "upstreams": snapshot.get("upstreams"),
        "targets": snapshot.get("targets"),
        "certificates": snapshot.get("certificates"),
        "snis": snapshot.get("snis"),
    });
    strip_snapshot_secrets(&mut content);
    serde_json::to_string_pretty(&content)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn diff_lines(old: &[String], new: &[String]) -> Vec<DiffLine> {
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    similar::capture_diff_slices(similar::Algorithm::Myers, &old, &new)
        .iter()
        .flat_map(|op| op.iter_changes(&old, &new))
        .map(|change| {
            let text = change.value().to_string();
            match change.tag() {
                similar::ChangeTag::Equal => DiffLine::Same(text),
                similar::ChangeTag::Insert => DiffLine::Added(text),
                similar::ChangeTag::Delete => DiffLine::Removed(text),
            }
        })
        .collect()
}

pub async fn history(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            let (model, header) = header(&state, &user, &cp).await?;
            let versions = config_versions::Entity::find()
                .filter(config_versions::Column::ControlPlaneId.eq(model.id))
                .order_by_desc(config_versions::Column::Version)
                .all(&state.db)
                .await?;
            let pick = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
            let diff = match (pick("from"), pick("to")) {
                (Some(from), Some(to)) => {
                    let find = |n: i64| {
                        versions
                            .iter()
                            .find(|v| v.version == n)
                            .ok_or(ApiError::NotFound)
                    };
                    let (a, b) = (find(from)?, find(to)?);
                    Some(DiffView {
                        from,
                        to,
                        lines: diff_lines(
                            &snapshot_lines(&a.snapshot),
                            &snapshot_lines(&b.snapshot),
                        ),
                    })
                }
                _ => None,
            };
            let rows: Vec<VersionRow> = versions
                .iter()
                .map(|v| VersionRow {
                    version: v.version,
                    hash: v.hash.clone(),
                    actor: v.actor.clone(),
                    summary: v.summary.clone(),
                    created_at: v.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                })
                .collect();
            Ok(Html(history_page(
                &user.viewer,
                &header,
                &rows,
                diff,
                flash(&query),
                user.bundle,
            ))
            .into_response())
        }
        .await,
    )
}

pub async fn restore(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, version)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let history = format!("/control-planes/{cp}/history");
            if let Some(question) = ask_first(
                &state,
                &user,
                &cp,
                &fields,
                Tab::History,
                &format!("Make a new version equal to version {version}?"),
                &format!("{history}/{version}/restore"),
                "Yes, restore",
                &history,
            )
            .await?
            {
                return Ok(question);
            }
            let restored = crate::versions::restore(
                State(state.clone()),
                user.auth.clone(),
                Path((cp.clone(), version.clone())),
            )
            .await?;
            Ok(done(
                &history,
                &format!(
                    "Version {} restored as version {}.",
                    version, restored.0.version
                ),
            ))
        }
        .await,
    )
}

// ---- one service ----------------------------------------------------------------------------

fn service_form_values(service: &Service) -> FormState {
    let mut values = BTreeMap::new();
    values.insert("name".into(), service.name.clone().unwrap_or_default());
    values.insert("url".into(), service_url(service));
    values.insert("tags".into(), service.tags.join(", "));
    values.insert("retries".into(), service.retries.to_string());
    values.insert(
        "connect_timeout".into(),
        service.connect_timeout.to_string(),
    );
    values.insert("write_timeout".into(), service.write_timeout.to_string());
    values.insert("read_timeout".into(), service.read_timeout.to_string());
    values.insert(
        "enabled".into(),
        if service.enabled { "on" } else { "off" }.into(),
    );
    FormState {
        values,
        ..FormState::default()
    }
}

async fn render_service(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    id: &str,
    form: Option<FormState>,
    flash: Option<Flash>,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let services: Vec<Service> = all_of(&state.db, model.id).await?;
    let service = services
        .iter()
        .find(|s| s.id.to_string() == id || s.name.as_deref() == Some(id))
        .ok_or(ApiError::NotFound)?;
    let routes: Vec<Route> = all_of(&state.db, model.id).await?;
    let using = routes
        .iter()
        .filter(|r| r.service.is_some_and(|fk| fk.id == service.id))
        .count();
    let form = form.unwrap_or_else(|| service_form_values(service));
    Ok(service_page(
        &user.viewer,
        &header,
        &service.id.to_string(),
        &service_label(service),
        using,
        &form,
        flash,
        user.bundle,
    ))
}

pub async fn service(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_service(&state, &user, &cp, &id, None, flash(&query)).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

/// The service form as a PATCH: fields the form does not show keep their values.
fn service_input(fields: &Fields) -> Value {
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let number = |name: &str| {
        let raw = text(name);
        raw.parse::<i64>().map_or(json!(raw), |n| json!(n))
    };
    let mut input = Map::new();
    let name = text("name");
    input.insert(
        "name".into(),
        if name.is_empty() {
            Value::Null
        } else {
            json!(name)
        },
    );
    input.insert("url".into(), json!(text("url")));
    input.insert("tags".into(), json!(split_list(&text("tags"), &[','])));
    for field in [
        "retries",
        "connect_timeout",
        "write_timeout",
        "read_timeout",
    ] {
        input.insert(field.into(), number(field));
    }
    input.insert(
        "enabled".into(),
        json!(fields.get("enabled").is_some_and(|v| v == "on")),
    );
    Value::Object(input)
}

pub async fn update_service(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            match update_entity::<Service>(
                &state,
                &user.auth,
                &cp,
                None,
                &id,
                service_input(&fields),
            )
            .await
            {
                Ok(saved) => Ok(done(
                    &format!("/control-planes/{cp}/services/{}", saved.0.id),
                    "Service saved.",
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_service(&state, &user, &cp, &id, Some(form), None).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

pub async fn delete_service(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/services/{id}");
    let deletion = Deletion {
        tab: Tab::Services,
        question: "Delete this service?",
        confirm_label: "Yes, delete",
        action: format!("{page}/delete"),
        after: format!("/control-planes/{cp}/services"),
        message: "Service deleted.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Service>(&state, &user, &cp, &fields, None, &id, deletion).await,
    )
}
