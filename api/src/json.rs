//! The JSON body extractor: insists on `application/json`, maps a body over the limit to 413, and
//! reports malformed JSON, type errors and unknown fields by field name.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A request body parsed as `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` as `T`, naming the field that fails.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::field("@body", format!("malformed JSON: {inner}")));
            }
            let message = inner.to_string();
            if let Some(rest) = message.strip_prefix("unknown field `") {
                let name = rest.split('`').next().unwrap_or_default();
                // The path already ends with the unknown key.
                let field = match path.as_str() {
                    "." | "" => name.to_string(),
                    path => path.to_string(),
                };
                return Err(ApiError::field(&field, "unknown field"));
            }
            if let Some(rest) = message.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or_default();
                return Err(ApiError::field(name, "required field missing"));
            }
            let field = if path == "." {
                "@body".to_string()
            } else {
                path
            };
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            Err(ApiError::field(&field, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(v) => v.fields.into_keys().collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_problem() {
        assert_eq!(fields(parse_json::<Login>(b"{").unwrap_err()), ["@body"]);
        assert_eq!(
            fields(parse_json::<Login>(br#"{"email":"a","password":"b","x":1}"#).unwrap_err()),
            ["x"]
        );
        assert_eq!(
            fields(parse_json::<Login>(br#"{"email":"a"}"#).unwrap_err()),
            ["password"]
        );
        assert_eq!(
            fields(parse_json::<Login>(br#"{"email":1,"password":"b"}"#).unwrap_err()),
            ["email"]
        );
    }
}
