//! Every response the edge makes up itself (no route, no service, no healthy target, upstream
//! trouble) is built here, as JSON `{"message", "request_id"}` with Kong's messages and status
//! codes.

use crate::proxy::X_REQUEST_ID;
use crate::upstream::body::UpstreamBody;
use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, LOCATION, SERVER, UPGRADE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

/// The body of every proxy response: the upstream's, streamed (an `Incoming` converts with
/// `.into()`), or one the edge made.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matched")]
    NoRoute,
    #[error("the route has no enabled service")]
    NoService,
    /// The route only accepts HTTPS: 426, or a redirect to `location`.
    #[error("the route requires https")]
    HttpsRequired { status: u16, location: String },
    /// The upstream has no target that may be used (none healthy, or under the threshold).
    #[error("no healthy target")]
    NoPeer,
    /// Connecting failed, or the answer was not HTTP.
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// Connecting, sending or waiting for the answer took longer than the service allows.
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("the upstream host name does not resolve: {0}")]
    NameResolution(String),
    /// The client's body broke off while it was being buffered.
    #[error("reading the request body: {0}")]
    ClientBody(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoService => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::HttpsRequired { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::UPGRADE_REQUIRED)
            }
            ProxyError::NoPeer | ProxyError::NameResolution(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told; causes stay in the logs.
    fn message(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no Route matched with those values",
            ProxyError::NoService => "no Service found with those values",
            ProxyError::HttpsRequired { .. } => "Please use HTTPS protocol",
            ProxyError::NoPeer => "failure to get a peer from the ring-balancer",
            ProxyError::Upstream(_) => "An invalid response was received from the upstream server",
            ProxyError::UpstreamTimeout => "The upstream server is timing out",
            ProxyError::NameResolution(_) => "name resolution failed",
            ProxyError::ClientBody(_) => "Bad request",
            ProxyError::Internal(_) => "An unexpected error occurred",
        }
    }

    pub fn into_response(self, request_id: &HeaderValue) -> Response<ProxyBody> {
        let status = self.status();
        self.log_cause(request_id);
        let body = serde_json::json!({
            "message": self.message(),
            "request_id": request_id.to_str().unwrap_or_default(),
        });
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, request_id.clone());
        if let ProxyError::HttpsRequired { location, .. } = &self {
            if status == StatusCode::UPGRADE_REQUIRED {
                headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(UPGRADE, HeaderValue::from_static("TLS/1.2, HTTP/1.1"));
            } else if let Ok(location) = HeaderValue::from_str(location) {
                headers.insert(LOCATION, location);
            }
        }
        response
    }
}

impl ProxyError {
    /// The same error for a gRPC client (see [`crate::grpc`]).
    pub fn into_grpc_response(self, request_id: &HeaderValue) -> Response<ProxyBody> {
        self.log_cause(request_id);
        crate::grpc::error_response(self.status(), self.message(), request_id)
    }

    fn log_cause(&self, request_id: &HeaderValue) {
        match self {
            ProxyError::Internal(cause) => {
                tracing::error!(request_id = ?request_id, %cause, "internal error while proxying");
            }
            ProxyError::Upstream(_) | ProxyError::NameResolution(_) | ProxyError::ClientBody(_) => {
                tracing::debug!(error = %self, "answering with an upstream error");
            }
            _ => {}
        }
    }
}

/// A JSON response with the edge's `Server` header.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(bytes))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(SERVER, HeaderValue::from_static("tollgate"));
    response
}
