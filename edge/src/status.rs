//! The status listener: `GET /status` (node, version, applied configs and how long the latest
//! apply of each took, by phase), `GET /status/ready`
//! (200 once a config is loaded, 503 before) for load balancers and the console, and
//! `GET /metrics` for Prometheus.

use std::sync::Arc;

use crate::listener::IncomingBody;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::errors::{json_response, ProxyBody};
use crate::state::EdgeState;

pub async fn respond(state: Arc<EdgeState>, request: Request<IncomingBody>) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"message": "Method not allowed"}),
        );
    }
    match request.uri().path() {
        "/status" => json_response(
            StatusCode::OK,
            &json!({
                "node_id": state.node_id,
                "binary_version": state.binary_version,
                "region": state.region,
                "control_planes": state.served.load().applied(),
                "config_applies": state.applies().iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            }),
        ),
        "/metrics" => {
            let text = state.metrics.render(&state.served.load());
            let body = http_body_util::Full::new(bytes::Bytes::from(text));
            let mut response = Response::new(http_body_util::Either::Right(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/status/ready" if state.is_ready() => {
            json_response(StatusCode::OK, &json!({"ready": true}))
        }
        "/status/ready" => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "message": "no configuration loaded yet"}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"message": "Not found"})),
    }
}
