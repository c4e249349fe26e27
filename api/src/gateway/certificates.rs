//! Certificates and their SNIs (`/certificates/{c}/snis` and `/snis`). A certificate's `key` and
//! `key_alt` are sealed at rest with the master key and never returned; on write the key must
//! belong to the certificate.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use rustls::sign::CertifiedKey;
use serde_json::Value;
use tollgate_model::{Certificate, Sni, ValidationError};

use super::{
    create_entity, delete_entity, get_entity, list_entities, update_entity, upsert_entity,
    CpItemPath, CpPath, Shown,
};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Adds an error on `key_field` when the private key is not the one of the certificate's leaf.
/// Unparseable PEM is left to the model, which reports it on the same fields.
pub(crate) fn check_key_matches(
    cert_field: &str,
    cert: &str,
    key_field: &str,
    key: &str,
    errors: &mut ValidationError,
) {
    let (Ok(chain), Ok(private_key)) = (Certificate::chain(cert), Certificate::private_key(key))
    else {
        return;
    };
    let signing_key = match rustls::crypto::ring::sign::any_supported_type(&private_key) {
        Ok(signing_key) => signing_key,
        Err(e) => {
            errors.add(
                key_field,
                format!("unsupported private key (RSA, ECDSA P-256/P-384 or Ed25519): {e}"),
            );
            return;
        }
    };
    match CertifiedKey::new(chain, signing_key).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            errors.add(
                key_field,
                format!("does not match the public key of the certificate in '{cert_field}'"),
            );
        }
        // The key cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => errors.add(cert_field, format!("unreadable certificate: {e}")),
    }
}

/// List certificates (without their keys).
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/certificates", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Certificate without key, key_alt], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_certificates(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Certificate>(&s, &auth, &cp, None, q).await?,
    ))
}

/// Create a certificate: a PEM chain (leaf first) and its PEM private key. The key is encrypted
/// at rest and never returned; the server needs `TOLLGATE_MASTER_KEY` (503 without it).
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/certificates", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Certificate,
    responses((status = 201, body = Certificate, description = "The certificate, without `key` and `key_alt`"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "No master key configured")))]
pub async fn create_certificate(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Certificate>(&s, &auth, &cp, None, input).await
}

/// One certificate, by id (without its keys).
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/certificates/{certificate}", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id")),
    responses((status = 200, body = Certificate, description = "The certificate, without `key` and `key_alt`"), (status = 404, body = ErrorBody)))]
pub async fn get_certificate(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Shown<Certificate>> {
    get_entity(&s, &auth, &cp, None, &id).await
}

/// Change some fields of a certificate; the stored key is kept unless a new one is given.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/certificates/{certificate}", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id")),
    request_body = Certificate,
    responses((status = 200, body = Certificate, description = "The certificate, without `key` and `key_alt`"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update_certificate(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Certificate>> {
    update_entity(&s, &auth, &cp, None, &id, input).await
}

/// Create or replace a certificate by id.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/certificates/{certificate}", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id")),
    request_body = Certificate,
    responses((status = 200, body = Certificate, description = "The certificate, without `key` and `key_alt`"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn upsert_certificate(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Certificate>> {
    upsert_entity(&s, &auth, &cp, None, &id, input).await
}

/// Delete a certificate and, as Kong does, its SNIs. Refused while a service or upstream uses it
/// as `client_certificate`.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/certificates/{certificate}", tag = "certificates",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id")),
    responses((status = 204, description = "Deleted, with its SNIs"),
              (status = 400, body = ErrorBody, description = "A service or upstream uses it as client certificate"),
              (status = 404, body = ErrorBody)))]
pub async fn delete_certificate(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Certificate>(&s, &auth, &cp, None, &id).await
}

/// List the SNIs of a certificate.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/certificates/{certificate}/snis", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id"), PageQuery),
    responses((status = 200, description = "`{data: [Sni], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_certificate_snis(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, certificate)): CpItemPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Sni>(&s, &auth, &cp, Some(&certificate), q).await?,
    ))
}

/// Add an SNI to a certificate.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/certificates/{certificate}/snis", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("certificate" = String, Path, description = "Certificate id")),
    request_body = Sni,
    responses((status = 201, body = Sni), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_certificate_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, certificate)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Sni>(&s, &auth, &cp, Some(&certificate), input).await
}

/// List SNIs.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/snis", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Sni], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_snis(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(list_entities::<Sni>(&s, &auth, &cp, None, q).await?))
}

/// Create an SNI; `certificate` is `{"id": …}`. Names are unique per control plane.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/snis", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Sni,
    responses((status = 201, body = Sni), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Sni>(&s, &auth, &cp, None, input).await
}

/// One SNI, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/snis/{sni}", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("sni" = String, Path, description = "SNI id or name")),
    responses((status = 200, body = Sni), (status = 404, body = ErrorBody)))]
pub async fn get_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Shown<Sni>> {
    get_entity(&s, &auth, &cp, None, &id).await
}

/// Change some fields of an SNI (moving it to another certificate, say).
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/snis/{sni}", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("sni" = String, Path, description = "SNI id or name")),
    request_body = Sni,
    responses((status = 200, body = Sni), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Sni>> {
    update_entity(&s, &auth, &cp, None, &id, input).await
}

/// Create or replace an SNI by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/snis/{sni}", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("sni" = String, Path, description = "SNI id or name")),
    request_body = Sni,
    responses((status = 200, body = Sni), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Sni>> {
    upsert_entity(&s, &auth, &cp, None, &id, input).await
}

/// Delete an SNI.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/snis/{sni}", tag = "snis",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("sni" = String, Path, description = "SNI id or name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_sni(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Sni>(&s, &auth, &cp, None, &id).await
}
