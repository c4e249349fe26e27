//! The API's one error type and the one place that turns errors into responses. Bodies follow
//! Kong's Admin API: `{"code", "name", "message", "fields"}`. A 500 logs its cause and tells the
//! client only a request id.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tollgate_model::ValidationError;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("schema violation")]
    Validation(#[from] ValidationError),
    #[error("{message}")]
    Unique {
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Kong's error codes, so tools written against Kong's Admin API read ours.
mod code {
    pub const SCHEMA_VIOLATION: u16 = 2;
    pub const UNIQUE_VIOLATION: u16 = 5;
    pub const NOT_FOUND: u16 = 6;
    pub const DATABASE_ERROR: u16 = 8;
    pub const UNAUTHORIZED: u16 = 20;
    pub const FORBIDDEN: u16 = 21;
    pub const BAD_REQUEST: u16 = 22;
    pub const RATE_LIMITED: u16 = 23;
    pub const UNAVAILABLE: u16 = 24;
}

/// The error body, documented in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: u16,
    pub name: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(ValidationError::field(name, message))
    }

    pub fn unique(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Unique {
            fields: BTreeMap::from([(field.to_string(), message.clone())]),
            message,
        }
    }

    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Conflict {
            fields: BTreeMap::from([(field.to_string(), message.clone())]),
            message,
        }
    }

    pub fn foreign_key(field: &str, message: impl Into<String>) -> Self {
        // Reported as a schema violation on the field: the input names something that is not there.
        Self::field(field, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

/// A store that cannot be reached is 503 (the logs are safe, only late); a failed query is a bug.
impl From<tollgate_analytics::StoreError> for ApiError {
    fn from(e: tollgate_analytics::StoreError) -> Self {
        match e {
            tollgate_analytics::StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "analytics store unavailable");
                ApiError::Unavailable("the analytics store is unavailable; try again soon".into())
            }
            tollgate_analytics::StoreError::Query(cause) => {
                ApiError::Internal(format!("analytics: {cause}"))
            }
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(e: sea_orm::TransactionError<ApiError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, name) = match &self {
            ApiError::Validation(_) => (
                StatusCode::BAD_REQUEST,
                code::SCHEMA_VIOLATION,
                "schema violation",
            ),
            ApiError::Unique { .. } => (
                StatusCode::BAD_REQUEST,
                code::UNIQUE_VIOLATION,
                "unique constraint violation",
            ),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, code::UNIQUE_VIOLATION, "conflict"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, code::BAD_REQUEST, "bad request"),
            ApiError::Unauthorized | ApiError::InvalidCredentials => {
                (StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, "unauthorized")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, code::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, code::NOT_FOUND, "not found"),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                code::BAD_REQUEST,
                "payload too large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::BAD_REQUEST,
                "unsupported media type",
            ),
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                code::RATE_LIMITED,
                "too many requests",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAVAILABLE,
                "unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                code::DATABASE_ERROR,
                "internal error",
            ),
        };
        let mut request_id = None;
        let (message, fields) = match self {
            ApiError::Validation(e) => {
                let message = format!("schema violation ({})", e.summary());
                (message, e.fields)
            }
            ApiError::Unique { message, fields } | ApiError::Conflict { message, fields } => {
                (message, fields)
            }
            ApiError::Unauthorized => (
                "unauthorized: log in, or send 'Authorization: Bearer <token>'".into(),
                BTreeMap::new(),
            ),
            ApiError::InvalidCredentials => ("invalid email or password".into(), BTreeMap::new()),
            ApiError::NotFound => ("Not found".into(), BTreeMap::new()),
            ApiError::PayloadTooLarge => {
                ("request body is larger than 1 MiB".into(), BTreeMap::new())
            }
            ApiError::TooManyRequests => (
                "too many attempts; wait a minute and try again".into(),
                BTreeMap::new(),
            ),
            ApiError::Internal(cause) => {
                let id = Uuid::now_v7().to_string();
                tracing::error!(request_id = %id, %cause, "internal error");
                let message = format!("internal error; quote request id {id} when reporting it");
                request_id = Some(id);
                (message, BTreeMap::new())
            }
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Unavailable(m) => (m, BTreeMap::new()),
        };
        let body = ErrorBody {
            code,
            name,
            message,
            fields,
            request_id,
        };
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
