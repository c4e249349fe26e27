//! The Upstreams tab and one upstream's page: create upstreams, change their settings, add and
//! remove targets, see the health the online edges report.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Map, Value};
use tollgate_console::forms::FormState;
use tollgate_console::layout::Flash;
use tollgate_console::pages::control_plane::upstreams::{
    upstream_page, upstreams_page, TargetRow, UpstreamRow, SETTINGS_FIELDS,
};
use tollgate_console::pages::control_plane::Tab;
use tollgate_model::{Target, Upstream, ValidationError};

use super::{delete_after_asking, filter_page, header, split_list, Deletion, QueryMap};
use crate::console::{done, flash, or_page, refused, CheckedForm, ConsoleUser, Fields};
use crate::error::{ApiError, ApiResult};
use crate::gateway::health::{targets_of, OnlineReports, TargetHealthView};
use crate::gateway::{all_of, create_entity, update_entity};
use crate::state::AppState;

/// A serde enum's wire name (`HEALTHY`).
fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn target_row(view: TargetHealthView) -> TargetRow {
    TargetRow {
        id: view.id.to_string(),
        target: view.target,
        weight: view.weight,
        health: wire_name(view.health),
        nodes: view
            .nodes
            .into_iter()
            .map(|n| (n.hostname, wire_name(n.health)))
            .collect(),
    }
}

async fn upstream_row(
    state: &AppState,
    cp: uuid::Uuid,
    upstream: &Upstream,
    reports: &OnlineReports,
) -> ApiResult<UpstreamRow> {
    let targets: Vec<Target> = targets_of(&state.db, cp, upstream.id).await?;
    Ok(UpstreamRow {
        id: upstream.id.to_string(),
        name: upstream.name.clone(),
        algorithm: upstream.algorithm.clone(),
        tags: upstream.tags.clone(),
        settings: settings_of(upstream),
        targets: targets
            .into_iter()
            .map(|t| target_row(reports.view(t)))
            .collect(),
    })
}

async fn render_upstreams(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    query: &BTreeMap<String, String>,
    form: &FormState,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let upstreams: Vec<Upstream> = all_of(&state.db, model.id).await?;
    let (shown, list) = filter_page(upstreams, query);
    let reports = OnlineReports::load(&state.db, model.id).await?;
    let mut rows = Vec::with_capacity(shown.len());
    for upstream in &shown {
        rows.push(upstream_row(state, model.id, upstream, &reports).await?);
    }
    Ok(upstreams_page(
        &user.viewer,
        &header,
        &rows,
        reports.node_count(),
        &list,
        form,
        flash(query),
        user.bundle,
    ))
}

pub async fn upstreams(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_upstreams(&state, &user, &cp, &query, &FormState::default()).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

/// The settings form's fields as `upstream` has them.
fn settings_of(upstream: &Upstream) -> BTreeMap<String, String> {
    let Ok(Value::Object(wire)) = serde_json::to_value(upstream) else {
        return BTreeMap::new();
    };
    SETTINGS_FIELDS
        .iter()
        .map(|&name| {
            let value = match (name, wire.get(name)) {
                ("healthchecks", Some(v)) => serde_json::to_string_pretty(v).unwrap_or_default(),
                ("tags", _) => upstream.tags.join(", "),
                (_, Some(Value::String(s))) => s.clone(),
                (_, Some(Value::Number(n))) => n.to_string(),
                _ => String::new(),
            };
            (name.to_string(), value)
        })
        .collect()
}

/// The API input the settings form asks for: empty optional names become `null` (cleared), the
/// cookie path stays as it is when left empty, and `healthchecks` must be JSON.
fn settings_input(fields: &Fields) -> Result<Value, ApiError> {
    let mut input = Map::new();
    for name in [
        "algorithm",
        "hash_on",
        "hash_fallback",
        "hash_on_cookie_path",
    ] {
        let value = text(fields, name);
        if !value.is_empty() {
            input.insert(name.into(), json!(value));
        }
    }
    for name in [
        "hash_on_header",
        "hash_on_cookie",
        "hash_on_query_arg",
        "hash_on_uri_capture",
        "hash_fallback_header",
        "hash_fallback_query_arg",
        "hash_fallback_uri_capture",
        "host_header",
    ] {
        let value = text(fields, name);
        input.insert(
            name.into(),
            if value.is_empty() {
                Value::Null
            } else {
                json!(value)
            },
        );
    }
    let slots = text(fields, "slots");
    if !slots.is_empty() {
        // Not a number: sent as text, so the API names the field.
        input.insert(
            "slots".into(),
            slots.parse::<i64>().map_or(json!(slots), |s| json!(s)),
        );
    }
    let healthchecks = text(fields, "healthchecks");
    if !healthchecks.is_empty() {
        let parsed: Value = serde_json::from_str(&healthchecks)
            .map_err(|e| ValidationError::field("healthchecks", format!("not valid JSON: {e}")))?;
        input.insert("healthchecks".into(), parsed);
    }
    input.insert(
        "tags".into(),
        json!(split_list(&text(fields, "tags"), &[','])),
    );
    Ok(Value::Object(input))
}

fn text(fields: &Fields, name: &str) -> String {
    fields
        .get(name)
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

pub async fn create_upstream(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let mut input = Map::new();
    input.insert("name".into(), json!(text(&fields, "name")));
    let algorithm = text(&fields, "algorithm");
    if !algorithm.is_empty() {
        input.insert("algorithm".into(), json!(algorithm));
    }
    input.insert(
        "tags".into(),
        json!(split_list(&text(&fields, "tags"), &[','])),
    );
    or_page(
        &state,
        async {
            match create_entity::<Upstream>(&state, &user.auth, &cp, None, Value::Object(input))
                .await
            {
                Ok((_, created)) => Ok(done(
                    &format!("/control-planes/{cp}/upstreams/{}", created.0.id),
                    &format!(
                        "Upstream {} created. Add its targets, then set a service's host to {}.",
                        created.0.name, created.0.name
                    ),
                )),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html =
                        render_upstreams(&state, &user, &cp, &BTreeMap::new(), &form).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

/// One upstream's page; `form` is the add-target form's state and `settings` the settings
/// form's.
async fn render_upstream(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    id: &str,
    form: &FormState,
    settings: &FormState,
    flash: Option<Flash>,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let upstreams: Vec<Upstream> = all_of(&state.db, model.id).await?;
    let upstream = upstreams
        .iter()
        .find(|u| u.id.to_string() == id || u.name == id)
        .ok_or(ApiError::NotFound)?;
    let reports = OnlineReports::load(&state.db, model.id).await?;
    let row = upstream_row(state, model.id, upstream, &reports).await?;
    Ok(upstream_page(
        &user.viewer,
        &header,
        &row,
        reports.node_count(),
        form,
        settings,
        flash,
        user.bundle,
    ))
}

pub async fn upstream(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(Html(
                render_upstream(
                    &state,
                    &user,
                    &cp,
                    &id,
                    &FormState::default(),
                    &FormState::default(),
                    flash(&query),
                )
                .await?,
            )
            .into_response())
        }
        .await,
    )
}

/// The upstream's page again with a refused form (`targets` or `settings`) and what was wrong.
async fn refused_page(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    id: &str,
    targets: &FormState,
    settings: &FormState,
) -> ApiResult<Response> {
    let html = render_upstream(state, user, cp, id, targets, settings, None).await?;
    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
}

pub async fn add_target(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let mut input = Map::new();
    input.insert("target".into(), json!(text(&fields, "target")));
    let weight = text(&fields, "weight");
    if !weight.is_empty() {
        // Not a number: sent as text, so the API names the field.
        input.insert(
            "weight".into(),
            weight.parse::<i64>().map_or(json!(weight), |w| json!(w)),
        );
    }
    or_page(
        &state,
        async {
            let page = format!("/control-planes/{cp}/upstreams/{id}");
            match create_entity::<Target>(&state, &user.auth, &cp, Some(&id), Value::Object(input))
                .await
            {
                Ok((_, created)) => Ok(done(&page, &format!("Target {} added.", created.0.target))),
                Err(e) => {
                    let targets = refused(&fields, e)?;
                    refused_page(&state, &user, &cp, &id, &targets, &FormState::default()).await
                }
            }
        }
        .await,
    )
}

pub async fn update_settings(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let page = format!("/control-planes/{cp}/upstreams/{id}");
            let saved = match settings_input(&fields) {
                Ok(input) => {
                    update_entity::<Upstream>(&state, &user.auth, &cp, None, &id, input).await
                }
                Err(e) => Err(e),
            };
            match saved {
                Ok(updated) => Ok(done(
                    &page,
                    &format!("Settings of {} saved.", updated.0.name),
                )),
                Err(e) => {
                    let settings = refused(&fields, e)?;
                    refused_page(&state, &user, &cp, &id, &FormState::default(), &settings).await
                }
            }
        }
        .await,
    )
}

pub async fn delete_target(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id, target)): Path<(String, String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/upstreams/{id}");
    let deletion = Deletion {
        tab: Tab::Upstreams,
        question: "Remove this target?",
        confirm_label: "Yes, remove",
        action: format!("{page}/targets/{target}/delete"),
        after: page.clone(),
        message: "Target removed.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Target>(
            &state,
            &user,
            &cp,
            &fields,
            Some(id.as_str()),
            &target,
            deletion,
        )
        .await,
    )
}

pub async fn delete_upstream(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/upstreams/{id}");
    let deletion = Deletion {
        tab: Tab::Upstreams,
        question: "Delete this upstream and its targets?",
        confirm_label: "Yes, delete",
        action: format!("{page}/delete"),
        after: format!("/control-planes/{cp}/upstreams"),
        message: "Upstream deleted with its targets.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Upstream>(&state, &user, &cp, &fields, None, &id, deletion).await,
    )
}
