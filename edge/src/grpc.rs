//! gRPC clients are told about the edge's own errors the gRPC way, as Kong does: HTTP 200 with
//! `grpc-status` and `grpc-message` in the headers and no body (a "trailers-only" response), since
//! a gRPC client reads its status there rather than from the HTTP status or a JSON body.
//! Everything else about gRPC is plain HTTP/2 proxying with trailers passed through.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, SERVER};
use http::{HeaderMap, Response, StatusCode, Version};
use http_body_util::{Either, Full};

use crate::errors::ProxyBody;
use crate::proxy::X_REQUEST_ID;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether a request is a gRPC call: HTTP/2 with an `application/grpc…` content type (Kong's
/// test).
pub fn is_grpc_request(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_2
        && headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Kong's mapping of the HTTP status it would have answered with to a gRPC status code; other
/// codes go by their class (2xx → OK, 4xx → INVALID_ARGUMENT, 5xx → INTERNAL, else UNKNOWN).
pub fn grpc_status_of(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        429 => 8,
        499 => 1,
        501 => 12,
        503 => 14,
        504 => 4,
        200..=299 => 0,
        400..=499 => 3,
        500..=599 => 13,
        _ => 2,
    }
}

/// The trailers-only answer for an error the edge made up itself.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        GRPC_STATUS,
        HeaderValue::from(u16::from(grpc_status_of(status))),
    );
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.insert(SERVER, HeaderValue::from_static("tollgate"));
    headers.insert(X_REQUEST_ID, request_id.clone());
    response
}

/// `grpc-message` is percent-encoded: printable ASCII except `%` goes as is.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_kong() {
        assert_eq!(grpc_status_of(StatusCode::NOT_FOUND), 5);
        assert_eq!(grpc_status_of(StatusCode::SERVICE_UNAVAILABLE), 14);
        assert_eq!(grpc_status_of(StatusCode::GATEWAY_TIMEOUT), 4);
        assert_eq!(grpc_status_of(StatusCode::BAD_GATEWAY), 13);
        assert_eq!(grpc_status_of(StatusCode::UPGRADE_REQUIRED), 3);
        assert_eq!(grpc_status_of(StatusCode::MOVED_PERMANENTLY), 2);
    }

    #[test]
    fn grpc_requests_are_http2_with_a_grpc_content_type() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc_request(Version::HTTP_2, &headers));
        assert!(!is_grpc_request(Version::HTTP_11, &headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc_request(Version::HTTP_2, &headers));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("no Route matched"), "no Route matched");
        assert_eq!(percent_encode("100% é"), "100%25 %C3%A9");
    }
}
