//! Sign-up, log-in, log-out, the current user, and personal access tokens.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::{AppendHeaders, IntoResponse};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit;
use crate::auth::{
    hash_password, random_secret, session_cookie, sha256_hex, start_session, verify_password, Auth,
    Credential, Role, MIN_PASSWORD_LEN, TOKEN_PREFIX,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::state::AppState;
use crate::store::{api_tokens, memberships, organizations, users};
use tollgate_model::ValidationError;

const LOGIN_ATTEMPTS: u64 = 10;
const SIGNUP_ATTEMPTS: u64 = 100;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    /// The name of the new organization.
    pub organization: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserView,
    pub organization: OrganizationView,
    pub role: Role,
}

/// Trims and lowercases an email, recording a field error when it is not one.
pub(crate) fn normalize_email(email: &str, errors: &mut ValidationError) -> String {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !email.contains(char::is_whitespace)
        });
    if !valid {
        errors.add("email", "expected an email address like name@example.com");
    }
    email
}

async fn me_response(state: &AppState, auth: &Auth) -> ApiResult<MeResponse> {
    let org = organizations::Entity::find_by_id(auth.organization_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(MeResponse {
        user: UserView {
            id: auth.user_id,
            email: auth.email.clone(),
        },
        organization: OrganizationView {
            id: org.id,
            name: org.name,
        },
        role: auth.role,
    })
}

/// Create an account and its organization, and log in.
#[utoipa::path(post, path = "/api/v1/signup", tag = "accounts", request_body = SignupRequest,
    responses((status = 201, body = MeResponse, description = "Signed up; the session cookie is set"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "Email already registered"),
              (status = 429, body = ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SignupRequest>,
) -> ApiResult<impl IntoResponse> {
    let (cookie, body) = sign_up(&state, req).await?;
    Ok((
        StatusCode::CREATED,
        AppendHeaders([(SET_COOKIE, cookie)]),
        Json(body),
    ))
}

/// Creates the account, organization and owner membership and starts a session; returns the
/// `Set-Cookie` value and who signed up. Shared by the API and the console's form.
pub async fn sign_up(state: &AppState, req: SignupRequest) -> ApiResult<(String, MeResponse)> {
    if state
        .ephemeral
        .count_attempt("attempts:signup", ATTEMPT_WINDOW)
        .await?
        > SIGNUP_ATTEMPTS
    {
        return Err(ApiError::TooManyRequests);
    }
    let mut errors = ValidationError::new();
    let email = normalize_email(&req.email, &mut errors);
    if req.password.chars().count() < MIN_PASSWORD_LEN {
        errors.add(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        );
    } else if req.password.len() > 1024 {
        errors.add("password", "must be at most 1024 bytes");
    }
    let organization = req.organization.trim().to_string();
    if organization.is_empty() || organization.chars().count() > 100 {
        errors.add("organization", "must be 1 to 100 characters");
    }
    errors.into_result()?;

    let password_hash = hash_password(req.password).await?;
    let now = Utc::now();
    let user_id = Uuid::now_v7();
    let org_id = Uuid::now_v7();
    let txn = state.db.begin().await?;
    let taken = users::Entity::find()
        .filter(users::Column::Email.eq(&email))
        .one(&txn)
        .await?
        .is_some();
    if taken {
        return Err(ApiError::conflict(
            "email",
            "an account with this email already exists; log in instead",
        ));
    }
    organizations::ActiveModel {
        id: Set(org_id),
        name: Set(organization.clone()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let inserted = users::ActiveModel {
        id: Set(user_id),
        email: Set(email.clone()),
        password_hash: Set(password_hash),
        created_at: Set(now),
    }
    .insert(&txn)
    .await;
    if let Err(e) = inserted {
        // Lost a race with a concurrent sign-up of the same email.
        return Err(match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => ApiError::conflict(
                "email",
                "an account with this email already exists; log in instead",
            ),
            _ => e.into(),
        });
    }
    memberships::ActiveModel {
        organization_id: Set(org_id),
        user_id: Set(user_id),
        role: Set(Role::Owner.as_str().into()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        org_id,
        &email,
        "signup",
        &email,
        serde_json::json!({}),
    )
    .await?;
    txn.commit().await?;

    let cookie = start_session(state, user_id, org_id).await?;
    let body = MeResponse {
        user: UserView { id: user_id, email },
        organization: OrganizationView {
            id: org_id,
            name: organization,
        },
        role: Role::Owner,
    };
    Ok((cookie, body))
}

/// Log in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody, description = "Wrong email or password"),
              (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let (cookie, body) = log_in(&state, req).await?;
    Ok((AppendHeaders([(SET_COOKIE, cookie)]), Json(body)))
}

/// Checks the password and starts a session; returns the `Set-Cookie` value and who logged in.
/// Shared by the API and the console's form.
pub async fn log_in(state: &AppState, req: LoginRequest) -> ApiResult<(String, MeResponse)> {
    let email = req.email.trim().to_ascii_lowercase();
    let attempts = state
        .ephemeral
        .count_attempt(
            &format!("attempts:login:{}", sha256_hex(&email)),
            ATTEMPT_WINDOW,
        )
        .await?;
    if attempts > LOGIN_ATTEMPTS {
        return Err(ApiError::TooManyRequests);
    }
    let user = users::Entity::find()
        .filter(users::Column::Email.eq(&email))
        .one(&state.db)
        .await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    if !verify_password(req.password, stored).await? {
        return Err(ApiError::InvalidCredentials);
    }
    let user = user.ok_or(ApiError::InvalidCredentials)?;
    // The organization the user joined first is where a login lands.
    let member = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user.id))
        .order_by_asc(memberships::Column::CreatedAt)
        .one(&state.db)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let cookie = start_session(state, user.id, member.organization_id).await?;
    let auth = Auth {
        user_id: user.id,
        email: user.email,
        organization_id: member.organization_id,
        role: Role::parse(&member.role).ok_or_else(|| ApiError::internal("unknown role"))?,
        credential: Credential::Session {
            session_key: String::new(),
        },
    };
    let body = me_response(state, &auth).await?;
    Ok((cookie, body))
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/logout", tag = "accounts",
    responses((status = 204, description = "Logged out; the cookie is cleared"), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<impl IntoResponse> {
    if let Credential::Session { session_key } = &auth.credential {
        state.ephemeral.delete(session_key).await?;
    }
    let cleared = session_cookie("", Duration::ZERO, state.settings.secure_cookies);
    Ok((
        StatusCode::NO_CONTENT,
        AppendHeaders([(SET_COOKIE, cleared)]),
    ))
}

/// The caller, their organization and role.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<MeResponse>> {
    Ok(Json(me_response(&state, &auth).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: Uuid,
    pub name: String,
    /// Shown once; only its digest is stored.
    pub token: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<TokenView>,
}

/// Create a personal access token. The token is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> ApiResult<impl IntoResponse> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field("name", "must be 1 to 100 characters"));
    }
    let token = format!("{TOKEN_PREFIX}{}", random_secret());
    let now = Utc::now();
    let id = Uuid::now_v7();
    let txn = state.db.begin().await?;
    api_tokens::ActiveModel {
        id: Set(id),
        organization_id: Set(auth.organization_id),
        user_id: Set(auth.user_id),
        name: Set(name.clone()),
        token_hash: Set(sha256_hex(&token)),
        created_at: Set(now),
        last_used_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        auth.organization_id,
        &auth.actor(),
        "token.create",
        &name,
        serde_json::json!({ "token_id": id }),
    )
    .await?;
    txn.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id,
            name,
            token,
            created_at: now,
        }),
    ))
}

/// The caller's tokens in this organization (never the tokens themselves).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<TokenList>> {
    let tokens = api_tokens::Entity::find()
        .filter(api_tokens::Column::OrganizationId.eq(auth.organization_id))
        .filter(api_tokens::Column::UserId.eq(auth.user_id))
        .order_by_asc(api_tokens::Column::Id)
        .all(&state.db)
        .await?;
    let data = tokens
        .into_iter()
        .map(|t| TokenView {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        })
        .collect();
    Ok(Json(TokenList { data }))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts",
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let txn = state.db.begin().await?;
    let token = api_tokens::Entity::find_by_id(id)
        .filter(api_tokens::Column::OrganizationId.eq(auth.organization_id))
        .filter(api_tokens::Column::UserId.eq(auth.user_id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    api_tokens::Entity::delete_by_id(token.id)
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        auth.organization_id,
        &auth.actor(),
        "token.revoke",
        &token.name,
        serde_json::json!({ "token_id": token.id }),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
