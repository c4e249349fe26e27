//! Upstreams and targets: Kong conventions (nested targets addressed by id or `host:port`,
//! cascade on delete), validation that changes nothing, tenant isolation.

mod common;

use common::TestApi;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

async fn version(api: &TestApi, token: &str, base: &str) -> i64 {
    let (_, cp) = api.get(base, token).await;
    cp["config_version"].as_i64().unwrap()
}

fn targets_of(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn upstreams_and_targets_follow_kong_conventions() {
    let api = TestApi::start().await;
    let token = api.tenant("balance").await;
    let cp = api.control_plane(&token, "balance").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());

    let (status, upstream) = api
        .post(
            &format!("{base}/upstreams"),
            &token,
            json!({"name": "backend.internal", "tags": ["team-a"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{upstream}");
    assert_eq!(upstream["algorithm"], "round-robin");
    assert_eq!(upstream["slots"], 10000);
    assert_eq!(upstream["healthchecks"]["active"]["http_path"], "/");
    let upstream_id = upstream["id"].as_str().unwrap().to_string();
    for key in ["backend.internal", upstream_id.as_str()] {
        let (status, got) = api.get(&format!("{base}/upstreams/{key}"), &token).await;
        assert_eq!((status, &got["id"]), (StatusCode::OK, &upstream["id"]));
    }

    // Nested targets: the port defaults to 8000 and the upstream is pinned from the path.
    let targets = format!("{base}/upstreams/backend.internal/targets");
    let (status, t1) = api
        .post(&targets, &token, json!({"target": "10.0.0.1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t1}");
    assert_eq!(
        (&t1["target"], &t1["weight"], &t1["upstream"]),
        (
            &json!("10.0.0.1:8000"),
            &json!(100),
            &json!({"id": upstream_id})
        )
    );
    let (status, t2) = api
        .post(
            &targets,
            &token,
            json!({"target": "10.0.0.2:81", "weight": 50}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t2}");

    // A target is unique per upstream: 409 naming the field, and nothing changes.
    let before = version(&api, &token, &base).await;
    for duplicate in ["10.0.0.1:8000", "10.0.0.1"] {
        let (status, body) = api
            .post(&targets, &token, json!({"target": duplicate}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["fields"]["target"]
                .as_str()
                .unwrap()
                .contains("10.0.0.1:8000"),
            "{body}"
        );
    }
    assert_eq!(version(&api, &token, &base).await, before);

    let (status, list) = api.get(&targets, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(targets_of(&list), ["10.0.0.1:8000", "10.0.0.2:81"]);
    assert_eq!(list["next"], Value::Null);

    // A target by id, by `host:port`, and by host with the default port.
    let t1_id = t1["id"].as_str().unwrap();
    for key in [t1_id, "10.0.0.1:8000", "10.0.0.1"] {
        let (status, got) = api.get(&format!("{targets}/{key}"), &token).await;
        assert_eq!((status, &got["id"]), (StatusCode::OK, &t1["id"]), "{key}");
    }
    let (status, patched) = api
        .patch(
            &format!("{targets}/10.0.0.2:81"),
            &token,
            json!({"weight": 0}),
        )
        .await;
    assert_eq!((status, &patched["weight"]), (StatusCode::OK, &json!(0)));
    let (status, body) = api
        .patch(
            &format!("{targets}/10.0.0.2:81"),
            &token,
            json!({"target": "10.0.0.1:8000"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // PUT creates under the path's upstream, by id or by `host:port`.
    let new_id = Uuid::now_v7();
    let (status, put) = api
        .put(
            &format!("{targets}/{new_id}"),
            &token,
            json!({"target": "10.0.0.3:80"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(
        (&put["id"], &put["upstream"]["id"]),
        (&json!(new_id), &json!(upstream_id))
    );
    let (status, put) = api
        .put(
            &format!("{targets}/10.0.0.4:80"),
            &token,
            json!({"weight": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(
        (&put["target"], &put["weight"]),
        (&json!("10.0.0.4:80"), &json!(5))
    );
    let (status, body) = api
        .put(
            &format!("{targets}/10.0.0.4:80"),
            &token,
            json!({"target": "10.0.0.9:80"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["target"].is_string(), "{body}");

    // Another upstream may have the same target; targets stay within their upstream's path.
    let (status, _) = api
        .post(
            &format!("{base}/upstreams"),
            &token,
            json!({"name": "other.internal"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let other_targets = format!("{base}/upstreams/other.internal/targets");
    let (status, body) = api
        .post(&other_targets, &token, json!({"target": "10.0.0.1:8000"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = api.get(&format!("{other_targets}/{t1_id}"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .delete(&format!("{other_targets}/{t1_id}"), &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post(
            &other_targets,
            &token,
            json!({"target": "10.0.0.7:80", "upstream": {"id": upstream_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["upstream"].is_string(), "{body}");
    for missing in [
        format!("{base}/upstreams/nope.internal/targets"),
        format!("{base}/upstreams/{}/targets", Uuid::now_v7()),
        format!("{base}/targets"),
        format!("{base}/targets/{t1_id}"),
    ] {
        let (status, _) = api.get(&missing, &token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }

    // Upstream names are unique per control plane; a service names one as its host.
    let (status, body) = api
        .post(
            &format!("{base}/upstreams"),
            &token,
            json!({"name": "backend.internal"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["name"].is_string(), "{body}");
    let (status, body) = api
        .post(
            &format!("{base}/services"),
            &token,
            json!({"name": "balanced", "url": "http://backend.internal/api"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The snapshot holds upstreams and targets.
    let latest = version(&api, &token, &base).await;
    let (_, detail) = api
        .get(&format!("{base}/config/versions/{latest}"), &token)
        .await;
    let snapshot = &detail["snapshot"];
    assert_eq!(snapshot["upstreams"].as_array().unwrap().len(), 2);
    assert_eq!(snapshot["targets"].as_array().unwrap().len(), 5);
    assert_eq!(snapshot["services"][0]["host"], "backend.internal");

    // Deleting a target by `host:port`; deleting an upstream takes its targets (as Kong does).
    let (status, _) = api.delete(&format!("{targets}/10.0.0.4:80"), &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("{targets}/10.0.0.4:80"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .delete(&format!("{base}/upstreams/backend.internal"), &token)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&targets, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, versions) = api.get(&format!("{base}/config/versions"), &token).await;
    assert_eq!(
        versions["data"][0]["summary"],
        "delete upstream backend.internal with its 3 targets"
    );
    let latest = version(&api, &token, &base).await;
    let (_, detail) = api
        .get(&format!("{base}/config/versions/{latest}"), &token)
        .await;
    let left: Vec<&str> = detail["snapshot"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upstream"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], upstream_id);
    api.stop().await;
}

#[tokio::test]
async fn bad_upstream_and_target_input_gets_400_with_fields_and_changes_nothing() {
    let api = TestApi::start().await;
    let token = api.tenant("strict-up").await;
    let cp = api.control_plane(&token, "strict-up").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let (status, _) = api
        .post(&format!("{base}/upstreams"), &token, json!({"name": "u1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .post(
            &format!("{base}/upstreams/u1/targets"),
            &token,
            json!({"target": "a.internal:80"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = version(&api, &token, &base).await;
    let (_, before_upstreams) = api.get(&format!("{base}/upstreams"), &token).await;
    let (_, before_targets) = api
        .get(&format!("{base}/upstreams/u1/targets"), &token)
        .await;

    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "not a host"}),
            "name",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "x", "algorithm": "random"}),
            "algorithm",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "x", "healthchecks": {"active": {"timeout": -1}}}),
            "healthchecks.active.timeout",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "x", "algorithm": "consistent-hashing", "hash_on": "header"}),
            "hash_on_header",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "x", "colour": 1}),
            "colour",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"algorithm": "latency"}),
            "name",
        ),
        (
            Method::POST,
            "upstreams".into(),
            json!({"name": "x", "client_certificate": {"id": Uuid::now_v7()}}),
            "client_certificate",
        ),
        (
            Method::PATCH,
            "upstreams/u1".into(),
            json!({"slots": 1}),
            "slots",
        ),
        (
            Method::PUT,
            "upstreams/u1".into(),
            json!({"name": "u2"}),
            "name",
        ),
        (
            Method::POST,
            "upstreams/u1/targets".into(),
            json!({"target": "a:99999"}),
            "target",
        ),
        (
            Method::POST,
            "upstreams/u1/targets".into(),
            json!({"target": "bad host:80"}),
            "target",
        ),
        (
            Method::POST,
            "upstreams/u1/targets".into(),
            json!({"target": "b:1", "weight": 70000}),
            "weight",
        ),
        (
            Method::POST,
            "upstreams/u1/targets".into(),
            json!({"weight": 1}),
            "target",
        ),
        (
            Method::PATCH,
            "upstreams/u1/targets/a.internal:80".into(),
            json!({"weight": -1}),
            "weight",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = api
            .call(
                method.clone(),
                &format!("{base}/{path}"),
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {answer}"
        );
        assert!(
            answer["fields"][field].is_string(),
            "{method} {path} {body}: expected a message on {field}: {answer}"
        );
    }
    assert_eq!(version(&api, &token, &base).await, before);
    let (_, upstreams) = api.get(&format!("{base}/upstreams"), &token).await;
    let (_, targets) = api
        .get(&format!("{base}/upstreams/u1/targets"), &token)
        .await;
    assert_eq!((upstreams, targets), (before_upstreams, before_targets));
    api.stop().await;
}

#[tokio::test]
async fn another_tenant_gets_404_for_upstreams_targets_and_health() {
    let api = TestApi::start().await;
    let owner = api.tenant("up-owner").await;
    let other = api.tenant("up-other").await;
    let cp = api.control_plane(&owner, "up-private").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let (_, upstream) = api
        .post(
            &format!("{base}/upstreams"),
            &owner,
            json!({"name": "secret.internal"}),
        )
        .await;
    let (_, target) = api
        .post(
            &format!("{base}/upstreams/secret.internal/targets"),
            &owner,
            json!({"target": "10.9.9.9:80"}),
        )
        .await;
    let upstream_id = upstream["id"].as_str().unwrap();
    let target_id = target["id"].as_str().unwrap();

    let theirs = api.control_plane(&other, "up-theirs").await;
    let their_base = format!("/api/v1/control-planes/{}", theirs["id"].as_str().unwrap());
    for b in [&base, &their_base] {
        for path in [
            format!("{b}/upstreams/{upstream_id}"),
            format!("{b}/upstreams/secret.internal"),
            format!("{b}/upstreams/{upstream_id}/targets"),
            format!("{b}/upstreams/{upstream_id}/targets/{target_id}"),
            format!("{b}/upstreams/{upstream_id}/targets/10.9.9.9:80"),
        ] {
            let (status, body) = api.get(&path, &other).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
            assert!(!body.to_string().contains("10.9.9.9"), "{body}");
        }
        let (status, _) = api
            .patch(
                &format!("{b}/upstreams/{upstream_id}/targets/{target_id}"),
                &other,
                json!({"weight": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .post(
                &format!("{b}/upstreams/{upstream_id}/targets"),
                &other,
                json!({"target": "evil:80"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .delete(&format!("{b}/upstreams/{upstream_id}"), &other)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, targets) = api
        .get(&format!("{base}/upstreams/{upstream_id}/targets"), &owner)
        .await;
    assert_eq!(targets_of(&targets), ["10.9.9.9:80"]);
    api.stop().await;
}
