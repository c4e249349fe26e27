//! Log-in, sign-up and log-out forms.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use tollgate_console::forms::FormState;
use tollgate_console::pages::auth::{login_page, signup_page};

use super::{error_page, fields, refused, CheckedForm, ConsoleUser};
use crate::accounts::{log_in, sign_up, LoginRequest, SignupRequest};
use crate::assets::ConsoleBundle;
use crate::auth::{session_cookie, Credential};
use crate::error::ApiError;
use crate::state::AppState;

/// Only local paths, so a crafted link cannot send a fresh login elsewhere.
fn safe_next(query: &BTreeMap<String, String>) -> String {
    match query.get("next") {
        Some(next) if next.starts_with('/') && !next.starts_with("//") => next.clone(),
        _ => "/".into(),
    }
}

pub async fn login_form(
    bundle: ConsoleBundle,
    Query(query): Query<BTreeMap<String, String>>,
) -> Html<String> {
    Html(login_page(
        &FormState::default(),
        &safe_next(&query),
        bundle.served(),
    ))
}

pub async fn login_submit(
    State(state): State<AppState>,
    bundle: ConsoleBundle,
    Query(query): Query<BTreeMap<String, String>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = fields(pairs);
    let next = safe_next(&query);
    let request = LoginRequest {
        email: fields.get("email").cloned().unwrap_or_default(),
        password: fields.get("password").cloned().unwrap_or_default(),
    };
    match log_in(&state, request).await {
        Ok((cookie, _)) => {
            (AppendHeaders([(SET_COOKIE, cookie)]), Redirect::to(&next)).into_response()
        }
        Err(ApiError::InvalidCredentials) => {
            let form = FormState {
                values: BTreeMap::from([(
                    "email".into(),
                    fields.get("email").cloned().unwrap_or_default(),
                )]),
                errors: BTreeMap::from([("password".into(), "Invalid email or password.".into())]),
                message: None,
            };
            (
                StatusCode::UNAUTHORIZED,
                Html(login_page(&form, &next, bundle.served())),
            )
                .into_response()
        }
        Err(ApiError::TooManyRequests) => {
            let form = FormState {
                message: Some("Too many attempts; wait a minute and try again.".into()),
                ..FormState::default()
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                Html(login_page(&form, &next, bundle.served())),
            )
                .into_response()
        }
        Err(e) => error_page(&state, e),
    }
}

pub async fn signup_form(bundle: ConsoleBundle) -> Html<String> {
    Html(signup_page(&FormState::default(), bundle.served()))
}

pub async fn signup_submit(
    State(state): State<AppState>,
    bundle: ConsoleBundle,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = fields(pairs);
    let request = SignupRequest {
        email: fields.get("email").cloned().unwrap_or_default(),
        password: fields.get("password").cloned().unwrap_or_default(),
        organization: fields.get("organization").cloned().unwrap_or_default(),
    };
    match sign_up(&state, request).await {
        Ok((cookie, _)) => {
            (AppendHeaders([(SET_COOKIE, cookie)]), Redirect::to("/")).into_response()
        }
        Err(e) => match refused(&fields, e) {
            Ok(form) => (
                StatusCode::BAD_REQUEST,
                Html(signup_page(&form, bundle.served())),
            )
                .into_response(),
            Err(e) => error_page(&state, e),
        },
    }
}

pub async fn logout(
    State(state): State<AppState>,
    user: ConsoleUser,
    _checked: CheckedForm,
) -> Response {
    if let Credential::Session { session_key } = &user.auth.credential {
        if let Err(e) = state.ephemeral.delete(session_key).await {
            return error_page(&state, e);
        }
    }
    let cleared = session_cookie("", Duration::ZERO, state.settings.secure_cookies);
    (
        AppendHeaders([(SET_COOKIE, cleared)]),
        Redirect::to("/login"),
    )
        .into_response()
}
