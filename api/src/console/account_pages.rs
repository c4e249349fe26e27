//! API tokens, members, invitations and accepting an invitation.

use std::collections::BTreeMap;

use axum::body::to_bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use tollgate_console::forms::FormState;
use tollgate_console::layout::Section;
use tollgate_console::pages::account::{
    confirm_account_page, invite_page, members_page, tokens_page, InvitationRow, MemberRow,
    ShownOnce, TokenRow,
};

use super::{done, error_page, fields, flash, or_page, refused, CheckedForm, ConsoleUser};
use crate::accounts::{create_token, delete_token, list_tokens, CreateTokenRequest};
use crate::assets::ConsoleBundle;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;
use crate::members::{
    accept_invitation, create_invitation, list_invitations, list_members, remove_member,
    revoke_invitation, update_member, AcceptInvitation, CreateInvitation, UpdateMember,
};
use crate::state::AppState;

const TIME: &str = "%Y-%m-%d %H:%M UTC";

// ---- tokens ---------------------------------------------------------------------------------

async fn render_tokens(
    state: &AppState,
    user: &ConsoleUser,
    created: Option<ShownOnce>,
    form: &FormState,
    flash: Option<tollgate_console::layout::Flash>,
) -> ApiResult<String> {
    let tokens = list_tokens(State(state.clone()), user.auth.clone())
        .await?
        .0;
    let rows: Vec<TokenRow> = tokens
        .data
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            name: t.name,
            created_at: t.created_at.format(TIME).to_string(),
            last_used_at: t
                .last_used_at
                .map_or_else(|| "never".to_string(), |t| t.format(TIME).to_string()),
        })
        .collect();
    Ok(tokens_page(
        &user.viewer,
        &rows,
        created,
        form,
        flash,
        user.bundle,
    ))
}

pub async fn tokens(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    or_page(
        &state,
        async {
            Ok(Html(
                render_tokens(&state, &user, None, &FormState::default(), flash(&query)).await?,
            )
            .into_response())
        }
        .await,
    )
}

/// The new token is shown in this response only (it is never stored), so no redirect.
pub async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let request = CreateTokenRequest {
                name: fields.get("name").cloned().unwrap_or_default(),
            };
            match create_token(State(state.clone()), user.auth.clone(), JsonBody(request)).await {
                Ok(response) => {
                    let created: serde_json::Value = json_body(response.into_response()).await?;
                    let shown = ShownOnce {
                        label: format!("Token {}", created["name"].as_str().unwrap_or_default()),
                        secret: created["token"].as_str().unwrap_or_default().to_string(),
                    };
                    let html =
                        render_tokens(&state, &user, Some(shown), &FormState::default(), None)
                            .await?;
                    Ok((StatusCode::CREATED, Html(html)).into_response())
                }
                Err(e) => {
                    let form = refused(&fields, e)?;
                    Ok((
                        StatusCode::BAD_REQUEST,
                        Html(render_tokens(&state, &user, None, &form, None).await?),
                    )
                        .into_response())
                }
            }
        }
        .await,
    )
}

pub async fn revoke(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    if let Some(question) = unconfirmed(
        &user,
        &fields,
        Section::Tokens,
        "Revoke this token? Scripts using it stop working.",
        &format!("/tokens/{id}/revoke"),
        "Yes, revoke",
        "/tokens",
    ) {
        return question;
    }
    or_page(
        &state,
        async {
            delete_token(State(state.clone()), user.auth.clone(), Path(id)).await?;
            Ok(done("/tokens", "Token revoked."))
        }
        .await,
    )
}

/// Reads a handler's JSON response body (handlers shared with the API answer in JSON).
async fn json_body(response: Response) -> ApiResult<serde_json::Value> {
    let bytes = to_bytes(response.into_body(), crate::MAX_BODY_BYTES)
        .await
        .map_err(ApiError::internal)?;
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

// ---- members --------------------------------------------------------------------------------

async fn render_members(
    state: &AppState,
    user: &ConsoleUser,
    invited: Option<ShownOnce>,
    form: &FormState,
    flash: Option<tollgate_console::layout::Flash>,
) -> ApiResult<String> {
    let members = list_members(State(state.clone()), user.auth.clone())
        .await?
        .0;
    let members: Vec<MemberRow> = members
        .data
        .into_iter()
        .map(|m| MemberRow {
            user_id: m.user_id.to_string(),
            email: m.email,
            role: m.role.as_str().to_string(),
            joined_at: m.joined_at.format(TIME).to_string(),
        })
        .collect();
    let invitations = list_invitations(State(state.clone()), user.auth.clone())
        .await?
        .0;
    let invitations: Vec<InvitationRow> = invitations
        .data
        .into_iter()
        .map(|i| InvitationRow {
            id: i.id.to_string(),
            email: i.email,
            role: i.role.as_str().to_string(),
            invited_by: i.invited_by,
            expires_at: i.expires_at.format(TIME).to_string(),
        })
        .collect();
    Ok(members_page(
        &user.viewer,
        &members,
        &invitations,
        invited,
        form,
        flash,
        user.bundle,
    ))
}

pub async fn members(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    or_page(
        &state,
        async {
            Ok(Html(
                render_members(&state, &user, None, &FormState::default(), flash(&query)).await?,
            )
            .into_response())
        }
        .await,
    )
}

fn role_of(fields: &BTreeMap<String, String>) -> ApiResult<Role> {
    let role = fields.get("role").map(String::as_str).unwrap_or_default();
    Role::parse(role)
        .ok_or_else(|| ApiError::field("role", "expected one of: owner, admin, member, viewer"))
}

/// The invitation link is shown in this response only.
pub async fn invite(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    uri: Uri,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let created = match role_of(&fields) {
                Ok(role) => {
                    let request = CreateInvitation {
                        email: fields.get("email").cloned().unwrap_or_default(),
                        role,
                    };
                    create_invitation(
                        State(state.clone()),
                        user.auth.clone(),
                        headers,
                        uri,
                        JsonBody(request),
                    )
                    .await
                    .map(IntoResponse::into_response)
                }
                Err(e) => Err(e),
            };
            match created {
                Ok(response) => {
                    let created = json_body(response).await?;
                    let shown = ShownOnce {
                        label: format!(
                            "Invitation link for {}",
                            created["email"].as_str().unwrap_or_default()
                        ),
                        secret: created["url"].as_str().unwrap_or_default().to_string(),
                    };
                    let html =
                        render_members(&state, &user, Some(shown), &FormState::default(), None)
                            .await?;
                    Ok((StatusCode::CREATED, Html(html)).into_response())
                }
                Err(e) => {
                    let form = refused(&fields, e)?;
                    Ok((
                        StatusCode::BAD_REQUEST,
                        Html(render_members(&state, &user, None, &form, None).await?),
                    )
                        .into_response())
                }
            }
        }
        .await,
    )
}

pub async fn change_role(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    or_page(
        &state,
        async {
            let role = role_of(&fields)?;
            match update_member(
                State(state.clone()),
                user.auth.clone(),
                Path(id),
                JsonBody(UpdateMember { role }),
            )
            .await
            {
                Ok(member) => Ok(done(
                    "/members",
                    &format!("{} is now {}.", member.0.email, role.as_str()),
                )),
                Err(ApiError::BadRequest(m)) | Err(ApiError::Forbidden(m)) => {
                    Ok(error_flash("/members", &m))
                }
                Err(e) => Err(e),
            }
        }
        .await,
    )
}

pub async fn remove(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    if let Some(question) = unconfirmed(
        &user,
        &fields,
        Section::Members,
        "Remove this member from the organization?",
        &format!("/members/{id}/remove"),
        "Yes, remove",
        "/members",
    ) {
        return question;
    }
    or_page(
        &state,
        async {
            match remove_member(State(state.clone()), user.auth.clone(), Path(id)).await {
                Ok(_) => Ok(done("/members", "Member removed.")),
                Err(ApiError::BadRequest(m)) | Err(ApiError::Forbidden(m)) => {
                    Ok(error_flash("/members", &m))
                }
                Err(e) => Err(e),
            }
        }
        .await,
    )
}

pub async fn revoke_invite(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    if let Some(question) = unconfirmed(
        &user,
        &fields,
        Section::Members,
        "Revoke this invitation?",
        &format!("/invitations/{id}/revoke"),
        "Yes, revoke",
        "/members",
    ) {
        return question;
    }
    or_page(
        &state,
        async {
            revoke_invitation(State(state.clone()), user.auth.clone(), Path(id)).await?;
            Ok(done("/members", "Invitation revoked."))
        }
        .await,
    )
}

/// The confirmation page, unless the form says `confirmed=yes`.
fn unconfirmed(
    user: &ConsoleUser,
    fields: &BTreeMap<String, String>,
    section: Section,
    question: &str,
    action: &str,
    confirm_label: &str,
    cancel: &str,
) -> Option<Response> {
    if fields.get("confirmed").map(String::as_str) == Some("yes") {
        return None;
    }
    let html = confirm_account_page(
        &user.viewer,
        section,
        question,
        action,
        confirm_label,
        cancel,
        user.bundle,
    );
    Some(Html(html).into_response())
}

/// A refusal that is not about a field (the last owner, a role one may not grant).
fn error_flash(to: &str, message: &str) -> Response {
    Redirect::to(&format!(
        "{to}?error={}",
        tollgate_console::pages::auth::encode(message)
    ))
    .into_response()
}

// ---- accepting an invitation ------------------------------------------------------------------

pub async fn invite_form(bundle: ConsoleBundle, Path(token): Path<String>) -> Html<String> {
    Html(invite_page(&token, &FormState::default(), bundle.served()))
}

pub async fn accept(
    State(state): State<AppState>,
    bundle: ConsoleBundle,
    Path(token): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = fields(pairs);
    let request = AcceptInvitation {
        token: token.clone(),
        password: fields.get("password").cloned().unwrap_or_default(),
    };
    match accept_invitation(State(state.clone()), JsonBody(request)).await {
        Ok(response) => {
            let response = response.into_response();
            let cookie = response.headers().get(SET_COOKIE).cloned();
            match cookie {
                Some(cookie) => {
                    (AppendHeaders([(SET_COOKIE, cookie)]), Redirect::to("/")).into_response()
                }
                None => error_page(&state, ApiError::internal("accepting gave no session")),
            }
        }
        Err(e) => {
            let e = match e {
                ApiError::InvalidCredentials => {
                    ApiError::field("password", "That is not this account's password.")
                }
                ApiError::NotFound => ApiError::BadRequest(
                    "This invitation is unknown, used or expired. Ask for a new one.".into(),
                ),
                ApiError::TooManyRequests => {
                    ApiError::BadRequest("Too many attempts; wait a minute and try again.".into())
                }
                other => other,
            };
            match refused(&fields, e) {
                Ok(form) => (
                    StatusCode::BAD_REQUEST,
                    Html(invite_page(&token, &form, bundle.served())),
                )
                    .into_response(),
                Err(e) => error_page(&state, e),
            }
        }
    }
}
