//! The status listener: `GET /status` (node, version, applied configs) and `GET /status/ready`
//! (200 once a config is loaded, 503 before) for load balancers and the console.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::errors::{json_response, ProxyBody};
use crate::state::EdgeState;

pub async fn respond(state: Arc<EdgeState>, request: Request<Incoming>) -> Response<ProxyBody> {
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
            }),
        ),
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
