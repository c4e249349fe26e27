//! Who is calling: a session cookie from the console or `Authorization: Bearer <token>`, resolved
//! to a user, an organization and a role. Passwords are argon2id; tokens and session ids are
//! random and stored only as SHA-256 digests.

use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use chrono::Utc;
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{api_tokens, memberships, users};

pub const SESSION_COOKIE: &str = "tollgate_session";
pub const TOKEN_PREFIX: &str = "tgp_";
pub const MIN_PASSWORD_LEN: usize = 10;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    Session { session_key: String },
    Token { token_id: Uuid, name: String },
}

/// An authenticated caller; every tenant query is scoped by `organization_id`.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: Uuid,
    pub email: String,
    pub organization_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

impl Auth {
    /// The name written to config versions and the audit log.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Session { .. } => self.email.clone(),
            Credential::Token { name, .. } => format!("{} (token {name})", self.email),
        }
    }

    /// Viewers read; everyone else may change config.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role >= Role::Member {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "your role is viewer: ask an admin for member access to make changes".into(),
            ))
        }
    }
}

/// What a session stores: the user and the organization they act in.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionData {
    pub user_id: Uuid,
    pub organization_id: Uuid,
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A fresh random secret: 32 bytes as hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn session_key(session_id: &str) -> String {
    format!("session:{}", sha256_hex(session_id))
}

/// Hashes a password with argon2id off the async runtime (it is deliberately slow).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Verifies a password; with no stored hash it still spends the same time, so unknown emails and
/// wrong passwords cannot be told apart by timing.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known_user = stored.is_some();
        let dummy;
        let stored = match &stored {
            Some(s) => s.as_str(),
            None => {
                let salt = SaltString::generate(&mut OsRng);
                dummy = Argon2::default()
                    .hash_password(b"not a password", &salt)
                    .map(|h| h.to_string())
                    .map_err(ApiError::internal)?;
                dummy.as_str()
            }
        };
        let parsed = PasswordHash::new(stored).map_err(ApiError::internal)?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        // The dummy path never succeeds, whatever password was typed.
        Ok(ok && known_user)
    })
    .await
    .map_err(ApiError::internal)?
}

fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn membership(
    state: &AppState,
    user_id: Uuid,
    organization_id: Uuid,
) -> Result<(users::Model, Role), ApiError> {
    let user = users::Entity::find_by_id(user_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let member = memberships::Entity::find_by_id((organization_id, user_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let role = Role::parse(&member.role).ok_or_else(|| ApiError::internal("unknown role"))?;
    Ok((user, role))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(ApiError::Unauthorized)?;
            let found = api_tokens::Entity::find()
                .filter(api_tokens::Column::TokenHash.eq(sha256_hex(token)))
                .one(&state.db)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            let (user, role) = membership(state, found.user_id, found.organization_id).await?;
            let now = Utc::now();
            // Recording use costs a write; once a minute is precise enough to show "last used".
            let stale = found
                .last_used_at
                .is_none_or(|t| now - t > chrono::Duration::minutes(1));
            if stale {
                let mut active: api_tokens::ActiveModel = found.clone().into();
                active.last_used_at = Set(Some(now));
                active.update(&state.db).await?;
            }
            return Ok(Auth {
                user_id: user.id,
                email: user.email,
                organization_id: found.organization_id,
                role,
                credential: Credential::Token {
                    token_id: found.id,
                    name: found.name,
                },
            });
        }
        let session_id = cookie_value(parts, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
        let key = session_key(session_id);
        let data = state
            .ephemeral
            .get(&key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let data: SessionData = serde_json::from_str(&data).map_err(ApiError::internal)?;
        let (user, role) = membership(state, data.user_id, data.organization_id).await?;
        Ok(Auth {
            user_id: user.id,
            email: user.email,
            organization_id: data.organization_id,
            role,
            credential: Credential::Session { session_key: key },
        })
    }
}

/// Starts a session and returns the `Set-Cookie` value.
pub async fn start_session(
    state: &AppState,
    user_id: Uuid,
    organization_id: Uuid,
) -> Result<String, ApiError> {
    let session_id = random_secret();
    let data = serde_json::to_string(&SessionData {
        user_id,
        organization_id,
    })
    .map_err(ApiError::internal)?;
    let ttl = state.settings.session_ttl;
    state
        .ephemeral
        .put(&session_key(&session_id), &data, ttl)
        .await?;
    Ok(session_cookie(
        &session_id,
        ttl,
        state.settings.secure_cookies,
    ))
}

pub fn session_cookie(value: &str, ttl: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        ttl.as_secs()
    )
}
