//! Control planes, services and routes: Kong conventions, validation that changes nothing,
//! config versions and publishing.

mod common;

use std::time::Duration;

use common::{eventually, TestApi};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn version(api: &TestApi, token: &str, cp: &str) -> i64 {
    let (_, cp) = api
        .get(&format!("/api/v1/control-planes/{cp}"), token)
        .await;
    cp["config_version"].as_i64().unwrap()
}

#[tokio::test]
async fn services_and_routes_follow_kong_conventions() {
    let api = TestApi::start().await;
    let token = api.tenant("acme").await;
    let cp = api.control_plane(&token, "Acme Prod").await;
    assert_eq!(cp["slug"], "acme-prod");
    assert_eq!(cp["proxy_url"], "http://acme-prod.localhost:8000");
    assert_eq!(cp["hostnames"], json!(["acme-prod.localhost"]));
    assert_eq!(cp["config_version"], 1);
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());

    let (status, svc) = api
        .post(
            &format!("{base}/services"),
            &token,
            json!({"name": "echo", "url": "http://127.0.0.1:9999/v1", "tags": ["team-a", "prod"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{svc}");
    assert_eq!(
        (
            svc["protocol"].clone(),
            svc["host"].clone(),
            svc["port"].clone(),
            svc["path"].clone()
        ),
        (json!("http"), json!("127.0.0.1"), json!(9999), json!("/v1"))
    );
    assert_eq!(
        (svc["retries"].clone(), svc["read_timeout"].clone()),
        (json!(5), json!(60000))
    );

    // Nested create, lookup by name, defaults.
    let (status, route) = api
        .post(
            &format!("{base}/services/echo/routes"),
            &token,
            json!({"name": "r1", "paths": ["/echo"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(route["service"]["id"], svc["id"]);
    assert_eq!(
        (route["strip_path"].clone(), route["protocols"].clone()),
        (json!(true), json!(["http", "https"]))
    );
    let (status, by_name) = api.get(&format!("{base}/routes/r1"), &token).await;
    assert_eq!(
        (status, by_name["id"].clone()),
        (StatusCode::OK, route["id"].clone())
    );
    let (_, nested) = api
        .get(
            &format!("{base}/services/{}/routes", svc["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(nested["data"].as_array().unwrap().len(), 1);

    // A route can name its service.
    let (status, r2) = api
        .post(
            &format!("{base}/routes"),
            &token,
            json!({"name": "r2", "hosts": ["api.example.com"], "service": {"name": "echo"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r2}");
    assert_eq!(r2["service"]["id"], svc["id"]);

    // PATCH changes only what it names.
    let (status, patched) = api
        .patch(
            &format!("{base}/routes/r1"),
            &token,
            json!({"strip_path": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (patched["strip_path"].clone(), patched["paths"].clone()),
        (json!(false), json!(["/echo"]))
    );

    // PUT upserts by name: creates, then replaces (fields not given go back to defaults).
    let (status, put) = api
        .put(
            &format!("{base}/services/other"),
            &token,
            json!({"host": "example.com", "retries": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["name"], "other");
    let (status, replaced) = api
        .put(
            &format!("{base}/services/other"),
            &token,
            json!({"host": "example.org"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (replaced["id"].clone(), replaced["retries"].clone()),
        (put["id"].clone(), json!(5))
    );
    // PUT by a new id creates with that id.
    let id = Uuid::now_v7().to_string();
    let (status, by_id) = api
        .put(
            &format!("{base}/services/{id}"),
            &token,
            json!({"host": "example.net"}),
        )
        .await;
    assert_eq!((status, by_id["id"].clone()), (StatusCode::OK, json!(id)));

    // Lists: envelope, pagination, tags.
    let (_, page1) = api.get(&format!("{base}/services?size=2"), &token).await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().expect("a next page");
    let (_, page2) = api.get(next, &token).await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert_eq!(page2["next"], Value::Null);
    let (_, tagged) = api
        .get(&format!("{base}/services?tags=team-a,prod"), &token)
        .await;
    assert_eq!(tagged["data"].as_array().unwrap().len(), 1);
    let (_, either) = api
        .get(&format!("{base}/services?tags=nope/prod"), &token)
        .await;
    assert_eq!(either["data"].as_array().unwrap().len(), 1);
    let (_, none) = api
        .get(&format!("{base}/services?tags=team-a,nope"), &token)
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    // A service with routes cannot be deleted; without, it can.
    let (status, body) = api.delete(&format!("{base}/services/echo"), &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for r in ["r1", "r2"] {
        let (status, _) = api.delete(&format!("{base}/routes/{r}"), &token).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, _) = api.delete(&format!("{base}/services/echo"), &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&format!("{base}/services/echo"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.stop().await;
}

#[tokio::test]
async fn bad_input_gets_400_with_fields_and_changes_nothing() {
    let api = TestApi::start().await;
    let token = api.tenant("strict").await;
    let cp = api.control_plane(&token, "strict").await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().unwrap());
    let (status, _) = api
        .post(
            &format!("{base}/services"),
            &token,
            json!({"name": "svc", "url": "http://example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .post(
            &format!("{base}/routes"),
            &token,
            json!({"name": "taken", "paths": ["/t"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before_version = version(&api, &token, "strict").await;
    let (_, before_services) = api.get(&format!("{base}/services"), &token).await;
    let (_, before_routes) = api.get(&format!("{base}/routes"), &token).await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "services",
            json!({"name": "x", "url": "http:///nohost"}),
            "url",
        ),
        (
            "services",
            json!({"name": "x", "host": "example.com", "port": 70000}),
            "port",
        ),
        (
            "services",
            json!({"name": "x", "host": "example.com", "port": -1}),
            "port",
        ),
        (
            "services",
            json!({"name": "svc", "host": "example.com"}),
            "name",
        ),
        (
            "services",
            json!({"name": "x", "host": "example.com", "colour": "red"}),
            "colour",
        ),
        ("services", json!({"name": "x"}), "host"),
        (
            "routes",
            json!({"name": "r", "service": {"name": "svc"}}),
            "@entity",
        ),
        (
            "routes",
            json!({"name": "r", "paths": ["no-slash"]}),
            "paths[0]",
        ),
        (
            "routes",
            json!({"name": "r", "paths": ["/ok"], "service": {"name": "missing"}}),
            "service",
        ),
        (
            "routes",
            json!({"name": "r", "paths": ["/ok"], "methods": ["get"]}),
            "methods[0]",
        ),
        (
            "routes",
            json!({"name": "r", "hosts": ["bad host"]}),
            "hosts[0]",
        ),
        (
            "routes",
            json!({"name": "r", "paths": "/not-a-list"}),
            "paths",
        ),
    ];
    for (kind, body, field) in cases {
        let (status, resp) = api
            .post(&format!("{base}/{kind}"), &token, body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {body}: {resp}");
        assert!(
            resp["fields"][field].is_string(),
            "{kind} {body}: expected field {field} in {resp}"
        );
        assert!(
            resp["code"].is_number() && resp["name"].is_string() && resp["message"].is_string(),
            "{resp}"
        );
    }

    // Malformed JSON, wrong content type, a body over 1 MiB.
    let raw = |body: &'static str| {
        api.http
            .post(format!("{}{base}/services", api.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = raw("{\"name\": ").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["fields"]["@body"].is_string(), "{body}");
    let resp = api
        .http
        .post(format!("{}{base}/services", api.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"name": "big", "host": "example.com", "tags": ["x".repeat(1024 * 1024)]});
    let (status, _) = api.post(&format!("{base}/services"), &token, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // PATCH and PUT are validated the same way.
    let (status, resp) = api
        .patch(
            &format!("{base}/services/svc"),
            &token,
            json!({"port": 99999}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resp["fields"]["port"].is_string());
    let (status, _) = api
        .put(
            &format!("{base}/services/svc"),
            &token,
            json!({"protocol": "gopher", "host": "example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(
        version(&api, &token, "strict").await,
        before_version,
        "no version for a refused write"
    );
    assert_eq!(
        api.get(&format!("{base}/services"), &token).await.1,
        before_services
    );
    assert_eq!(
        api.get(&format!("{base}/routes"), &token).await.1,
        before_routes
    );
    api.stop().await;
}

#[tokio::test]
async fn every_write_is_a_version_and_is_published() {
    let api = TestApi::start().await;
    let token = api.tenant("versions").await;
    let cp = api.control_plane(&token, "versions").await;
    let cp_id: Uuid = cp["id"].as_str().unwrap().parse().unwrap();
    let base = format!("/api/v1/control-planes/{cp_id}");
    api.post(
        &format!("{base}/services"),
        &token,
        json!({"name": "s", "url": "http://example.com"}),
    )
    .await;
    api.post(
        &format!("{base}/routes"),
        &token,
        json!({"name": "r", "paths": ["/"], "service": {"name": "s"}}),
    )
    .await;
    let (status, versions) = api.get(&format!("{base}/config/versions"), &token).await;
    assert_eq!(status, StatusCode::OK);
    let data = versions["data"].as_array().unwrap();
    let numbers: Vec<i64> = data
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(data[0]["summary"], "create route r");
    assert!(
        data[0]["actor"].as_str().unwrap().contains("(token tests)"),
        "{}",
        data[0]
    );
    assert!(data[0]["hash"].as_str().unwrap().starts_with("sha256:"));

    let head = eventually("version 3 on the bus", Duration::from_secs(10), || async {
        let heads = api.bus.heads().await.ok()?;
        let head = heads.iter().find(|h| h.control_plane_id == cp_id)?;
        let snapshot = api.bus.fetch_snapshot(head).await.ok().flatten()?;
        (snapshot.version == 3).then_some(snapshot)
    })
    .await;
    assert_eq!(head.hash, data[0]["hash"]);
    assert_eq!(head.routes.len(), 1);
    assert_eq!(head.hostnames, ["versions.localhost"]);

    let (status, detail) = api.get(&format!("{base}/config/versions/2"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["snapshot"]["services"].as_array().unwrap().len(), 1);
    assert_eq!(detail["snapshot"]["routes"].as_array().unwrap().len(), 0);

    // Deleting the control plane retires it from the bus.
    let (status, _) = api.delete(&base, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually("the head removed", Duration::from_secs(10), || async {
        let heads = api.bus.heads().await.ok()?;
        heads
            .iter()
            .all(|h| h.control_plane_id != cp_id)
            .then_some(())
    })
    .await;
    api.stop().await;
}

#[tokio::test]
async fn hostnames_are_unique_across_tenants() {
    let api = TestApi::start().await;
    let a = api.tenant("alpha").await;
    let b = api.tenant("beta").await;
    let cp_a = api.control_plane(&a, "shop").await;
    let cp_b = api.control_plane(&b, "shop").await;
    assert_ne!(
        cp_a["slug"], cp_b["slug"],
        "slugs are unique across tenants"
    );

    let path_a = format!("/api/v1/control-planes/{}", cp_a["id"].as_str().unwrap());
    let path_b = format!("/api/v1/control-planes/{}", cp_b["id"].as_str().unwrap());
    let (status, updated) = api
        .patch(
            &path_a,
            &a,
            json!({"hostnames": ["API.example.com", "*.shop.example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["hostnames"],
        json!(["shop.localhost", "*.shop.example.com", "api.example.com"])
    );
    assert_eq!(updated["config_version"], 2);

    let (status, body) = api
        .patch(&path_b, &b, json!({"hostnames": ["api.example.com"]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .post(
            "/api/v1/control-planes",
            &b,
            json!({"name": "x", "hostnames": ["*.shop.example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .patch(&path_b, &b, json!({"hostnames": ["shop.localhost"]}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "names under the proxy domain are assigned: {body}"
    );
    let (status, body) = api
        .patch(&path_b, &b, json!({"hostnames": ["bad name!"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["hostnames[0]"].is_string(), "{body}");

    // Releasing a name lets another tenant take it.
    let (status, _) = api.patch(&path_a, &a, json!({"hostnames": []})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .patch(&path_b, &b, json!({"hostnames": ["api.example.com"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    api.stop().await;
}

#[tokio::test]
async fn another_tenant_gets_404_for_everything() {
    let api = TestApi::start().await;
    let owner = api.tenant("owner").await;
    let other = api.tenant("other").await;
    let cp = api.control_plane(&owner, "private").await;
    let cp_id = cp["id"].as_str().unwrap().to_string();
    let slug = cp["slug"].as_str().unwrap().to_string();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (_, svc) = api
        .post(
            &format!("{base}/services"),
            &owner,
            json!({"name": "secret-svc", "url": "http://example.com"}),
        )
        .await;
    let (_, route) = api
        .post(
            &format!("{base}/routes"),
            &owner,
            json!({"name": "secret-route", "paths": ["/"], "service": {"name": "secret-svc"}}),
        )
        .await;
    let svc_id = svc["id"].as_str().unwrap();
    let route_id = route["id"].as_str().unwrap();

    for cp_ref in [cp_id.as_str(), slug.as_str()] {
        let b = format!("/api/v1/control-planes/{cp_ref}");
        for path in [
            b.clone(),
            format!("{b}/services"),
            format!("{b}/routes"),
            format!("{b}/services/{svc_id}"),
            format!("{b}/services/secret-svc"),
            format!("{b}/services/secret-svc/routes"),
            format!("{b}/routes/{route_id}"),
            format!("{b}/routes/secret-route"),
            format!("{b}/config/versions"),
            format!("{b}/nodes"),
        ] {
            let (status, body) = api.get(&path, &other).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
            assert!(!body.to_string().contains("secret"), "{body}");
        }
        let (status, _) = api.patch(&b, &other, json!({"name": "pwned"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .patch(
                &format!("{b}/services/secret-svc"),
                &other,
                json!({"retries": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .put(
                &format!("{b}/routes/secret-route"),
                &other,
                json!({"paths": ["/x"]}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .post(
                &format!("{b}/services"),
                &other,
                json!({"host": "evil.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api.delete(&format!("{b}/routes/{route_id}"), &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api.delete(&b, &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // The other tenant's own control plane cannot reach the first one's entities either.
    let theirs = api.control_plane(&other, "theirs").await;
    let their_base = format!("/api/v1/control-planes/{}", theirs["id"].as_str().unwrap());
    let (status, _) = api
        .get(&format!("{their_base}/services/{svc_id}"), &other)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post(
            &format!("{their_base}/routes"),
            &other,
            json!({"paths": ["/"], "service": {"id": svc_id}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a foreign service id does not resolve: {body}"
    );
    let (_, list) = api.get("/api/v1/control-planes", &other).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&cp_id));

    // Nothing changed for the owner.
    let (_, cp_now) = api.get(&base, &owner).await;
    assert_eq!(
        (cp_now["name"].clone(), cp_now["config_version"].clone()),
        (json!("private"), json!(3))
    );
    let (status, _) = api
        .get(&format!("{base}/routes/secret-route"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    api.stop().await;
}
