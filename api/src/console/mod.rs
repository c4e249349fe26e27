//! The console's server side: loads what a page shows, renders it with `tollgate-console`, and
//! handles its forms (CSRF-checked, validated by the same code as the API; errors are shown beside
//! the fields, success redirects). Every page works without JavaScript.

mod account_pages;
mod auth_pages;
mod plane_pages;
mod traffic_pages;
mod usage_pages;

use std::collections::BTreeMap;

use axum::extract::{Form, FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use sea_orm::EntityTrait;
use tollgate_console::forms::FormState;
use tollgate_console::layout::{Flash, Viewer};

use crate::auth::{sha256_hex, Auth, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::organizations;

pub fn routes() -> Router<AppState> {
    use plane_pages::{certificate_pages, upstream_pages};

    Router::new()
        .route(
            "/login",
            get(auth_pages::login_form).post(auth_pages::login_submit),
        )
        .route(
            "/signup",
            get(auth_pages::signup_form).post(auth_pages::signup_submit),
        )
        .route("/logout", post(auth_pages::logout))
        .route("/", get(plane_pages::overview))
        .route("/control-planes", post(plane_pages::create_plane))
        .route("/control-planes/{cp}", get(plane_pages::plane_home))
        .route(
            "/control-planes/{cp}/services",
            get(plane_pages::services).post(plane_pages::create_service),
        )
        .route(
            "/control-planes/{cp}/services/{service}",
            get(plane_pages::service).post(plane_pages::update_service),
        )
        .route(
            "/control-planes/{cp}/services/{service}/delete",
            post(plane_pages::delete_service),
        )
        .route(
            "/control-planes/{cp}/routes",
            get(plane_pages::routes).post(plane_pages::create_route),
        )
        .route(
            "/control-planes/{cp}/routes/{route}",
            get(plane_pages::route).post(plane_pages::update_route),
        )
        .route(
            "/control-planes/{cp}/routes/{route}/delete",
            post(plane_pages::delete_route),
        )
        .route(
            "/control-planes/{cp}/upstreams",
            get(upstream_pages::upstreams).post(upstream_pages::create_upstream),
        )
        .route(
            "/control-planes/{cp}/upstreams/{upstream}",
            get(upstream_pages::upstream),
        )
        .route(
            "/control-planes/{cp}/upstreams/{upstream}/settings",
            post(upstream_pages::update_settings),
        )
        .route(
            "/control-planes/{cp}/upstreams/{upstream}/targets",
            post(upstream_pages::add_target),
        )
        .route(
            "/control-planes/{cp}/upstreams/{upstream}/targets/{target}/delete",
            post(upstream_pages::delete_target),
        )
        .route(
            "/control-planes/{cp}/upstreams/{upstream}/delete",
            post(upstream_pages::delete_upstream),
        )
        .route(
            "/control-planes/{cp}/certificates",
            get(certificate_pages::certificates).post(certificate_pages::create_certificate),
        )
        .route(
            "/control-planes/{cp}/certificates/{certificate}",
            get(certificate_pages::certificate),
        )
        .route(
            "/control-planes/{cp}/certificates/{certificate}/snis",
            post(certificate_pages::add_sni),
        )
        .route(
            "/control-planes/{cp}/certificates/{certificate}/snis/{sni}/delete",
            post(certificate_pages::delete_sni),
        )
        .route(
            "/control-planes/{cp}/certificates/{certificate}/delete",
            post(certificate_pages::delete_certificate),
        )
        .route("/control-planes/{cp}/nodes", get(plane_pages::nodes))
        .route("/traffic", get(traffic_pages::traffic))
        .route(
            "/control-planes/{cp}/traffic",
            get(traffic_pages::plane_traffic),
        )
        .route("/usage", get(usage_pages::usage))
        .route(
            "/tokens",
            get(account_pages::tokens).post(account_pages::create),
        )
        .route("/tokens/{id}/revoke", post(account_pages::revoke))
        .route("/members", get(account_pages::members))
        .route("/members/{id}/role", post(account_pages::change_role))
        .route("/members/{id}/remove", post(account_pages::remove))
        .route("/invitations", post(account_pages::invite))
        .route(
            "/invitations/{id}/revoke",
            post(account_pages::revoke_invite),
        )
        .route(
            "/invite/{token}",
            get(account_pages::invite_form).post(account_pages::accept),
        )
        .route("/control-planes/{cp}/history", get(plane_pages::history))
        .route(
            "/control-planes/{cp}/history/{version}/restore",
            post(plane_pages::restore),
        )
}

/// A signed-in console user: the API's `Auth` from the session cookie, plus what the frame shows.
pub struct ConsoleUser {
    pub auth: Auth,
    pub viewer: Viewer,
    /// Whether pages link the islands bundle.
    pub bundle: bool,
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.to_string())
            .unwrap_or_else(|| parts.uri.to_string());
        let to_login = || {
            let next = if path == "/" {
                String::new()
            } else {
                format!("?next={}", tollgate_console::pages::auth::encode(&path))
            };
            Redirect::to(&format!("/login{next}")).into_response()
        };
        let Some(session_id) = session_id(parts) else {
            return Err(to_login());
        };
        let auth = match Auth::from_request_parts(parts, state).await {
            Ok(auth) => auth,
            Err(ApiError::Unauthorized) => return Err(to_login()),
            Err(e) => return Err(error_page(state, e)),
        };
        let organization = organizations::Entity::find_by_id(auth.organization_id)
            .one(&state.db)
            .await
            .map_err(|e| error_page(state, e.into()))?
            .map(|o| o.name)
            .unwrap_or_default();
        let viewer = Viewer {
            email: auth.email.clone(),
            organization,
            role: auth.role.as_str().to_string(),
            csrf: csrf_token(&session_id),
        };
        let bundle = crate::assets::ConsoleBundle::from_request_parts(parts, state)
            .await
            .map(|b| b.served())
            .unwrap_or(false);
        Ok(ConsoleUser {
            auth,
            viewer,
            bundle,
        })
    }
}

fn session_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The form token: derived from the secret session id, so another site cannot know it.
fn csrf_token(session_id: &str) -> String {
    sha256_hex(&format!("csrf:{session_id}"))
}

/// Submitted form fields (the last value wins for repeated names).
pub type Fields = BTreeMap<String, String>;

pub fn fields(pairs: Vec<(String, String)>) -> Fields {
    pairs.into_iter().collect()
}

/// A console form's fields, once its CSRF token proved it came from this session's own page;
/// otherwise the request is refused with a page saying so, before any handler runs.
pub struct CheckedForm(pub Fields);

impl FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let expected = session_id(&parts).map(|id| csrf_token(&id));
        let bundle = crate::assets::ConsoleBundle::from_request_parts(&mut parts, state)
            .await
            .map(|b| b.served())
            .unwrap_or(false);
        let Form(pairs) =
            Form::<Vec<(String, String)>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        let fields = fields(pairs);
        if expected.is_some() && fields.get("csrf") == expected.as_ref() {
            return Ok(CheckedForm(fields));
        }
        let html = tollgate_console::pages::auth::notice_page(
            "Form expired",
            "This form has expired or came from another site. Go back, reload the page and try again.",
            bundle,
        );
        Err((StatusCode::FORBIDDEN, Html(html)).into_response())
    }
}

/// A form's state after the API refused it: values as typed, errors by field.
fn refused(fields: &Fields, error: ApiError) -> Result<FormState, ApiError> {
    let (errors, message) = match error {
        ApiError::Validation(v) => (v.fields, None),
        ApiError::Unique { fields, .. } | ApiError::Conflict { fields, .. } => (fields, None),
        ApiError::Forbidden(m) | ApiError::BadRequest(m) | ApiError::Unavailable(m) => {
            (BTreeMap::new(), Some(m))
        }
        other => return Err(other),
    };
    let mut values = fields.clone();
    values.remove("csrf");
    values.remove("password");
    Ok(FormState {
        values,
        errors,
        message,
    })
}

/// A flash message from `?done=` (or `?error=`) after a redirect.
fn flash(query: &BTreeMap<String, String>) -> Option<Flash> {
    let done = query.get("done").map(|m| Flash {
        ok: true,
        message: m.clone(),
    });
    done.or_else(|| {
        query.get("error").map(|m| Flash {
            ok: false,
            message: m.clone(),
        })
    })
}

fn done(to: &str, message: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!(
        "{to}{sep}done={}",
        tollgate_console::pages::auth::encode(message)
    ))
    .into_response()
}

/// A page handler's result, its errors as pages.
fn or_page(state: &AppState, result: crate::error::ApiResult<Response>) -> Response {
    result.unwrap_or_else(|e| error_page(state, e))
}

/// Errors that are not about a form field: 404 and 403 as pages, the rest as the API's answer.
fn error_page(_state: &AppState, error: ApiError) -> Response {
    let (status, title, message) = match &error {
        ApiError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here, or it belongs to another organization.".to_string(),
        ),
        ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m.clone()),
        _ => return error.into_response(),
    };
    let html = tollgate_console::pages::auth::notice_page(title, &message, false);
    (status, Html(html)).into_response()
}
