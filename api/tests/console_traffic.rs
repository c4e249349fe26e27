//! The console's Traffic dashboard, Usage page and "requests today" over plain HTTP, against a
//! store holding known request logs of two tenants: the numbers are right, filters narrow them,
//! CSV exports carry the same rows, viewers can read them, and one tenant never sees the other's.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::TestApi;
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tollgate_analytics::query::Bucket;
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

/// A cookie-keeping client that does not follow redirects, as a browser without JavaScript.
struct Browser {
    http: reqwest::Client,
    base: String,
}

struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Browser {
    fn new(api: &TestApi) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: api.base.clone(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    async fn json(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let value: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }
}

fn id(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id")
}

/// One organization with a control plane, a service and two routes, signed in.
struct Tenant {
    browser: Browser,
    organization: Uuid,
    plane: Uuid,
    service: Uuid,
    orders: Uuid,
    health: Uuid,
}

async fn tenant(api: &TestApi, name: &str) -> Tenant {
    let browser = Browser::new(api);
    let me = browser
        .json(
            "/api/v1/signup",
            json!({"email": format!("ops@{name}.example.com"), "password": "a long password", "organization": name}),
        )
        .await;
    let organization = id(&me["organization"]);
    let plane = id(&browser
        .json(
            "/api/v1/control-planes",
            json!({"name": format!("{name}-prod")}),
        )
        .await);
    let service = id(&browser
        .json(
            &format!("/api/v1/control-planes/{plane}/services"),
            json!({"name": format!("{name}-orders-svc"), "url": "http://orders.internal:8080"}),
        )
        .await);
    let mut routes = Vec::new();
    for route in ["orders", "health"] {
        routes.push(id(&browser
            .json(
                &format!("/api/v1/control-planes/{plane}/routes"),
                json!({"name": format!("{name}-{route}-route"), "paths": [format!("/{route}")], "service": {"id": service}}),
            )
            .await));
    }
    Tenant {
        browser,
        organization,
        plane,
        service,
        orders: routes[0],
        health: routes[1],
    }
}

/// A time inside the current minute's neighbourhood and inside today (UTC), so the logs fall in
/// the default "last hour", in "today" and in this month.
fn recently() -> DateTime<Utc> {
    let now = Utc::now();
    (now - Duration::seconds(20)).max(Bucket::Day.start_of(now))
}

fn log(t: &Tenant, route: Option<Uuid>, status: u16, latency_ms: u64) -> RequestLog {
    RequestLog {
        id: Uuid::now_v7(),
        time: recently(),
        organization_id: t.organization,
        control_plane_id: t.plane,
        node_id: Uuid::nil(),
        region: "eu-west".into(),
        request_id: Uuid::new_v4().to_string(),
        service_id: route.map(|_| t.service),
        route_id: route,
        consumer_id: None,
        method: "GET".into(),
        host: "example.com".into(),
        path: "/orders".into(),
        status,
        latency_total_us: latency_ms * 1000,
        latency_upstream_us: route.map(|_| latency_ms * 800),
        latency_edge_us: latency_ms * 200,
        bytes_in: 10,
        bytes_out: 100,
        client_ip: "127.0.0.1".into(),
        ai: AiUsage::default(),
    }
}

fn batch(logs: Vec<RequestLog>) -> LogBatch {
    LogBatch {
        id: Uuid::now_v7(),
        node_id: Uuid::nil(),
        logs,
    }
}

/// Tenant A's known traffic: on `orders` six 200s, two 404s and a 502; on `health` three 200s;
/// one request no route matched (404). Thirteen requests, 3 × 4xx, 1 × 5xx.
fn traffic_of_a(a: &Tenant) -> LogBatch {
    let mut logs = Vec::new();
    for i in 0..6 {
        logs.push(log(a, Some(a.orders), 200, 10 + i));
    }
    logs.push(log(a, Some(a.orders), 404, 5));
    logs.push(log(a, Some(a.orders), 404, 5));
    logs.push(log(a, Some(a.orders), 502, 900));
    for _ in 0..3 {
        logs.push(log(a, Some(a.health), 200, 2));
    }
    logs.push(log(a, None, 404, 1));
    batch(logs)
}

/// The text of the `<dd data-stat="name">` on a page.
fn stat(html: &str, name: &str) -> String {
    let marker = format!("data-stat=\"{name}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no stat {name} in {html}"))
        + marker.len();
    let rest = &html[start..];
    // The value may be wrapped in a link; take the text before the closing </dd>.
    let end = rest.find("</dd>").expect("closing dd");
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_string()
}

/// CSV rows (without the header) as fields.
fn csv_rows(page: &Page) -> Vec<Vec<String>> {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.headers["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let disposition = page.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    page.body
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn column(rows: &[Vec<String>], index: usize) -> u64 {
    rows.iter()
        .map(|r| r[index].parse::<u64>().expect("a count"))
        .sum()
}

#[tokio::test]
async fn each_tenant_sees_its_own_traffic_filtered_charted_and_exported() {
    let api = TestApi::start().await;
    let a = tenant(&api, "acme").await;
    let b = tenant(&api, "bolt").await;
    api.insert_logs(&[traffic_of_a(&a)]).await;
    api.insert_logs(&[batch(
        (0..4).map(|_| log(&b, Some(b.orders), 200, 3)).collect(),
    )])
    .await;

    // A's dashboard: the counts, the charts, names instead of ids, drill-down links.
    let page = a.browser.get("/traffic").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert_eq!(stat(html, "requests"), "13");
    assert_eq!(stat(html, "errors_4xx"), "3");
    assert_eq!(stat(html, "errors_5xx"), "1");
    assert_eq!(stat(html, "bytes_out"), "1.3 KiB");
    assert!(
        html.contains("<svg") && html.contains("Requests and errors"),
        "{html}"
    );
    assert!(
        html.contains("Latency, upstream") && html.contains("Status codes"),
        "{html}"
    );
    assert!(html.contains("acme-orders-route") && html.contains("acme-orders-svc"));
    assert!(html.contains("(no route matched)"), "{html}");
    assert!(
        html.contains(&format!("href=\"/traffic?route={}\"", a.orders)),
        "a route drills down: {html}"
    );
    assert!(!html.contains("bolt"), "{html}");

    // Drilling down to the orders route narrows every number.
    let filtered = a.browser.get(&format!("/traffic?route={}", a.orders)).await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert_eq!(stat(&filtered.body, "requests"), "9");
    assert_eq!(stat(&filtered.body, "errors_4xx"), "2");
    assert_eq!(stat(&filtered.body, "errors_5xx"), "1");
    assert!(
        filtered.body.contains("data-filters")
            && filtered
                .body
                .contains("route acme-prod / acme-orders-route"),
        "the filter in force is shown: {}",
        filtered.body
    );
    // …and so does a status filter, from the status table's link.
    let not_found = a.browser.get("/traffic?status=404").await;
    assert_eq!(stat(&not_found.body, "requests"), "3");

    // The control plane's Traffic tab shows the same traffic.
    let tab = a
        .browser
        .get(&format!("/control-planes/{}/traffic?range=15m", a.plane))
        .await;
    assert_eq!(tab.status, StatusCode::OK, "{}", tab.body);
    assert_eq!(stat(&tab.body, "requests"), "13");
    assert!(tab.body.contains("acme-prod") && tab.body.contains("aria-current=\"page\">Traffic"));

    // CSV: the top routes, the status codes of one route, and the series adding up.
    let rows = csv_rows(&a.browser.get("/traffic?format=csv&table=top_routes").await);
    let orders = rows
        .iter()
        .find(|r| r[0] == a.orders.to_string())
        .expect("orders row");
    assert_eq!(
        (
            &orders[1][..],
            &orders[2][..],
            &orders[3][..],
            &orders[4][..]
        ),
        ("acme-orders-route", "9", "2", "1")
    );
    let health = rows
        .iter()
        .find(|r| r[0] == a.health.to_string())
        .expect("health row");
    assert_eq!(health[2], "3");
    let unmatched = rows
        .iter()
        .find(|r| r[0].is_empty())
        .expect("unmatched row");
    assert_eq!(
        (&unmatched[1][..], &unmatched[2][..]),
        ("(no route matched)", "1")
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let statuses = a
        .browser
        .get(&format!(
            "/traffic?route={}&format=csv&table=status",
            a.orders
        ))
        .await;
    assert_eq!(
        csv_rows(&statuses),
        vec![vec!["200", "6"], vec!["404", "2"], vec!["502", "1"]]
            .into_iter()
            .map(|r| r.into_iter().map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let series = csv_rows(
        &a.browser
            .get("/traffic?range=1h&format=csv&table=series")
            .await,
    );
    assert_eq!(series.len(), 60, "one row per minute, empty ones as zeros");
    assert_eq!(column(&series, 1), 13);
    let services = csv_rows(
        &a.browser
            .get("/traffic?format=csv&table=top_services")
            .await,
    );
    assert!(
        services
            .iter()
            .any(|r| r[1] == "acme-orders-svc" && r[2] == "12"),
        "{services:?}"
    );
    let bad = a.browser.get("/traffic?format=csv&table=passwords").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Usage: the month's totals, per day and per control plane, on the page and as CSV.
    let usage = a.browser.get("/usage").await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    assert_eq!(stat(&usage.body, "requests"), "13");
    assert!(usage.body.contains("acme-prod") && usage.body.contains("<svg"));
    let month = recently().format("%Y-%m").to_string();
    let days = csv_rows(
        &a.browser
            .get(&format!("/usage?month={month}&format=csv&table=days"))
            .await,
    );
    assert_eq!(column(&days, 1), 13);
    assert_eq!(column(&days, 3), 1300);
    let today = recently().format("%Y-%m-%d").to_string();
    assert!(
        days.iter().any(|d| d[0] == today && d[1] == "13"),
        "{days:?}"
    );
    let planes = csv_rows(
        &a.browser
            .get(&format!(
                "/usage?month={month}&format=csv&table=control_planes"
            ))
            .await,
    );
    assert_eq!(
        planes,
        vec![vec![
            a.plane.to_string(),
            "acme-prod".to_string(),
            "13".to_string()
        ]]
    );

    // The overview counts today's requests.
    let overview = a.browser.get("/").await;
    assert_eq!(stat(&overview.body, "requests_today"), "13");

    // A viewer reads all of it.
    let invitation = a
        .browser
        .json(
            "/api/v1/invitations",
            json!({"email": "viewer@acme.example.com", "role": "viewer"}),
        )
        .await;
    let viewer = Browser::new(&api);
    let resp = viewer
        .http
        .post(format!(
            "{}/invite/{}",
            api.base,
            invitation["token"].as_str().expect("token")
        ))
        .form(&[("password", "a long password")])
        .send()
        .await
        .expect("accept");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let page = viewer.get("/traffic").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(stat(&page.body, "requests"), "13");
    assert_eq!(stat(&viewer.get("/usage").await.body, "requests"), "13");
    let rows = csv_rows(&viewer.get("/traffic?format=csv&table=top_routes").await);
    assert_eq!(rows.len(), 3);

    // B sees only its own four requests, whatever it asks for.
    let page = b.browser.get("/traffic").await;
    assert_eq!(stat(&page.body, "requests"), "4");
    assert!(!page.body.contains("acme"), "{}", page.body);
    let page = b.browser.get(&format!("/traffic?route={}", a.orders)).await;
    assert_eq!(stat(&page.body, "requests"), "0");
    let rows = csv_rows(
        &b.browser
            .get(&format!(
                "/traffic?route={}&format=csv&table=top_routes",
                a.orders
            ))
            .await,
    );
    assert!(rows.is_empty(), "{rows:?}");
    let rows = csv_rows(&b.browser.get("/traffic?format=csv&table=top_routes").await);
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][2][..]), (&b.orders.to_string(), "4"));
    assert_eq!(stat(&b.browser.get("/usage").await.body, "requests"), "4");
    assert_eq!(stat(&b.browser.get("/").await.body, "requests_today"), "4");
    for path in [
        format!("/control-planes/{}/traffic", a.plane),
        format!(
            "/control-planes/{}/traffic?format=csv&table=top_routes",
            a.plane
        ),
        format!("/traffic?control_plane={}", a.plane),
        format!("/traffic?control_plane={}&format=csv&table=series", a.plane),
    ] {
        let page = b.browser.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("acme"), "{path}: {}", page.body);
    }
    let planes = csv_rows(
        &b.browser
            .get(&format!(
                "/usage?month={month}&format=csv&table=control_planes"
            ))
            .await,
    );
    assert_eq!(planes.len(), 1);
    assert_eq!(planes[0][0], b.plane.to_string());

    api.stop().await;
}

#[tokio::test]
async fn bad_ranges_and_filters_are_named_beside_their_fields() {
    let api = TestApi::start().await;
    let a = tenant(&api, "typo").await;
    let page = a.browser.get("/traffic?status=abc&route=nope").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("must be an HTTP status code") && page.body.contains("must be an id"),
        "{}",
        page.body
    );
    let page = a
        .browser
        .get("/traffic?range=custom&from=2026-11-02T00:00&to=2026-11-01T00:00")
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("must be after from"), "{}", page.body);
    let page = a.browser.get("/usage?month=2026-13").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("is not a month"), "{}", page.body);
    // A custom range keeps its values in the form, and a sensible bucket.
    let page = a
        .browser
        .get("/traffic?range=custom&from=2026-11-01T00:00&to=2026-11-03T00:00")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("value=\"2026-11-01T00:00\"") && page.body.contains("per hour"));
    api.stop().await;
}

#[tokio::test]
async fn without_an_analytics_store_the_pages_say_so() {
    let api = TestApi::start_without_analytics().await;
    let a = tenant(&api, "nostore").await;
    for path in [
        "/traffic",
        "/usage",
        &format!("/control-planes/{}/traffic", a.plane),
    ] {
        let page = a.browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            page.body.contains("Analytics are not set up") && !page.body.contains("<svg"),
            "{path}: {}",
            page.body
        );
    }
    assert!(stat(&a.browser.get("/").await.body, "requests_today").contains("not counted"));
    let csv = a.browser.get("/traffic?format=csv&table=series").await;
    assert_eq!(csv.status, StatusCode::SERVICE_UNAVAILABLE);
    let csv = a.browser.get("/usage?format=csv&table=days").await;
    assert_eq!(csv.status, StatusCode::SERVICE_UNAVAILABLE);
    api.stop().await;
}
