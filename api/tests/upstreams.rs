//! Upstreams and targets: Kong conventions (nested targets addressed by id or `host:port`,
//! cascade on delete), validation that changes nothing, tenant isolation, and target health as
//! edges report it in heartbeats.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{eventually, TestApi};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tollgate_bus::Bus;
use tollgate_model::{AppliedConfig, Heartbeat, TargetHealth, TargetHealthReport};
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
            format!("{b}/upstreams/{upstream_id}/health"),
            format!("{b}/upstreams/secret.internal/health"),
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
    let (status, _) = api
        .get(&format!("{base}/upstreams/{upstream_id}/health"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, targets) = api
        .get(&format!("{base}/upstreams/{upstream_id}/targets"), &owner)
        .await;
    assert_eq!(targets_of(&targets), ["10.9.9.9:80"]);
    api.stop().await;
}

fn heartbeat(
    node: Uuid,
    hostname: &str,
    sent_at: i64,
    cp: Uuid,
    reports: &[(Uuid, &str, TargetHealth)],
) -> Heartbeat {
    Heartbeat {
        node_id: node,
        hostname: hostname.into(),
        binary_version: "test".into(),
        region: "default".into(),
        sent_at,
        control_planes: vec![AppliedConfig {
            control_plane_id: cp,
            version: 1,
            hash: "sha256:test".into(),
        }],
        target_health: reports
            .iter()
            .map(|(upstream, target, health)| TargetHealthReport {
                control_plane_id: cp,
                upstream_id: *upstream,
                target: target.to_string(),
                health: *health,
            })
            .collect(),
    }
}

fn health_of<'a>(health: &'a Value, target: &str) -> &'a Value {
    health["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no {target} in {health}"))
}

#[tokio::test]
async fn upstream_health_aggregates_what_online_nodes_report() {
    use TargetHealth::*;
    let api = TestApi::start().await;
    let token = api.tenant("healthy").await;
    let cp = api.control_plane(&token, "healthy").await;
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (_, upstream) = api
        .post(
            &format!("{base}/upstreams"),
            &token,
            json!({"name": "pool"}),
        )
        .await;
    let upstream_id: Uuid = upstream["id"].as_str().unwrap().parse().unwrap();
    for target in ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"] {
        let (status, _) = api
            .post(
                &format!("{base}/upstreams/pool/targets"),
                &token,
                json!({"target": target}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let health_path = format!("{base}/upstreams/pool/health");
    let (status, health) = api.get(&health_path, &token).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(
        (&health["node_count"], &health["total"]),
        (&json!(0), &json!(4))
    );
    assert!(
        health["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["health"] == "UNKNOWN" && t["nodes"] == json!([])),
        "{health}"
    );

    let (a, b, stale) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now().timestamp();
    let from_a = heartbeat(
        a,
        "edge-a",
        now,
        cp_id,
        &[
            (upstream_id, "10.1.0.1:80", Healthy),
            (upstream_id, "10.1.0.2:80", Unhealthy),
            (upstream_id, "10.1.0.3:80", HealthchecksOff),
            // Another upstream's report for the same address counts for that upstream only.
            (Uuid::now_v7(), "10.1.0.4:80", Unhealthy),
        ],
    );
    let from_b = heartbeat(
        b,
        "edge-b",
        now,
        cp_id,
        &[
            (upstream_id, "10.1.0.1:80", Healthy),
            (upstream_id, "10.1.0.2:80", Healthy),
            (upstream_id, "10.1.0.3:80", HealthchecksOff),
        ],
    );
    // Not heard from for two minutes: offline, so its view does not count.
    let from_stale = heartbeat(
        stale,
        "edge-stale",
        now - 120,
        cp_id,
        &[(upstream_id, "10.1.0.1:80", Unhealthy)],
    );
    // Heartbeats are fire-and-forget, so publish until the API has recorded all three.
    eventually("three nodes recorded", Duration::from_secs(10), || async {
        for hb in [&from_a, &from_b, &from_stale] {
            api.bus.publish_heartbeat(hb).await.ok()?;
        }
        let (_, nodes) = api.get(&format!("{base}/nodes"), &token).await;
        (nodes["data"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let health = eventually("both reports recorded", Duration::from_secs(10), || async {
        let (_, health) = api.get(&health_path, &token).await;
        (health_of(&health, "10.1.0.2:80")["nodes"].as_array()?.len() == 2).then_some(health)
    })
    .await;
    assert_eq!(health["node_count"], 2, "{health}");
    let t1 = health_of(&health, "10.1.0.1:80");
    assert_eq!(t1["health"], "HEALTHY", "the stale node is left out: {t1}");
    let t2 = health_of(&health, "10.1.0.2:80");
    assert_eq!(t2["health"], "UNHEALTHY");
    assert_eq!(
        t2["nodes"],
        json!([
            {"node_id": a, "hostname": "edge-a", "health": "UNHEALTHY", "last_seen": t2["nodes"][0]["last_seen"]},
            {"node_id": b, "hostname": "edge-b", "health": "HEALTHY", "last_seen": t2["nodes"][1]["last_seen"]},
        ])
    );
    assert_eq!(
        health_of(&health, "10.1.0.3:80")["health"],
        "HEALTHCHECKS_OFF"
    );
    let t4 = health_of(&health, "10.1.0.4:80");
    assert_eq!(
        (&t4["health"], &t4["nodes"]),
        (&json!("UNKNOWN"), &json!([]))
    );
    assert_eq!(t1["weight"], 100);
    assert_eq!(t1["upstream"]["id"], json!(upstream_id));

    // A later heartbeat replaces the node's earlier view.
    let recovered = heartbeat(
        a,
        "edge-a",
        Utc::now().timestamp(),
        cp_id,
        &[(upstream_id, "10.1.0.2:80", Healthy)],
    );
    eventually("edge-a's new view", Duration::from_secs(10), || async {
        api.bus.publish_heartbeat(&recovered).await.ok()?;
        let (_, health) = api.get(&health_path, &token).await;
        (health_of(&health, "10.1.0.2:80")["health"] == "HEALTHY").then_some(())
    })
    .await;
    let (_, health) = api.get(&health_path, &token).await;
    assert_eq!(
        health_of(&health, "10.1.0.1:80")["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "edge-a no longer reports 10.1.0.1: {health}"
    );
    api.stop().await;
}

/// `tollgate dev`'s stack: SQLite (the target-health migration included), the memory bus.
#[tokio::test]
async fn upstreams_certificates_and_health_work_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = tollgate_api::store::connect(&url).await.expect("sqlite");
    tollgate_api::store::migrate(&db).await.expect("migrate");
    let bus: Arc<dyn Bus> = Arc::new(tollgate_bus::MemoryBus::new());
    let running = tollgate_api::start(
        tollgate_api::ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxy_public_url: "http://localhost:8000".into(),
            default_region: "default".into(),
            session_ttl: Duration::from_secs(3600),
            secure_cookies: false,
            console_dir: None,
            master_key: Some(tollgate_model::secret::MasterKey::generate().unwrap()),
            analytics: None,
        },
        db,
        bus.clone(),
        Arc::new(tollgate_api::ephemeral::MemoryStore::default()),
    )
    .await
    .expect("start");
    let origin = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{origin}/api/v1/signup"))
        .json(&json!({"email": "o@example.com", "password": "correct horse battery", "organization": "Lite"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookie = common::session_cookie(&resp).unwrap();
    let call = |method: Method, path: String, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{origin}{path}"))
            .header("cookie", &cookie);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, cp) = call(
        Method::POST,
        "/api/v1/control-planes".into(),
        Some(json!({"name": "lite"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cp}");
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (status, upstream) = call(
        Method::POST,
        format!("{base}/upstreams"),
        Some(json!({"name": "pool"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{upstream}");
    let upstream_id: Uuid = upstream["id"].as_str().unwrap().parse().unwrap();
    let (status, _) = call(
        Method::POST,
        format!("{base}/upstreams/pool/targets"),
        Some(json!({"target": "127.0.0.1:9000"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let pair = rcgen::generate_simple_self_signed(vec!["lite.example.com".into()]).unwrap();
    let (status, cert) = call(
        Method::POST,
        format!("{base}/certificates"),
        Some(json!({"cert": pair.cert.pem(), "key": pair.signing_key.serialize_pem()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    assert!(cert.get("key").is_none());

    let hb = heartbeat(
        Uuid::now_v7(),
        "edge-lite",
        Utc::now().timestamp(),
        cp_id,
        &[(upstream_id, "127.0.0.1:9000", TargetHealth::Healthy)],
    );
    let health = eventually("the report recorded", Duration::from_secs(10), || async {
        bus.publish_heartbeat(&hb).await.ok()?;
        let (_, health) = call(Method::GET, format!("{base}/upstreams/pool/health"), None).await;
        (health["data"][0]["health"] == "HEALTHY").then_some(health)
    })
    .await;
    assert_eq!(health["node_count"], 1);
    assert_eq!(health["data"][0]["nodes"][0]["hostname"], "edge-lite");
    let (_, detail) = call(Method::GET, format!("{base}/config/versions/4"), None).await;
    assert_eq!(
        detail["snapshot"]["certificates"].as_array().unwrap().len(),
        1
    );
    assert!(!detail.to_string().contains("PRIVATE KEY"));
    running.shutdown().await;
}
