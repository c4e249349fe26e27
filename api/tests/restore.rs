//! Restoring a config version: a new version with the old services and routes, published like
//! any other write; host names stay as they are.

mod common;

use std::time::Duration;

use common::{eventually, TestApi};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

async fn restore(api: &TestApi, token: &str, cp: &str, version: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/api/v1/control-planes/{cp}/config/versions/{version}/restore"),
        Some(token),
        None,
    )
    .await
}

async fn version_detail(api: &TestApi, token: &str, base: &str, version: i64) -> Value {
    let (status, detail) = api
        .get(&format!("{base}/config/versions/{version}"), token)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    detail
}

async fn current(api: &TestApi, token: &str, base: &str) -> (Value, Value, i64) {
    let (_, services) = api.get(&format!("{base}/services"), token).await;
    let (_, routes) = api.get(&format!("{base}/routes"), token).await;
    let (_, cp) = api.get(base, token).await;
    (
        services["data"].clone(),
        routes["data"].clone(),
        cp["config_version"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn restoring_a_version_makes_a_new_version_with_its_content() {
    let api = TestApi::start().await;
    let token = api.tenant("restore").await;
    let cp = api.control_plane(&token, "restore me").await;
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");

    // 1: empty. 2: service a. 3: route r1 on a. 4: service a changed.
    let (status, a) = api
        .post(
            &format!("{base}/services"),
            &token,
            json!({"name": "a", "url": "http://a.example.com/v1", "tags": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let (status, r1) = api
        .post(
            &format!("{base}/services/a/routes"),
            &token,
            json!({"name": "r1", "paths": ["/one"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r1}");
    let (status, _) = api
        .patch(
            &format!("{base}/services/a"),
            &token,
            json!({"host": "changed.example.com", "retries": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v2 = version_detail(&api, &token, &base, 2).await;
    let v3 = version_detail(&api, &token, &base, 3).await;
    let v4 = version_detail(&api, &token, &base, 4).await;
    assert!(
        v2["hash"] != v3["hash"] && v3["hash"] != v4["hash"] && v2["hash"] != v4["hash"],
        "the versions differ"
    );

    let (status, restored) = restore(&api, &token, &cp_id.to_string(), "2").await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["version"], 5);
    assert_eq!(restored["hash"], v2["hash"], "same content, same hash");
    assert_eq!(restored["summary"], "restore version 2");
    assert!(
        restored["actor"]
            .as_str()
            .unwrap()
            .contains("(token tests)"),
        "{restored}"
    );
    assert!(restored["created_at"].is_string());
    let (services, routes, version) = current(&api, &token, &base).await;
    assert_eq!(version, 5);
    assert_eq!(services, v2["snapshot"]["services"]);
    assert_eq!(services[0]["host"], "a.example.com");
    assert_eq!(services[0]["id"], a["id"]);
    assert_eq!(routes, json!([]));
    let v5 = version_detail(&api, &token, &base, 5).await;
    assert_eq!(v5["snapshot"]["version"], 5);
    assert_eq!(v5["snapshot"]["services"], v2["snapshot"]["services"]);

    let published = eventually("version 5 on the bus", Duration::from_secs(10), || async {
        let heads = api.bus.heads().await.ok()?;
        let head = heads.iter().find(|h| h.control_plane_id == cp_id)?;
        let snapshot = api.bus.fetch_snapshot(head).await.ok().flatten()?;
        (snapshot.version == 5).then_some(snapshot)
    })
    .await;
    assert_eq!(published.hash, v2["hash"]);
    assert_eq!(published.services.len(), 1);
    assert!(published.routes.is_empty());

    // Entities that were deleted come back with their ids, and keep working with the API.
    let (status, restored) = restore(&api, &token, "restore-me", "3").await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(
        (restored["version"].clone(), restored["hash"].clone()),
        (json!(6), v3["hash"].clone())
    );
    let (services, routes, _) = current(&api, &token, &base).await;
    assert_eq!(services, v3["snapshot"]["services"]);
    assert_eq!(routes, v3["snapshot"]["routes"]);
    assert_eq!(routes[0]["id"], r1["id"]);
    let (status, route) = api.get(&format!("{base}/routes/r1"), &token).await;
    assert_eq!(
        (status, route["service"]["id"].clone()),
        (StatusCode::OK, a["id"].clone())
    );
    let (status, body) = api
        .post(
            &format!("{base}/services"),
            &token,
            json!({"name": "a", "url": "http://dup.example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "names stay unique: {body}");
    let (status, _) = api.delete(&format!("{base}/services/a"), &token).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the restored route still holds its service"
    );

    // Host names are not part of a restore: they stay as they are now.
    let (status, _) = api
        .patch(&base, &token, json!({"hostnames": ["restore.example.com"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, restored) = restore(&api, &token, &cp_id.to_string(), "2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(restored["version"], 8);
    assert_ne!(restored["hash"], v2["hash"], "the host names differ");
    let v8 = version_detail(&api, &token, &base, 8).await;
    assert!(v8["snapshot"]["hostnames"]
        .as_array()
        .unwrap()
        .contains(&json!("restore.example.com")));
    assert_eq!(v8["snapshot"]["services"], v2["snapshot"]["services"]);

    // Unknown versions are 404 and change nothing.
    for version in ["9", "0", "-1", "latest", "99999999999999999999"] {
        let (status, body) = restore(&api, &token, &cp_id.to_string(), version).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{version}: {body}");
    }
    let (services, routes, version) = current(&api, &token, &base).await;
    assert_eq!(version, 8);
    assert_eq!(services, v2["snapshot"]["services"]);
    assert_eq!(routes, json!([]));
    let (_, versions) = api.get(&format!("{base}/config/versions"), &token).await;
    assert_eq!(versions["data"][0]["version"], 8);
    api.stop().await;
}

#[tokio::test]
async fn another_tenant_cannot_restore() {
    let api = TestApi::start().await;
    let owner = api.tenant("owner").await;
    let other = api.tenant("other").await;
    let cp = api.control_plane(&owner, "private").await;
    let cp_id = cp["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (status, _) = api
        .post(
            &format!("{base}/services"),
            &owner,
            json!({"name": "s", "url": "http://example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for cp_ref in [cp_id.as_str(), cp["slug"].as_str().unwrap()] {
        for version in ["1", "2", "3"] {
            let (status, body) = restore(&api, &other, cp_ref, version).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{cp_ref} {version}: {body}");
        }
    }
    let (services, _, version) = current(&api, &owner, &base).await;
    assert_eq!(version, 2);
    assert_eq!(services.as_array().unwrap().len(), 1);
    let (status, _) = restore(&api, &owner, "no-such-control-plane", "1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.stop().await;
}

#[tokio::test]
async fn restore_refuses_an_entity_id_taken_by_another_control_plane() {
    let api = TestApi::start().await;
    let owner = api.tenant("owner").await;
    let other = api.tenant("other").await;
    let cp = api.control_plane(&owner, "mine").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let (_, svc) = api
        .post(
            &format!("{base}/services"),
            &owner,
            json!({"name": "s", "url": "http://example.com"}),
        )
        .await;
    let svc_id = svc["id"].as_str().unwrap();
    let (status, _) = api.delete(&format!("{base}/services/s"), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Ids can be chosen on create, so a released id can be taken elsewhere.
    let theirs = api.control_plane(&other, "theirs").await;
    let (status, body) = api
        .put(
            &format!(
                "/api/v1/control-planes/{}/services/{svc_id}",
                theirs["id"].as_str().unwrap()
            ),
            &other,
            json!({"host": "example.org"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = restore(&api, &owner, cp["id"].as_str().unwrap(), "2").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains(svc_id), "{body}");
    assert!(!body.to_string().contains("example.org"), "{body}");
    let (services, _, version) = current(&api, &owner, &base).await;
    assert_eq!((services, version), (json!([]), 3), "nothing changed");
    api.stop().await;
}
