//! Members of an organization and invitations to join it. Admins and owners manage both; only an
//! owner grants or takes away the owner role, and the last owner stays. An invitation's token is
//! shown once, stored as a SHA-256 digest, and accepted by a new or an existing user.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::{HOST, SET_COOKIE};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{AppendHeaders, IntoResponse};
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tollgate_model::ValidationError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{MeResponse, OrganizationView, UserView};
use crate::audit;
use crate::auth::{
    hash_password, random_secret, sha256_hex, start_session, verify_password, Auth, Role,
    MIN_PASSWORD_LEN,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::state::AppState;
use crate::store::{api_tokens, invitations, memberships, organizations, users};

/// How long an invitation can be accepted.
pub const INVITATION_TTL: chrono::Duration = chrono::Duration::days(7);
/// Accept attempts per token, and password checks per email (shared with log-in), per window.
const ACCEPT_ATTEMPTS: u64 = 10;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// `owner`, `admin`, `member` or `viewer`; only an owner may grant or take away `owner`.
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    pub email: String,
    /// `owner`, `admin`, `member` or `viewer`; only an owner may invite an owner.
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// Shown once; only its digest is stored.
    pub token: String,
    /// The console page that accepts the invitation; send it to the invitee.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    /// The email of the member who sent it.
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub data: Vec<InvitationView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    pub token: String,
    /// A new account's password (at least 10 characters), or the existing account's password.
    pub password: String,
}

fn require_admin(auth: &Auth) -> ApiResult<()> {
    if auth.role >= Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "your role is {}: only admins and owners manage members and invitations",
            auth.role.as_str()
        )))
    }
}

fn require_owner_for_owner_role(auth: &Auth) -> ApiResult<()> {
    if auth.role == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only an owner may grant or take away the owner role".into(),
        ))
    }
}

fn parse_role(stored: &str) -> ApiResult<Role> {
    Role::parse(stored).ok_or_else(|| ApiError::internal(format!("unknown role {stored}")))
}

/// Emails are compared as the account endpoints store them: trimmed and lowercase.
fn normalize_email(email: &str) -> ApiResult<String> {
    let mut errors = ValidationError::new();
    let email = crate::accounts::normalize_email(email, &mut errors);
    errors.into_result()?;
    Ok(email)
}

/// Takes the organization's row lock, so changes to its members queue: two owners demoting each
/// other at once cannot leave it without an owner. (SQLite has one writer anyway.)
async fn lock_organization(txn: &DatabaseTransaction, organization_id: Uuid) -> ApiResult<()> {
    organizations::Entity::find_by_id(organization_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(())
}

async fn find_member(
    db: &impl ConnectionTrait,
    organization_id: Uuid,
    user_id: &str,
) -> ApiResult<(memberships::Model, users::Model)> {
    let user_id = Uuid::parse_str(user_id).map_err(|_| ApiError::NotFound)?;
    let member = memberships::Entity::find_by_id((organization_id, user_id))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let user = users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((member, user))
}

async fn owner_count(db: &impl ConnectionTrait, organization_id: Uuid) -> ApiResult<u64> {
    Ok(memberships::Entity::find()
        .filter(memberships::Column::OrganizationId.eq(organization_id))
        .filter(memberships::Column::Role.eq(Role::Owner.as_str()))
        .count(db)
        .await?)
}

/// Pending invitations a member sent stop working when the member can no longer invite: they
/// could otherwise hand themselves back the access they just lost.
async fn revoke_invitations_sent_by(
    txn: &DatabaseTransaction,
    organization_id: Uuid,
    user_id: Uuid,
) -> ApiResult<u64> {
    let deleted = invitations::Entity::delete_many()
        .filter(invitations::Column::OrganizationId.eq(organization_id))
        .filter(invitations::Column::InvitedBy.eq(user_id))
        .filter(invitations::Column::AcceptedAt.is_null())
        .exec(txn)
        .await?;
    Ok(deleted.rows_affected)
}

fn member_view(member: &memberships::Model, user: &users::Model) -> ApiResult<MemberView> {
    Ok(MemberView {
        user_id: user.id,
        email: user.email.clone(),
        role: parse_role(&member.role)?,
        joined_at: member.created_at,
    })
}

/// Members of the caller's organization, oldest first.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses((status = 200, body = MemberList), (status = 401, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<MemberList>> {
    let members = memberships::Entity::find()
        .filter(memberships::Column::OrganizationId.eq(auth.organization_id))
        .order_by_asc(memberships::Column::CreatedAt)
        .order_by_asc(memberships::Column::UserId)
        .all(&state.db)
        .await?;
    let users = users::Entity::find()
        .filter(users::Column::Id.is_in(members.iter().map(|m| m.user_id)))
        .all(&state.db)
        .await?;
    let mut data = Vec::with_capacity(members.len());
    for member in &members {
        if let Some(user) = users.iter().find(|u| u.id == member.user_id) {
            data.push(member_view(member, user)?);
        }
    }
    Ok(Json(MemberList { data }))
}

/// Change a member's role (admins and owners).
#[utoipa::path(patch, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = UpdateMember,
    responses((status = 200, body = MemberView),
              (status = 400, body = ErrorBody, description = "Bad role, or the last owner would be demoted"),
              (status = 403, body = ErrorBody, description = "Not an admin, or an admin touching the owner role"),
              (status = 404, body = ErrorBody, description = "Not a member of this organization")))]
pub async fn update_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
    JsonBody(req): JsonBody<UpdateMember>,
) -> ApiResult<Json<MemberView>> {
    require_admin(&auth)?;
    let org = auth.organization_id;
    let txn = state.db.begin().await?;
    lock_organization(&txn, org).await?;
    let (member, user) = find_member(&txn, org, &user_id).await?;
    let current = parse_role(&member.role)?;
    if current == Role::Owner || req.role == Role::Owner {
        require_owner_for_owner_role(&auth)?;
    }
    if current == Role::Owner && req.role != Role::Owner && owner_count(&txn, org).await? <= 1 {
        return Err(ApiError::BadRequest(format!(
            "{} is the last owner of this organization: make another member an owner first",
            user.email
        )));
    }
    let mut active: memberships::ActiveModel = member.into();
    active.role = Set(req.role.as_str().into());
    let member = active.update(&txn).await?;
    let revoked = if current >= Role::Admin && req.role < Role::Admin {
        revoke_invitations_sent_by(&txn, org, user.id).await?
    } else {
        0
    };
    audit::record(
        &txn,
        org,
        &auth.actor(),
        "member.update",
        &user.email,
        serde_json::json!({
            "user_id": user.id,
            "from": current.as_str(),
            "to": req.role.as_str(),
            "invitations_revoked": revoked,
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(Json(member_view(&member, &user)?))
}

/// Remove a member from the organization (admins and owners). Their tokens for this
/// organization are revoked and their sessions in it stop working.
#[utoipa::path(delete, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses((status = 204, description = "Removed"),
              (status = 400, body = ErrorBody, description = "The last owner cannot be removed"),
              (status = 403, body = ErrorBody, description = "Not an admin, or an admin removing an owner"),
              (status = 404, body = ErrorBody, description = "Not a member of this organization")))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&auth)?;
    let org = auth.organization_id;
    let txn = state.db.begin().await?;
    lock_organization(&txn, org).await?;
    let (member, user) = find_member(&txn, org, &user_id).await?;
    let current = parse_role(&member.role)?;
    if current == Role::Owner {
        require_owner_for_owner_role(&auth)?;
        if owner_count(&txn, org).await? <= 1 {
            return Err(ApiError::BadRequest(format!(
                "{} is the last owner of this organization: make another member an owner first",
                user.email
            )));
        }
    }
    memberships::Entity::delete_by_id((org, user.id))
        .exec(&txn)
        .await?;
    let tokens = api_tokens::Entity::delete_many()
        .filter(api_tokens::Column::OrganizationId.eq(org))
        .filter(api_tokens::Column::UserId.eq(user.id))
        .exec(&txn)
        .await?;
    let revoked = revoke_invitations_sent_by(&txn, org, user.id).await?;
    audit::record(
        &txn,
        org,
        &auth.actor(),
        "member.remove",
        &user.email,
        serde_json::json!({
            "user_id": user.id,
            "role": current.as_str(),
            "tokens_revoked": tokens.rows_affected,
            "invitations_revoked": revoked,
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `<scheme>://<host>/invite/<token>`: the console that serves this API accepts it. The scheme
/// follows `secure_cookies`, which is set exactly when the console is served over https.
fn invitation_url(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    token: &str,
) -> ApiResult<String> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(Authority::as_str))
        .ok_or_else(|| ApiError::BadRequest("the request has no Host header".into()))?;
    let host: Authority = host
        .parse()
        .map_err(|_| ApiError::BadRequest("the request's Host header is not a host name".into()))?;
    if host.as_str().contains('@') {
        return Err(ApiError::BadRequest(
            "the request's Host header is not a host name".into(),
        ));
    }
    let scheme = if state.settings.secure_cookies {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}/invite/{token}"))
}

/// Invite someone by email (admins and owners). The token and URL are in this response only;
/// the invitation can be accepted for 7 days. A new invitation for the same email replaces a
/// pending one.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations",
    request_body = CreateInvitation,
    responses((status = 201, body = CreatedInvitation),
              (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Not an admin, or an admin inviting an owner"),
              (status = 409, body = ErrorBody, description = "Already a member")))]
pub async fn create_invitation(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    uri: Uri,
    JsonBody(req): JsonBody<CreateInvitation>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&auth)?;
    if req.role == Role::Owner {
        require_owner_for_owner_role(&auth)?;
    }
    let email = normalize_email(&req.email)?;
    let token = random_secret();
    let url = invitation_url(&state, &headers, &uri, &token)?;
    let org = auth.organization_id;
    let txn = state.db.begin().await?;
    let existing_user = users::Entity::find()
        .filter(users::Column::Email.eq(&email))
        .one(&txn)
        .await?;
    if let Some(user) = existing_user {
        if memberships::Entity::find_by_id((org, user.id))
            .one(&txn)
            .await?
            .is_some()
        {
            return Err(ApiError::conflict(
                "email",
                format!("{email} is already a member of this organization"),
            ));
        }
    }
    let replaced = invitations::Entity::delete_many()
        .filter(invitations::Column::OrganizationId.eq(org))
        .filter(invitations::Column::Email.eq(&email))
        .filter(invitations::Column::AcceptedAt.is_null())
        .exec(&txn)
        .await?;
    let now = Utc::now();
    let invitation = invitations::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(org),
        email: Set(email.clone()),
        role: Set(req.role.as_str().into()),
        token_hash: Set(sha256_hex(&token)),
        invited_by: Set(auth.user_id),
        created_at: Set(now),
        expires_at: Set(now + INVITATION_TTL),
        accepted_at: Set(None),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        org,
        &auth.actor(),
        "invitation.create",
        &email,
        serde_json::json!({
            "invitation_id": invitation.id,
            "role": req.role.as_str(),
            "replaced": replaced.rows_affected,
        }),
    )
    .await?;
    txn.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvitation {
            id: invitation.id,
            email,
            role: req.role,
            token,
            url,
            expires_at: invitation.expires_at,
        }),
    ))
}

/// Pending invitations of the caller's organization (never their tokens).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "invitations",
    responses((status = 200, body = InvitationList), (status = 401, body = ErrorBody)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<InvitationList>> {
    let pending = invitations::Entity::find()
        .filter(invitations::Column::OrganizationId.eq(auth.organization_id))
        .filter(invitations::Column::AcceptedAt.is_null())
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
        .order_by_asc(invitations::Column::CreatedAt)
        .order_by_asc(invitations::Column::Id)
        .all(&state.db)
        .await?;
    let inviters = users::Entity::find()
        .filter(users::Column::Id.is_in(pending.iter().map(|i| i.invited_by)))
        .all(&state.db)
        .await?;
    let mut data = Vec::with_capacity(pending.len());
    for invitation in pending {
        let invited_by = inviters
            .iter()
            .find(|u| u.id == invitation.invited_by)
            .map(|u| u.email.clone())
            .unwrap_or_default();
        data.push(InvitationView {
            id: invitation.id,
            role: parse_role(&invitation.role)?,
            email: invitation.email,
            invited_by,
            created_at: invitation.created_at,
            expires_at: invitation.expires_at,
        });
    }
    Ok(Json(InvitationList { data }))
}

/// Revoke an invitation that has not been accepted (admins and owners).
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "invitations",
    params(("id" = Uuid, Path, description = "Invitation id")),
    responses((status = 204, description = "Revoked"), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&auth)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let txn = state.db.begin().await?;
    let invitation = invitations::Entity::find_by_id(id)
        .filter(invitations::Column::OrganizationId.eq(auth.organization_id))
        .filter(invitations::Column::AcceptedAt.is_null())
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    invitations::Entity::delete_by_id(invitation.id)
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        auth.organization_id,
        &auth.actor(),
        "invitation.revoke",
        &invitation.email,
        serde_json::json!({ "invitation_id": invitation.id, "role": invitation.role }),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who accepts an invitation: an account that proved its password, or a new one.
enum Joining {
    Existing(users::Model),
    New { password_hash: String },
}

/// A pending invitation by token digest; used, expired and unknown tokens all answer 404.
async fn find_pending(
    db: &impl ConnectionTrait,
    token_hash: &str,
    lock: bool,
) -> ApiResult<invitations::Model> {
    let mut query = invitations::Entity::find()
        .filter(invitations::Column::TokenHash.eq(token_hash))
        .filter(invitations::Column::AcceptedAt.is_null())
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()));
    if lock {
        query = query.lock_exclusive();
    }
    query.one(db).await?.ok_or(ApiError::NotFound)
}

/// Accept an invitation and log in to its organization. Without an account for the invited
/// email, one is created with `password`; with one, `password` must be its password.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "invitations",
    request_body = AcceptInvitation,
    security(()),
    responses((status = 200, body = MeResponse, description = "Joined; the session cookie is set"),
              (status = 400, body = ErrorBody, description = "The new account's password is too short"),
              (status = 401, body = ErrorBody, description = "Wrong password for the existing account"),
              (status = 404, body = ErrorBody, description = "Unknown, used or expired invitation"),
              (status = 409, body = ErrorBody, description = "Already a member"),
              (status = 429, body = ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<AcceptInvitation>,
) -> ApiResult<impl IntoResponse> {
    let token_hash = sha256_hex(req.token.trim());
    let attempts = state
        .ephemeral
        .count_attempt(&format!("attempts:invitation:{token_hash}"), ATTEMPT_WINDOW)
        .await?;
    if attempts > ACCEPT_ATTEMPTS {
        return Err(ApiError::TooManyRequests);
    }
    let invitation = find_pending(&state.db, &token_hash, false).await?;
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(&invitation.email))
        .one(&state.db)
        .await?;
    let joining = match existing {
        Some(user) => {
            // Shares log-in's counter for this email: anyone can invite an address to their own
            // organization, so accepting must not become a way around log-in's limit.
            let attempts = state
                .ephemeral
                .count_attempt(
                    &format!("attempts:login:{}", sha256_hex(&user.email)),
                    ATTEMPT_WINDOW,
                )
                .await?;
            if attempts > ACCEPT_ATTEMPTS {
                return Err(ApiError::TooManyRequests);
            }
            if !verify_password(req.password, Some(user.password_hash.clone())).await? {
                return Err(ApiError::InvalidCredentials);
            }
            Joining::Existing(user)
        }
        None => {
            let mut errors = ValidationError::new();
            if req.password.chars().count() < MIN_PASSWORD_LEN {
                errors.add(
                    "password",
                    format!("must be at least {MIN_PASSWORD_LEN} characters"),
                );
            } else if req.password.len() > 1024 {
                errors.add("password", "must be at most 1024 bytes");
            }
            errors.into_result()?;
            Joining::New {
                password_hash: hash_password(req.password).await?,
            }
        }
    };

    let now = Utc::now();
    let txn = state.db.begin().await?;
    // Locked and checked again: of two concurrent accepts, one wins.
    let invitation = find_pending(&txn, &token_hash, true).await?;
    let org = organizations::Entity::find_by_id(invitation.organization_id)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    let user = match joining {
        Joining::Existing(user) => user,
        Joining::New { password_hash } => {
            let inserted = users::ActiveModel {
                id: Set(Uuid::now_v7()),
                email: Set(invitation.email.clone()),
                password_hash: Set(password_hash),
                created_at: Set(now),
            }
            .insert(&txn)
            .await;
            match inserted {
                Ok(user) => user,
                Err(e) => {
                    // An account for this email was created since the check above.
                    return Err(match e.sql_err() {
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                            ApiError::conflict(
                                "email",
                                "an account with this email was just created; accept again with its password",
                            )
                        }
                        _ => e.into(),
                    });
                }
            }
        }
    };
    if memberships::Entity::find_by_id((org.id, user.id))
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "email",
            format!("{} is already a member of {}", user.email, org.name),
        ));
    }
    let role = parse_role(&invitation.role)?;
    memberships::ActiveModel {
        organization_id: Set(org.id),
        user_id: Set(user.id),
        role: Set(role.as_str().into()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let mut used: invitations::ActiveModel = invitation.clone().into();
    used.accepted_at = Set(Some(now));
    used.update(&txn).await?;
    audit::record(
        &txn,
        org.id,
        &user.email,
        "member.join",
        &user.email,
        serde_json::json!({
            "user_id": user.id,
            "invitation_id": invitation.id,
            "role": role.as_str(),
            "invited_by": invitation.invited_by,
        }),
    )
    .await?;
    txn.commit().await?;

    let cookie = start_session(&state, user.id, org.id).await?;
    let body = MeResponse {
        user: UserView {
            id: user.id,
            email: user.email,
        },
        organization: OrganizationView {
            id: org.id,
            name: org.name,
        },
        role,
    };
    Ok((AppendHeaders([(SET_COOKIE, cookie)]), Json(body)))
}
