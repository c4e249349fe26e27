//! Kong's routing rules and priority cases through the proxy, one test each, for what
//! `proxy.rs` does not already cover (exact/wildcard/ported hosts, prefix paths, methods, exact
//! headers, regex_priority, longest path, created_at, strip_path, preserve_host, path_handling
//! are there). Services are tagged, so the upstream path tells which route served. SNIs are
//! unit-tested in the router: there is no TLS listener yet.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use uuid::Uuid;

/// Serves `routes`, each to its own tagged service, on an edge dedicated to them.
async fn serve_tagged(routes: &[(&str, serde_json::Value)]) -> Setup {
    let up = echo_upstream().await;
    let mut services = Vec::new();
    let mut built = Vec::new();
    for (created_at, (tag, input)) in (1..).zip(routes) {
        let service = tagged(up, tag);
        let mut input = input.clone();
        input["service"] = json!({ "id": service.id });
        built.push(route_at(input, created_at));
        services.push(service);
    }
    serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], services, built)).await
}

#[tokio::test]
async fn regex_paths_with_named_captures() {
    let setup = serve_tagged(&[
        (
            "posts",
            json!({"paths": ["~/users/(?<user>\\d+)/posts"], "strip_path": true}),
        ),
        (
            "orders",
            json!({"paths": ["~/orders/(?<order>[a-z0-9]+)$"], "strip_path": false}),
        ),
    ])
    .await;
    let edge = &setup.edge;
    // strip_path strips everything the regex matched.
    assert_eq!(
        get(edge, "r.test", "/users/42/posts/7").await.path(),
        "/posts/7"
    );
    assert_eq!(
        get(edge, "r.test", "/users/42/posts").await.path(),
        "/posts"
    );
    assert_eq!(
        get(edge, "r.test", "/orders/ab12").await.path(),
        "/orders/orders/ab12"
    );
    assert_eq!(get(edge, "r.test", "/users/abc/posts").await.status, 404);
    assert_eq!(get(edge, "r.test", "/orders/ab12/x").await.status, 404);
    // Anchored at the start of the path, as in Kong.
    assert_eq!(get(edge, "r.test", "/v1/users/42/posts").await.status, 404);
}

#[tokio::test]
async fn header_values_as_case_insensitive_regexes() {
    let setup = serve_tagged(&[
        ("version", json!({"headers": {"x-version": ["~*^v[23]$"]}})),
        (
            "client",
            json!({"headers": {"x-client": ["legacy", "~*mobile"]}}),
        ),
    ])
    .await;
    let edge = &setup.edge;
    let with = |name: &'static str, value: &'static str| async move {
        send(edge, "GET", "h.test", "/x", &[(name, value)]).await
    };
    assert_eq!(with("x-version", "V2").await.path(), "/version/x");
    assert_eq!(with("x-version", "v3").await.path(), "/version/x");
    assert_eq!(with("x-version", "v4").await.status, 404);
    assert_eq!(with("x-version", "v23").await.status, 404);
    assert_eq!(with("x-client", "LEGACY").await.path(), "/client/x");
    assert_eq!(with("x-client", "ios-Mobile-app").await.path(), "/client/x");
    assert_eq!(with("x-client", "desktop").await.status, 404);
}

#[tokio::test]
async fn more_fields_set_win() {
    let setup = serve_tagged(&[
        ("one", json!({"paths": ["/f"]})),
        ("two", json!({"paths": ["/f"], "methods": ["GET"]})),
        (
            "three",
            json!({"paths": ["/f"], "methods": ["GET"], "headers": {"x-a": ["1"]}}),
        ),
    ])
    .await;
    let edge = &setup.edge;
    let three = send(edge, "GET", "f.test", "/f", &[("x-a", "1")]).await;
    assert_eq!(three.path(), "/three");
    assert_eq!(get(edge, "f.test", "/f").await.path(), "/two");
    assert_eq!(send(edge, "POST", "f.test", "/f", &[]).await.path(), "/one");
}

#[tokio::test]
async fn plain_hosts_then_no_hosts_then_wildcard_hosts() {
    let setup = serve_tagged(&[
        ("wild", json!({"hosts": ["*.h.test"], "paths": ["/p"]})),
        ("nohost", json!({"methods": ["GET"], "paths": ["/p"]})),
        ("plain", json!({"hosts": ["a.h.test"], "paths": ["/p"]})),
    ])
    .await;
    let edge = &setup.edge;
    assert_eq!(get(edge, "a.h.test", "/p").await.path(), "/plain");
    assert_eq!(get(edge, "b.h.test", "/p").await.path(), "/nohost");
    let post = send(edge, "POST", "b.h.test", "/p", &[]).await;
    assert_eq!(post.path(), "/wild");
}

#[tokio::test]
async fn more_headers_first() {
    let setup = serve_tagged(&[
        ("one", json!({"headers": {"x-a": ["1"]}})),
        ("two", json!({"headers": {"x-a": ["1"], "x-b": ["2"]}})),
    ])
    .await;
    let edge = &setup.edge;
    let both = send(edge, "GET", "h.test", "/", &[("x-a", "1"), ("x-b", "2")]).await;
    assert_eq!(both.path(), "/two");
    let one = send(edge, "GET", "h.test", "/", &[("x-a", "1")]).await;
    assert_eq!(one.path(), "/one");
}

#[tokio::test]
async fn regex_paths_first_and_regex_priority_orders_only_them() {
    let setup = serve_tagged(&[
        ("plainlong", json!({"paths": ["/api/v1/users"]})),
        (
            "regex",
            json!({"paths": ["~/api/v\\d+"], "regex_priority": -3}),
        ),
        ("short", json!({"paths": ["/a"], "regex_priority": 10})),
        ("long", json!({"paths": ["/a/b"]})),
    ])
    .await;
    let edge = &setup.edge;
    // A regex path is tried before any plain one, even a longer one, whatever its priority.
    assert_eq!(
        get(edge, "p.test", "/api/v1/users").await.path(),
        "/regex/users"
    );
    // regex_priority does not reorder plain paths: the longer one still wins.
    assert_eq!(get(edge, "p.test", "/a/b/c").await.path(), "/long/c");
    assert_eq!(get(edge, "p.test", "/a/x").await.path(), "/short/x");
}

#[tokio::test]
async fn paths_are_normalized_before_matching() {
    let setup = serve_tagged(&[
        ("adm", json!({"paths": ["/admin"], "strip_path": false})),
        ("any", json!({"paths": ["/"], "strip_path": false})),
    ])
    .await;
    let edge = &setup.edge;
    for (request, upstream) in [
        ("/%61dmin/x", "/adm/admin/x"),
        ("/%61%64min", "/adm/admin"),
        ("//admin//x", "/adm/admin/x"),
        ("/public/../admin", "/adm/admin"),
        ("/public/%2e%2E/admin/./x", "/adm/admin/x"),
        ("/./admin", "/adm/admin"),
        // Reserved characters stay encoded, with upper-case hex.
        ("/admin%2fx", "/adm/admin%2Fx"),
        ("/public/%2e%2e%2fadmin", "/any/public/..%2Fadmin"),
        // A stray `%` is escaped, so no new escape forms for the upstream to decode.
        ("/%%361dmin", "/any/%2561dmin"),
    ] {
        assert_eq!(
            get_raw(edge, "n.test", request).await.path(),
            upstream,
            "{request}"
        );
    }
}

#[tokio::test]
async fn many_routes_each_reach_their_service() {
    let up = echo_upstream().await;
    let mut services = Vec::new();
    let mut routes = Vec::new();
    for i in 0..1_000 {
        let service = tagged(up, &format!("s{i}"));
        let mut input = json!({"paths": [format!("/r{i}/")], "service": {"id": service.id}});
        if i % 3 == 0 {
            input["hosts"] = json!([format!("t{i}.example.com")]);
        } else if i % 5 == 0 {
            input["hosts"] = json!([format!("*.w{i}.example.com")]);
        }
        routes.push(route(input));
        services.push(service);
    }
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], services, routes)).await;
    let edge = &setup.edge;
    for i in (0..1_000).step_by(97) {
        let host = if i % 3 == 0 {
            format!("t{i}.example.com")
        } else if i % 5 == 0 {
            format!("x.w{i}.example.com")
        } else {
            "any.test".to_string()
        };
        let answer = get(edge, &host, &format!("/r{i}/x")).await;
        assert_eq!(answer.path(), format!("/s{i}/x"), "route {i}");
        if i % 3 == 0 || i % 5 == 0 {
            assert_eq!(get(edge, "any.test", &format!("/r{i}/x")).await.status, 404);
        }
    }
}
