//! The analytics and usage endpoints over a SQLite analytics store: request logs of two tenants'
//! real control planes (made through the API) are stored as the ingester would store them, and
//! each tenant's answers are checked — numbers, names, CSV, refusals, roles and isolation.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{session_cookie, TestApi};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

/// A tenant with two control planes, `shop` (service `orders`, route `orders-route`) and `blog`
/// (service `posts`, route `posts`).
struct Tenant {
    token: String,
    organization: Uuid,
    shop: ControlPlane,
    blog: ControlPlane,
}

struct ControlPlane {
    id: Uuid,
    slug: String,
    service: Uuid,
    route: Uuid,
}

fn id_of(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {value}"))
}

async fn control_plane(
    api: &TestApi,
    token: &str,
    name: &str,
    service: &str,
    route: &str,
) -> ControlPlane {
    let cp = api.control_plane(token, name).await;
    let base = format!("/api/v1/control-planes/{}", id_of(&cp));
    let (status, svc) = api
        .post(
            &format!("{base}/services"),
            token,
            json!({"name": service, "url": "http://upstream.example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{svc}");
    let (status, rt) = api
        .post(
            &format!("{base}/services/{service}/routes"),
            token,
            json!({"name": route, "paths": [format!("/{route}")]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rt}");
    ControlPlane {
        id: id_of(&cp),
        slug: cp["slug"].as_str().expect("slug").to_string(),
        service: id_of(&svc),
        route: id_of(&rt),
    }
}

async fn tenant(api: &TestApi, org: &str) -> Tenant {
    let token = api.tenant(org).await;
    let (status, me) = api.get("/api/v1/me", &token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let organization = me["organization"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("organization id");
    let shop = control_plane(
        api,
        &token,
        &format!("{org}-shop"),
        "orders",
        "orders-route",
    )
    .await;
    let blog = control_plane(api, &token, &format!("{org}-blog"), "posts", "posts").await;
    Tenant {
        token,
        organization,
        shop,
        blog,
    }
}

/// What one logged request varies in; everything else is fixed.
struct Req {
    at: DateTime<Utc>,
    status: u16,
    total_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
}

fn req(at: DateTime<Utc>, status: u16, total_ms: u64, bytes_in: u64, bytes_out: u64) -> Req {
    Req {
        at,
        status,
        total_ms,
        bytes_in,
        bytes_out,
    }
}

/// A log line of `tenant` on `cp`; `routed: false` is a request no route matched.
fn line(tenant: &Tenant, cp: &ControlPlane, routed: bool, r: Req) -> RequestLog {
    let upstream = (routed && r.status != 404).then_some(r.total_ms * 800);
    RequestLog {
        id: Uuid::now_v7(),
        time: r.at,
        organization_id: tenant.organization,
        control_plane_id: cp.id,
        node_id: Uuid::from_u128(7),
        region: "default".into(),
        request_id: Uuid::new_v4().to_string(),
        service_id: routed.then_some(cp.service),
        route_id: routed.then_some(cp.route),
        consumer_id: None,
        method: "GET".into(),
        host: format!("{}.localhost", cp.slug),
        path: "/orders/1".into(),
        status: r.status,
        latency_total_us: r.total_ms * 1000,
        latency_upstream_us: upstream,
        latency_edge_us: r.total_ms * 1000 - upstream.unwrap_or(0),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        client_ip: "192.0.2.1".into(),
        ai: AiUsage::default(),
    }
}

fn batch(logs: Vec<RequestLog>) -> LogBatch {
    LogBatch {
        id: Uuid::now_v7(),
        node_id: Uuid::from_u128(7),
        logs,
    }
}

/// 2025-06-10T12:00:00Z.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap()
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `?from=t0&to=t0+1h` and `extra`.
fn hour_query(extra: &str) -> String {
    format!(
        "from={}&to={}{extra}",
        rfc3339(t0()),
        rfc3339(t0() + Duration::hours(1))
    )
}

/// A's traffic in the hour after t0: on shop three routed requests (200, 200, 500) and one no
/// route matched (404); on blog one routed 404. B's: two 200s on its shop.
async fn seed(api: &TestApi, a: &Tenant, b: &Tenant) -> Vec<RequestLog> {
    let m = |minutes| t0() + Duration::minutes(minutes);
    let a_logs = vec![
        line(a, &a.shop, true, req(m(0), 200, 10, 100, 1000)),
        line(a, &a.shop, true, req(m(1), 200, 20, 0, 2000)),
        line(a, &a.shop, true, req(m(1), 500, 30, 50, 10)),
        line(a, &a.shop, false, req(m(2), 404, 1, 0, 50)),
        line(a, &a.blog, true, req(m(30), 404, 2, 0, 60)),
    ];
    let b_logs = vec![
        line(b, &b.shop, true, req(m(0), 200, 5, 1, 1)),
        line(b, &b.shop, true, req(m(5), 200, 5, 1, 1)),
    ];
    api.insert_logs(&[batch(a_logs.clone()), batch(b_logs)])
        .await;
    a_logs
}

#[tokio::test]
async fn series_top_totals_and_requests_answer_with_the_callers_traffic() {
    let api = TestApi::start().await;
    let a = tenant(&api, "acme").await;
    let b = tenant(&api, "bolt").await;
    let a_logs = seed(&api, &a, &b).await;

    let (status, series) = api
        .get(
            &format!("/api/v1/analytics/series?{}&bucket=minute", hour_query("")),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(series["bucket"], "minute");
    assert_eq!(series["from"], "2025-06-10T12:00:00Z");
    let points: Vec<(String, u64, u64, u64)> = series["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| {
            (
                p["time"].as_str().unwrap().to_string(),
                p["requests"].as_u64().unwrap(),
                p["errors_4xx"].as_u64().unwrap(),
                p["errors_5xx"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        points,
        vec![
            ("2025-06-10T12:00:00Z".into(), 1, 0, 0),
            ("2025-06-10T12:01:00Z".into(), 2, 0, 1),
            ("2025-06-10T12:02:00Z".into(), 1, 1, 0),
            ("2025-06-10T12:30:00Z".into(), 1, 1, 0),
        ]
    );
    // Minute 1 holds 20 and 30 ms: nearest-rank p50 is 20, p99 30.
    assert_eq!(series["data"][1]["latency_ms"]["total"]["p50"], 20.0);
    assert_eq!(series["data"][1]["latency_ms"]["total"]["p99"], 30.0);

    let (status, grouped) = api
        .get(
            &format!(
                "/api/v1/analytics/series?{}&bucket=hour&group_by=control_plane",
                hour_query("")
            ),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{grouped}");
    assert_eq!(grouped["group_by"], "control_plane");
    let mut groups: Vec<(String, u64)> = grouped["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["group"].as_str().unwrap().to_string(),
                p["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    let mut expected = vec![(a.shop.id.to_string(), 4), (a.blog.id.to_string(), 1)];
    expected.sort();
    assert_eq!(groups, expected);

    // Top routes carry the route's current name; unmatched requests have no key and no name.
    let (status, top) = api
        .get(
            &format!("/api/v1/analytics/top?{}&by=route", hour_query("")),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(top["by"], "route");
    let rows: Vec<(Value, Value, u64)> = top["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].clone(),
                r["name"].clone(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut singles = vec![
        (json!(a.blog.route.to_string()), json!("posts"), 1),
        (Value::Null, Value::Null, 1),
    ];
    // Ties by key, requests without a key last.
    singles.sort_by_key(|(key, ..)| (key.is_null(), key.as_str().map(str::to_string)));
    let mut expected = vec![(json!(a.shop.route.to_string()), json!("orders-route"), 3)];
    expected.extend(singles);
    assert_eq!(rows, expected);

    let (status, top) = api
        .get(
            &format!(
                "/api/v1/analytics/top?{}&by=control_plane&limit=1",
                hour_query("")
            ),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(top["data"].as_array().unwrap().len(), 1);
    assert_eq!(top["data"][0]["key"], a.shop.id.to_string());
    assert_eq!(top["data"][0]["name"], "acme-shop");
    assert_eq!(top["data"][0]["requests"], 4);

    // The control plane filter takes an id or a slug.
    for cp in [a.shop.id.to_string(), a.shop.slug.clone()] {
        let (status, top) = api
            .get(
                &format!(
                    "/api/v1/analytics/top?{}",
                    hour_query(&format!("&by=service&control_plane={cp}"))
                ),
                &a.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{top}");
        assert_eq!(top["data"][0]["key"], a.shop.service.to_string());
        assert_eq!(top["data"][0]["name"], "orders");
        assert_eq!(top["data"][0]["requests"], 3);
        assert_eq!(top["data"][1]["key"], Value::Null);
    }

    let (status, totals) = api
        .get(
            &format!("/api/v1/analytics/totals?{}", hour_query("")),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!(
        (
            &totals["requests"],
            &totals["errors_4xx"],
            &totals["errors_5xx"],
            &totals["bytes_in"],
            &totals["bytes_out"]
        ),
        (&json!(5), &json!(2), &json!(1), &json!(150), &json!(3120))
    );
    // Total ms 1, 2, 10, 20, 30.
    assert_eq!(totals["latency_ms"]["total"]["p50"], 10.0);
    let (_, filtered) = api
        .get(
            &format!("/api/v1/analytics/totals?{}", hour_query("&status=404")),
            &a.token,
        )
        .await;
    assert_eq!(filtered["requests"], 2);

    let (status, recent) = api
        .get(
            &format!("/api/v1/analytics/requests?{}&limit=2", hour_query("")),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    let lines = recent["data"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let newest = &a_logs[4];
    assert_eq!(lines[0]["id"], newest.id.to_string());
    assert_eq!(lines[0]["route_id"], a.blog.route.to_string());
    assert_eq!(lines[0]["status"], 404);
    assert_eq!(lines[0]["time"], "2025-06-10T12:30:00Z");
    assert_eq!(lines[0]["host"], newest.host);
    assert_eq!(lines[1]["id"], a_logs[3].id.to_string());
    assert_eq!(lines[1]["route_id"], Value::Null);
    assert!(lines[0].get("organization_id").is_none());

    // A deleted route keeps its key and loses its name.
    let (status, _) = api
        .delete(
            &format!("/api/v1/control-planes/{}/routes/posts", a.blog.id),
            &a.token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, top) = api
        .get(
            &format!("/api/v1/analytics/top?{}&by=route", hour_query("")),
            &a.token,
        )
        .await;
    let posts = top["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == a.blog.route.to_string())
        .expect("the deleted route's traffic stays");
    assert_eq!(posts["name"], Value::Null);

    // B sees its own two requests and nothing of A's.
    let (_, totals) = api
        .get(
            &format!("/api/v1/analytics/totals?{}", hour_query("")),
            &b.token,
        )
        .await;
    assert_eq!(totals["requests"], 2);
    assert_eq!(totals["errors_5xx"], 0);
    for filter in [
        format!("route={}", a.shop.route),
        format!("service={}", a.shop.service),
        "status=500".to_string(),
    ] {
        let query = hour_query(&format!("&{filter}"));
        let (status, totals) = api
            .get(&format!("/api/v1/analytics/totals?{query}"), &b.token)
            .await;
        assert_eq!(status, StatusCode::OK, "{totals}");
        assert_eq!(totals["requests"], 0, "{filter}");
        let (_, recent) = api
            .get(&format!("/api/v1/analytics/requests?{query}"), &b.token)
            .await;
        assert_eq!(recent["data"], json!([]), "{filter}");
        let (_, top) = api
            .get(&format!("/api/v1/analytics/top?{query}&by=route"), &b.token)
            .await;
        assert_eq!(top["data"], json!([]), "{filter}");
    }
    let (_, top) = api
        .get(
            &format!("/api/v1/analytics/top?{}&by=control_plane", hour_query("")),
            &b.token,
        )
        .await;
    assert_eq!(top["data"].as_array().unwrap().len(), 1);
    assert_eq!(top["data"][0]["key"], b.shop.id.to_string());

    api.stop().await;
}

#[tokio::test]
async fn another_tenants_control_plane_is_not_found() {
    let api = TestApi::start().await;
    let a = tenant(&api, "owner").await;
    let b = tenant(&api, "prober").await;
    seed(&api, &a, &b).await;
    for path in ["series", "top", "totals", "requests"] {
        for cp in [
            a.shop.id.to_string(),
            a.shop.slug.clone(),
            Uuid::now_v7().to_string(),
        ] {
            let (status, body) = api
                .get(
                    &format!(
                        "/api/v1/analytics/{path}?{}",
                        hour_query(&format!("&control_plane={cp}"))
                    ),
                    &b.token,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {cp}: {body}");
            assert_eq!(body["name"], "not found");
        }
    }
    // Unauthenticated callers get nothing either.
    let (status, _) = api
        .call(reqwest::Method::GET, "/api/v1/analytics/totals", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(reqwest::Method::GET, "/api/v1/usage", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    api.stop().await;
}

#[tokio::test]
async fn usage_counts_days_and_control_planes_and_exports_csv() {
    let api = TestApi::start().await;
    let a = tenant(&api, "meter").await;
    let b = tenant(&api, "other").await;
    let june = |d, h| Utc.with_ymd_and_hms(2025, 6, d, h, 0, 0).unwrap();
    api.insert_logs(&[batch(vec![
        line(&a, &a.shop, true, req(june(3, 8), 200, 1, 10, 100)),
        line(&a, &a.shop, true, req(june(3, 23), 200, 1, 10, 100)),
        line(&a, &a.blog, true, req(june(30, 23), 200, 1, 5, 7)),
        line(
            &a,
            &a.blog,
            true,
            req(
                Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap(),
                200,
                1,
                1,
                1,
            ),
        ),
        line(&a, &a.shop, true, req(Utc::now(), 200, 1, 3, 4)),
    ])])
    .await;

    let (status, usage) = api.get("/api/v1/usage?month=2025-06", &a.token).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let mut keys: Vec<&str> = usage
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytes_in",
            "bytes_out",
            "control_planes",
            "days",
            "month",
            "requests"
        ]
    );
    assert_eq!(usage["month"], "2025-06");
    assert_eq!(
        (&usage["requests"], &usage["bytes_in"], &usage["bytes_out"]),
        (&json!(3), &json!(25), &json!(207))
    );
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 30, "every day of a past month");
    assert_eq!(
        days[0],
        json!({"date": "2025-06-01", "requests": 0, "bytes_in": 0, "bytes_out": 0})
    );
    assert_eq!(
        days[2],
        json!({"date": "2025-06-03", "requests": 2, "bytes_in": 20, "bytes_out": 200})
    );
    assert_eq!(
        days[29],
        json!({"date": "2025-06-30", "requests": 1, "bytes_in": 5, "bytes_out": 7})
    );
    assert_eq!(
        usage["control_planes"],
        json!([
            {"id": a.shop.id, "name": "meter-shop", "requests": 2},
            {"id": a.blog.id, "name": "meter-blog", "requests": 1},
        ])
    );

    let csv = |path: &str, accept: Option<&str>| {
        let mut request = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&a.token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        async move {
            let resp = request.send().await.expect("csv");
            let status = resp.status();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (status, content_type, resp.text().await.expect("body"))
        }
    };
    let (status, content_type, text) = csv("/api/v1/usage.csv?month=2025-06", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 31, "a header and 30 days");
    assert_eq!(rows[0], "date,requests,bytes_in,bytes_out");
    assert_eq!(rows[1], "2025-06-01,0,0,0");
    assert_eq!(rows[3], "2025-06-03,2,20,200");
    assert_eq!(rows[30], "2025-06-30,1,5,7");
    let (status, content_type, by_accept) =
        csv("/api/v1/usage?month=2025-06", Some("text/csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(by_accept, text);

    // Without a month: the current one, from the 1st to today.
    let (status, current) = api.get("/api/v1/usage", &a.token).await;
    assert_eq!(status, StatusCode::OK, "{current}");
    let now = Utc::now();
    assert_eq!(current["month"], now.format("%Y-%m").to_string());
    assert_eq!(current["requests"], 1);
    let days = current["days"].as_array().unwrap();
    assert_eq!(days[0]["date"], now.format("%Y-%m-01").to_string());
    let last = days.last().unwrap()["date"].as_str().unwrap().to_string();
    assert!(
        last == now.format("%Y-%m-%d").to_string()
            || last == (now - Duration::minutes(1)).format("%Y-%m-%d").to_string(),
        "last day {last} is today"
    );

    // B metered nothing in June.
    let (_, theirs) = api.get("/api/v1/usage?month=2025-06", &b.token).await;
    assert_eq!(theirs["requests"], 0);
    assert_eq!(theirs["control_planes"], json!([]));
    assert_eq!(theirs["days"].as_array().unwrap().len(), 30);

    for bad in ["2025-13", "June", "2025-6"] {
        let (status, body) = api
            .get(&format!("/api/v1/usage?month={bad}"), &a.token)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["fields"]["month"].is_string(), "{body}");
        let (status, _, _) = csv(&format!("/api/v1/usage.csv?month={bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    api.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_refused_with_the_parameter_named() {
    let api = TestApi::start().await;
    let token = api.tenant("strict").await;
    let t = rfc3339(t0());
    let cases = [
        ("series", "from=yesterday".to_string(), "from"),
        ("series", "to=2025-06-10".to_string(), "to"),
        ("series", format!("from={t}&to={t}"), "to"),
        ("series", "bucket=week".to_string(), "bucket"),
        ("series", "group_by=colour".to_string(), "group_by"),
        (
            "series",
            format!(
                "from={t}&to={}&bucket=minute",
                rfc3339(t0() + Duration::days(30))
            ),
            "bucket",
        ),
        ("totals", "status=abc".to_string(), "status"),
        ("totals", "status=700".to_string(), "status"),
        ("totals", "service=not-an-id".to_string(), "service"),
        ("totals", "route=42".to_string(), "route"),
        ("totals", "consumer=x".to_string(), "consumer"),
        ("totals", "node=x".to_string(), "node"),
        ("top", "by=colour".to_string(), "by"),
        ("top", "limit=0".to_string(), "limit"),
        ("top", "limit=1001".to_string(), "limit"),
        ("requests", "limit=5000".to_string(), "limit"),
        ("requests", "limit=-1".to_string(), "limit"),
    ];
    for (path, query, field) in cases {
        let (status, body) = api
            .get(&format!("/api/v1/analytics/{path}?{query}"), &token)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}?{query}: {body}");
        assert_eq!(body["name"], "schema violation", "{body}");
        assert!(
            body["fields"][field].is_string(),
            "{path}?{query} names {field}: {body}"
        );
    }
    // A repeated parameter is refused with the API's error body too.
    let (status, body) = api
        .get("/api/v1/analytics/totals?status=200&status=404", &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 22);

    // A 30-day range without a bucket picks hours and is accepted.
    let (status, body) = api
        .get(
            &format!(
                "/api/v1/analytics/series?from={t}&to={}",
                rfc3339(t0() + Duration::days(30))
            ),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["bucket"], "hour");

    // Every endpoint is in the OpenAPI document with its parameters.
    let (status, doc) = api.get("/api/v1/openapi.json", &token).await;
    assert_eq!(status, StatusCode::OK);
    for (path, params) in [
        (
            "/api/v1/analytics/series",
            &[
                "from",
                "to",
                "bucket",
                "group_by",
                "control_plane",
                "region",
            ][..],
        ),
        ("/api/v1/analytics/top", &["by", "limit", "route"][..]),
        ("/api/v1/analytics/totals", &["from", "status"][..]),
        ("/api/v1/analytics/requests", &["limit", "node"][..]),
        ("/api/v1/usage", &["month"][..]),
        ("/api/v1/usage.csv", &["month"][..]),
    ] {
        let documented: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} is documented"))
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for param in params {
            assert!(documented.contains(param), "{path} documents {param}");
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn viewers_read_analytics_and_the_default_range_is_the_last_hour() {
    let api = TestApi::start().await;
    let a = tenant(&api, "viewed").await;
    let now = Utc::now();
    api.insert_logs(&[batch(vec![
        line(
            &a,
            &a.shop,
            true,
            req(now - Duration::minutes(10), 200, 3, 1, 2),
        ),
        line(
            &a,
            &a.shop,
            true,
            req(now - Duration::minutes(20), 200, 3, 1, 2),
        ),
        line(
            &a,
            &a.shop,
            true,
            req(now - Duration::hours(2), 200, 3, 1, 2),
        ),
    ])])
    .await;

    let (status, invitation) = api
        .post(
            "/api/v1/invitations",
            &a.token,
            json!({"email": format!("{}@viewer.example.com", Uuid::new_v4().simple()), "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let resp = api
        .http
        .post(format!("{}/api/v1/invitations/accept", api.base))
        .json(&json!({"token": invitation["token"], "password": "a long enough password"}))
        .send()
        .await
        .expect("accept");
    assert_eq!(resp.status(), StatusCode::OK);
    let viewer = session_cookie(&resp).expect("session cookie");

    let (status, totals) = api.get("/api/v1/analytics/totals", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!(totals["requests"], 2, "the last hour: {totals}");
    let from: DateTime<Utc> = totals["from"].as_str().unwrap().parse().unwrap();
    let to: DateTime<Utc> = totals["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(to - from, Duration::hours(1));
    for path in [
        "/api/v1/analytics/series",
        "/api/v1/analytics/top",
        "/api/v1/analytics/requests",
        "/api/v1/usage",
    ] {
        let (status, body) = api.get(path, &viewer).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, usage) = api.get("/api/v1/usage", &viewer).await;
    assert_eq!(usage["control_planes"][0]["name"], "viewed-shop", "{usage}");
    api.stop().await;
}

#[tokio::test]
async fn without_an_analytics_store_the_endpoints_answer_503() {
    let api = TestApi::start_without_analytics().await;
    let token = api.tenant("nostore").await;
    for path in [
        "/api/v1/analytics/series",
        "/api/v1/analytics/top",
        "/api/v1/analytics/totals",
        "/api/v1/analytics/requests",
        "/api/v1/usage",
        "/api/v1/usage.csv",
    ] {
        let (status, body) = api.get(path, &token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("analytics are not configured")),
            "{body}"
        );
    }
    api.stop().await;
}
