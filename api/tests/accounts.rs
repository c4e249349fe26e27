//! Sign-up, log-in, sessions and tokens against Postgres, Redis and NATS.

mod common;

use common::{session_cookie, TestApi};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn signup_login_me_logout() {
    let api = TestApi::start().await;
    let resp = api
        .http
        .post(format!("{}/api/v1/signup", api.base))
        .json(&json!({"email": "Ada@Example.com", "password": "correct horse battery", "organization": "Analytical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookie = session_cookie(&resp).expect("signup sets the session cookie");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["role"], "owner");

    let (status, me) = api.get("/api/v1/me", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["organization"]["name"], "Analytical");

    let (status, _) = api
        .call(Method::POST, "/api/v1/logout", Some(&cookie), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/v1/me", &cookie).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session ends at logout"
    );

    let login = |password: &'static str, email: &'static str| {
        api.call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
    };
    let (status, wrong_password) = login("wrong password!", "ada@example.com").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown_email) = login("correct horse battery", "nobody@example.com").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password, unknown_email,
        "the two failures must be indistinguishable"
    );
    let (status, _) = login("correct horse battery", "ADA@example.com").await;
    assert_eq!(status, StatusCode::OK);
    api.stop().await;
}

#[tokio::test]
async fn signup_rejects_bad_input_and_duplicates() {
    let api = TestApi::start().await;
    let signup =
        |body: serde_json::Value| api.call(Method::POST, "/api/v1/signup", None, Some(body));
    let (status, body) =
        signup(json!({"email": "a@example.com", "password": "short", "organization": "A"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["password"].is_string(), "{body}");
    let (status, body) =
        signup(json!({"email": "not-an-email", "password": "long enough pw", "organization": "A"}))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["email"].is_string(), "{body}");
    let (status, body) =
        signup(json!({"email": "a@example.com", "password": "long enough pw", "organization": ""}))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["fields"]["organization"].is_string(), "{body}");
    let (status, body) = signup(json!({"email": "a@example.com", "password": "long enough pw", "organization": "A", "admin": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fields"]["admin"], "unknown field", "{body}");
    let (status, _) = signup(
        json!({"email": "a@example.com", "password": "long enough pw", "organization": "A"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = signup(
        json!({"email": "A@example.com", "password": "long enough pw", "organization": "B"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    api.stop().await;
}

#[tokio::test]
async fn tokens_are_shown_once_work_as_bearer_and_can_be_revoked() {
    let api = TestApi::start().await;
    let token = api.tenant("tokens").await;
    let (status, created) = api
        .post("/api/v1/tokens", &token, json!({"name": "ci"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ci = created["token"].as_str().unwrap().to_string();
    assert!(ci.starts_with("tgp_"));
    let (status, list) = api.get("/api/v1/tokens", &ci).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("tests"), json!("ci")]);
    assert!(
        !list.to_string().contains(&ci),
        "a listed token never shows the secret"
    );

    let id = created["id"].as_str().unwrap();
    let (status, _) = api.delete(&format!("/api/v1/tokens/{id}"), &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get("/api/v1/me", &ci).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = api.delete(&format!("/api/v1/tokens/{id}"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = api.call(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], 20);
    let (status, _) = api.get("/api/v1/me", "tgp_not_a_real_token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (method, path) in [
        (Method::GET, "/api/v1/control-planes"),
        (Method::POST, "/api/v1/control-planes"),
        (Method::GET, "/api/v1/tokens"),
        (Method::GET, "/api/v1/control-planes/some-slug/services"),
        (Method::DELETE, "/api/v1/control-planes/some-slug/routes/r"),
    ] {
        let body = (method == Method::POST).then(|| json!({"name": "x"}));
        let (status, _) = api.call(method.clone(), path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    api.stop().await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited() {
    let api = TestApi::start().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _) = api
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                Some(json!({"email": "victim@example.com", "password": "guess guess guess"})),
            )
            .await;
        statuses.push(status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    api.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let api = TestApi::start().await;
    let (status, doc) = api
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/signup",
        "/api/v1/login",
        "/api/v1/logout",
        "/api/v1/me",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/control-planes",
        "/api/v1/control-planes/{cp}",
        "/api/v1/control-planes/{cp}/services",
        "/api/v1/control-planes/{cp}/services/{service}",
        "/api/v1/control-planes/{cp}/services/{service}/routes",
        "/api/v1/control-planes/{cp}/routes",
        "/api/v1/control-planes/{cp}/routes/{route}",
        "/api/v1/control-planes/{cp}/config/versions",
        "/api/v1/control-planes/{cp}/nodes",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    let service_item = &paths["/api/v1/control-planes/{cp}/services/{service}"];
    for method in ["get", "patch", "put", "delete"] {
        assert!(service_item.get(method).is_some(), "missing {method}");
    }
    let cp = "/api/v1/control-planes/{cp}";
    let item = ["get", "patch", "put", "delete"];
    let collection = ["get", "post"];
    for (path, methods) in [
        ("upstreams", &collection[..]),
        ("upstreams/{upstream}", &item[..]),
        ("upstreams/{upstream}/health", &["get"][..]),
        ("upstreams/{upstream}/targets", &collection[..]),
        ("upstreams/{upstream}/targets/{target}", &item[..]),
        ("certificates", &collection[..]),
        ("certificates/{certificate}", &item[..]),
        ("certificates/{certificate}/snis", &collection[..]),
        ("snis", &collection[..]),
        ("snis/{sni}", &item[..]),
    ] {
        let path = format!("{cp}/{path}");
        for method in methods {
            assert!(paths[&path][method].is_object(), "missing {method} {path}");
        }
    }
    assert!(
        !paths.contains_key(&format!("{cp}/targets")),
        "Kong 3 has no top-level targets"
    );
    let schemas = &doc["components"]["schemas"];
    for schema in ["Upstream", "Target", "Certificate", "Sni", "UpstreamHealth"] {
        assert!(schemas[schema].is_object(), "missing schema {schema}");
    }
    api.stop().await;
}
