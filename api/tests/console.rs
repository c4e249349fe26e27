//! The console's pages and forms over plain HTTP, as a browser without JavaScript uses them:
//! forms post, errors come back beside the fields, success redirects; CSRF and roles hold.

mod common;

use std::time::Duration;

use common::{eventually, TestApi};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::json;
use tollgate_model::{AppliedConfig, Heartbeat, TargetHealth, TargetHealthReport};
use uuid::Uuid;

struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(api: &TestApi) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: api.base.clone(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, resp.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, resp.text().await.unwrap())
    }

    async fn csrf(&self, path: &str) -> String {
        let (_, _, html) = self.get(path).await;
        let start = html.find("name=\"csrf\" value=\"").expect("a csrf field")
            + "name=\"csrf\" value=\"".len();
        html[start..start + 64].to_string()
    }
}

#[tokio::test]
async fn forms_work_without_javascript() {
    let api = TestApi::start().await;
    let browser = Browser::new(&api);

    let (status, location, _) = browser.get("/").await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    let (status, _, html) = browser
        .post(
            "/signup",
            &[
                ("email", "ops@example.com"),
                ("password", "short"),
                ("organization", "Ops"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("must be at least 10 characters")
            && html.contains("value=\"ops@example.com\""),
        "{html}"
    );
    let (status, location, _) = browser
        .post(
            "/signup",
            &[
                ("email", "ops@example.com"),
                ("password", "a long password"),
                ("organization", "Ops"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (status, _, html) = browser.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<title>Control planes · Tollgate</title>")
            && html.contains("Welcome to Tollgate"),
        "{html}"
    );

    let csrf = browser.csrf("/").await;
    let (status, _, html) = browser
        .post("/control-planes", &[("csrf", &csrf), ("name", "")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("field-error"), "{html}");
    let (status, location, _) = browser
        .post("/control-planes", &[("csrf", &csrf), ("name", "shop")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let services = location.split('?').next().unwrap().to_string();
    let routes = services.replace("/services", "/routes");

    let (status, _, html) = browser
        .post(
            &services,
            &[("csrf", &csrf), ("name", "api"), ("url", "http:///nohost")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("missing host in url"), "{html}");
    let (status, _, _) = browser
        .post(
            &services,
            &[
                ("csrf", &csrf),
                ("name", "api"),
                ("url", "http://127.0.0.1:9/"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&routes).await;
    let service_id = html
        .split("<option value=\"")
        .nth(2)
        .and_then(|s| s.split('"').next())
        .expect("the service option")
        .to_string();

    // A path without a leading slash: the error is shown beside the field, the input kept.
    let route = |path: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "r".into()),
            ("service", service_id.clone()),
            ("paths", path.into()),
            ("protocols", "http, https".into()),
            ("strip_path", "on".into()),
        ]
    };
    let form: Vec<(&str, String)> = route("no-slash");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = browser.post(&routes, &pairs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("line 1: should start with: / (fixed path) or ~/ (regex path)"),
        "{html}"
    );
    assert!(html.contains(">no-slash</textarea>"), "{html}");
    let form = route("/shop");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = browser.post(&routes, &pairs).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&location).await;
    assert!(
        html.contains("Route r created")
            && html.contains("curl -i http://shop.localhost:8000/shop"),
        "{html}"
    );

    // A form without this session's token changes nothing.
    let (status, _, _) = browser
        .post(
            &services,
            &[
                ("csrf", "forged"),
                ("name", "evil"),
                ("url", "http://evil.com"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Deleting asks first when the browser did not.
    let route_page = format!("{routes}/r");
    let (status, _, html) = browser
        .post(&format!("{route_page}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Yes, delete"), "{html}");
    let (_, _, html) = browser.get(&routes).await;
    assert!(html.contains("/shop"), "still there before confirming");

    // A service's page edits it; it cannot be deleted while a route uses it.
    let service_page = format!("{services}/api");
    let (_, _, html) = browser.get(&service_page).await;
    assert!(html.contains("1 route(s) use this service"), "{html}");
    let edit = |retries: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "api".to_string()),
            ("url", "http://127.0.0.1:9/".to_string()),
            ("retries", retries.to_string()),
            ("connect_timeout", "1000".to_string()),
            ("write_timeout", "1000".to_string()),
            ("read_timeout", "1000".to_string()),
            ("enabled", "on".to_string()),
        ]
    };
    let form = edit("-1");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = browser.post(&service_page, &pairs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("value should be between 0 and 32767"),
        "{html}"
    );
    let form = edit("2");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = browser.post(&service_page, &pairs).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&location).await;
    assert!(
        html.contains("Service saved.") && html.contains("value=\"2\""),
        "{html}"
    );

    // History shows who changed what, and a diff.
    let history = services.replace("/services", "/history");
    let (_, _, html) = browser.get(&format!("{history}?from=2&to=3")).await;
    assert!(
        html.contains("create route r") && html.contains("ops@example.com"),
        "{html}"
    );
    assert!(html.contains("<ins class=\"d-add\">"), "{html}");

    // Confirmed, the route goes; then its service can go too.
    let (status, _, _) = browser
        .post(
            &format!("{route_page}/delete"),
            &[("csrf", &csrf), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = browser
        .post(
            &format!("{service_page}/delete"),
            &[("csrf", &csrf), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = browser.get(&service_page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, location, _) = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/login")
    );
    let (status, _, _) = browser.get(&services).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "logged out");
    let (status, location, _) = browser
        .post(
            "/login",
            &[
                ("email", "ops@example.com"),
                ("password", "a long password"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/"));
    api.stop().await;
}

#[tokio::test]
async fn another_tenants_pages_are_not_found_and_viewers_cannot_write() {
    let api = TestApi::start().await;
    let owner_token = api.tenant("owner").await;
    let cp = api.control_plane(&owner_token, "private").await;
    let cp_id = cp["id"].as_str().unwrap();

    let stranger = Browser::new(&api);
    stranger
        .post(
            "/signup",
            &[
                ("email", "x@example.com"),
                ("password", "a long password"),
                ("organization", "X"),
            ],
        )
        .await;
    for tab in [
        "services",
        "routes",
        "upstreams",
        "certificates",
        "nodes",
        "history",
    ] {
        let (status, _, html) = stranger
            .get(&format!("/control-planes/{cp_id}/{tab}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{tab}");
        assert!(!html.contains("private"), "{html}");
    }

    // A viewer sees pages without forms, and a forged post is refused by the API's rule.
    let (status, invitation) = api
        .post(
            "/api/v1/invitations",
            &owner_token,
            json!({"email": "viewer@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let token = invitation["token"].as_str().unwrap();
    let viewer = Browser::new(&api);
    let (status, location, _) = viewer
        .post(
            &format!("/invite/{token}"),
            &[("password", "a long password")],
        )
        .await;
    assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/"));
    let (status, _, html) = viewer
        .get(&format!("/control-planes/{cp_id}/services"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("read-only access") && !html.contains("New service"),
        "{html}"
    );
    let csrf = viewer
        .csrf(&format!("/control-planes/{cp_id}/services"))
        .await;
    let (status, _, _) = viewer
        .post(
            &format!("/control-planes/{cp_id}/services"),
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("url", "http://example.com"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, services) = api
        .get(
            &format!("/api/v1/control-planes/{cp_id}/services"),
            &owner_token,
        )
        .await;
    assert_eq!(
        services["data"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    api.stop().await;
}

/// Signs up through the form and creates a control plane; returns its console path and a CSRF
/// token of the session.
/// An upstream's settings are changed in the console: the form shows the current ones (health
/// checks as JSON with Kong's defaults), a refused form keeps what was typed and says which field
/// is wrong, and saved settings are what the API then answers.
#[tokio::test]
async fn upstream_settings_are_edited_without_javascript() {
    let api = TestApi::start().await;
    let browser = Browser::new(&api);
    let (plane, csrf) = signed_up_with_plane(&browser, "settings@example.com", "settings").await;
    let cp_id: Uuid = plane.rsplit('/').next().unwrap().parse().unwrap();
    let upstreams = format!("{plane}/upstreams");
    let (status, location, _) = browser
        .post(&upstreams, &[("csrf", &csrf), ("name", "orders.internal")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let upstream = location.split('?').next().unwrap().to_string();
    let upstream_id = upstream.rsplit('/').next().unwrap().to_string();
    let settings = format!("{upstream}/settings");

    let (_, _, html) = browser.get(&upstream).await;
    assert!(
        html.contains("Save settings")
            && html.contains(r#"<option value="round-robin" selected"#)
            && html.contains("\"http_failures\""),
        "the form shows the current settings: {html}"
    );

    let healthchecks = r#"{"passive": {"unhealthy": {"http_failures": 3}}, "threshold": 50}"#;
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("algorithm", "consistent-hashing"),
        ("hash_on", "header"),
        ("hash_on_header", "x-user"),
        ("hash_fallback", "ip"),
        ("slots", "1000"),
        ("host_header", "orders.example.com"),
        ("healthchecks", "{not json"),
        ("tags", "team-a, payments"),
    ];
    // Not JSON: refused beside the field, what was typed kept, nothing saved.
    let (status, _, html) = browser.post(&settings, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("not valid JSON") && html.contains("{not json") && html.contains("x-user"),
        "{html}"
    );
    // A value the API refuses: named by its field.
    form[5] = ("slots", "5");
    form[7] = ("healthchecks", healthchecks);
    let (status, _, html) = browser.post(&settings, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("field-error") && html.contains("value=\"5\""),
        "{html}"
    );
    let api_path = format!("/api/v1/control-planes/{cp_id}/upstreams/{upstream_id}");
    let (_, _, body) = browser.get(&api_path).await;
    let unchanged: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(unchanged["algorithm"], "round-robin", "{body}");

    form[5] = ("slots", "1000");
    let (status, location, html) = browser.post(&settings, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let (_, _, html) = browser.get(&location).await;
    assert!(html.contains("Settings of orders.internal saved"), "{html}");
    let (_, _, body) = browser.get(&api_path).await;
    let saved: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(saved["algorithm"], "consistent-hashing", "{body}");
    assert_eq!(saved["hash_on"], "header");
    assert_eq!(saved["hash_on_header"], "x-user");
    assert_eq!(saved["hash_fallback"], "ip");
    assert_eq!(saved["slots"], 1000);
    assert_eq!(saved["host_header"], "orders.example.com");
    assert_eq!(saved["tags"], serde_json::json!(["team-a", "payments"]));
    assert_eq!(
        saved["healthchecks"]["passive"]["unhealthy"]["http_failures"],
        3
    );
    assert_eq!(saved["healthchecks"]["threshold"], 50.0);
    // Kong's defaults fill what the JSON left out.
    assert_eq!(saved["healthchecks"]["active"]["http_path"], "/");

    // Kong's rules across fields hold: the fallback must differ from what is hashed on.
    form[3] = ("hash_on_header", "");
    form[2] = ("hash_on", "ip");
    let (status, _, html) = browser.post(&settings, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("must differ from 'hash_on'"), "{html}");
    // Emptied optional fields are cleared.
    form[2] = ("hash_on", "path");
    form[6] = ("host_header", "");
    let (status, _, html) = browser.post(&settings, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let (_, _, body) = browser.get(&api_path).await;
    let cleared: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cleared["hash_on"], "path", "{body}");
    assert!(cleared["hash_on_header"].is_null(), "{body}");
    assert!(cleared["host_header"].is_null(), "{body}");
    api.stop().await;
}

async fn signed_up_with_plane(browser: &Browser, email: &str, plane: &str) -> (String, String) {
    let (status, _, _) = browser
        .post(
            "/signup",
            &[
                ("email", email),
                ("password", "a long password"),
                ("organization", plane),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let csrf = browser.csrf("/").await;
    let (status, location, _) = browser
        .post("/control-planes", &[("csrf", &csrf), ("name", plane)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let services = location.split('?').next().unwrap();
    (services.trim_end_matches("/services").to_string(), csrf)
}

#[tokio::test]
async fn upstream_and_certificate_pages_work_without_javascript() {
    let api = TestApi::start().await;
    let browser = Browser::new(&api);
    let (plane, csrf) = signed_up_with_plane(&browser, "lb@example.com", "lb").await;
    let cp_id: Uuid = plane.rsplit('/').next().unwrap().parse().unwrap();

    // Upstreams: create (errors beside the field), add targets, see the health edges report.
    let upstreams = format!("{plane}/upstreams");
    let (status, _, html) = browser.get(&upstreams).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No upstreams yet"), "{html}");
    let (status, _, html) = browser
        .post(&upstreams, &[("csrf", &csrf), ("name", "not a host")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("field-error"), "{html}");
    let (status, location, _) = browser
        .post(
            &upstreams,
            &[
                ("csrf", &csrf),
                ("name", "pool.internal"),
                ("algorithm", "least-connections"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let upstream = location.split('?').next().unwrap().to_string();
    let upstream_id: Uuid = upstream.rsplit('/').next().unwrap().parse().unwrap();
    let targets = format!("{upstream}/targets");
    let (status, _, html) = browser
        .post(
            &targets,
            &[
                ("csrf", &csrf),
                ("target", "10.0.0.1:80"),
                ("weight", "heavy"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("field-error") && html.contains("value=\"heavy\""),
        "{html}"
    );
    let (status, _, _) = browser
        .post(
            &targets,
            &[("csrf", &csrf), ("target", "10.0.0.1:80"), ("weight", "50")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, html) = browser
        .post(&targets, &[("csrf", &csrf), ("target", "10.0.0.1")])
        .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the default port makes another target: {html}"
    );
    let (status, _, html) = browser
        .post(&targets, &[("csrf", &csrf), ("target", "10.0.0.1:80")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("already has a target"), "{html}");

    let heartbeat = Heartbeat {
        node_id: Uuid::now_v7(),
        hostname: "edge-a".into(),
        binary_version: "test".into(),
        region: "default".into(),
        sent_at: chrono::Utc::now().timestamp(),
        control_planes: vec![AppliedConfig {
            control_plane_id: cp_id,
            version: 1,
            hash: "sha256:test".into(),
        }],
        target_health: vec![TargetHealthReport {
            control_plane_id: cp_id,
            upstream_id,
            target: "10.0.0.1:80".into(),
            health: TargetHealth::Unhealthy,
        }],
    };
    let html = eventually(
        "the heartbeat on the page",
        Duration::from_secs(10),
        || async {
            api.bus.publish_heartbeat(&heartbeat).await.ok()?;
            let (_, _, html) = browser.get(&upstream).await;
            html.contains("edge-a").then_some(html)
        },
    )
    .await;
    assert!(
        html.contains("badge badge-bad") && html.contains("10.0.0.1:8000"),
        "{html}"
    );
    let (_, _, html) = browser.get(&upstreams).await;
    assert!(
        html.contains("pool.internal") && html.contains("unhealthy"),
        "{html}"
    );

    // Removing a target asks first; confirmed, it goes.
    let target_id = html_target_id(&browser, &upstream, "10.0.0.1:8000").await;
    let remove = format!("{targets}/{target_id}/delete");
    let (status, _, html) = browser.post(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Remove this target?"), "{html}");
    let (status, _, _) = browser
        .post(&remove, &[("csrf", &csrf), ("confirmed", "yes")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&upstream).await;
    assert!(!html.contains("10.0.0.1:8000"), "{html}");

    // Certificates: a refused form does not echo the key; the page reads the leaf; SNIs.
    let certificates = format!("{plane}/certificates");
    let one = rcgen::generate_simple_self_signed(vec!["shop.example.com".into()]).unwrap();
    let two = rcgen::generate_simple_self_signed(vec!["other.example.com".into()]).unwrap();
    let (cert_pem, key_pem) = (one.cert.pem(), one.signing_key.serialize_pem());
    let (status, _, html) = browser
        .post(
            &certificates,
            &[
                ("csrf", &csrf),
                ("cert", &cert_pem),
                ("key", &two.signing_key.serialize_pem()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("does not match the public key") && !html.contains("PRIVATE KEY"),
        "{html}"
    );
    let (status, location, _) = browser
        .post(
            &certificates,
            &[
                ("csrf", &csrf),
                ("cert", &cert_pem),
                ("key", &key_pem),
                ("tags", "shop"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let certificate = location.split('?').next().unwrap().to_string();
    let (_, _, html) = browser.get(&location).await;
    assert!(
        html.contains("Certificate added")
            && html.contains("CN=rcgen self signed cert")
            && html.contains("shop.example.com")
            && html.contains("days left"),
        "{html}"
    );
    assert!(
        !html.contains("PRIVATE KEY") && !html.contains("tgsealed"),
        "{html}"
    );
    let snis = format!("{certificate}/snis");
    let (status, _, html) = browser
        .post(&snis, &[("csrf", &csrf), ("name", "bad name")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("field-error"), "{html}");
    let (status, _, _) = browser
        .post(&snis, &[("csrf", &csrf), ("name", "Shop.Example.com")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&certificates).await;
    assert!(
        html.contains("shop.example.com") && !html.contains("PRIVATE KEY"),
        "{html}"
    );
    let (status, _, html) = browser
        .post(&format!("{certificate}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Delete this certificate and its SNIs?"),
        "{html}"
    );
    let (status, _, _) = browser
        .post(
            &format!("{certificate}/delete"),
            &[("csrf", &csrf), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = browser.get(&certificates).await;
    assert!(html.contains("No certificates yet"), "{html}");
    api.stop().await;
}

/// The id in the remove form of `target` on an upstream's page.
async fn html_target_id(browser: &Browser, upstream: &str, target: &str) -> String {
    let (_, _, html) = browser.get(upstream).await;
    let row = html
        .split("<tr>")
        .find(|row| row.contains(target))
        .expect("the target's row");
    let start = row.find("/targets/").expect("a remove form") + "/targets/".len();
    row[start..start + 36].to_string()
}

#[tokio::test]
async fn the_certificate_form_says_when_the_server_has_no_master_key() {
    let api = TestApi::start_with_master_key(None).await;
    let browser = Browser::new(&api);
    let (plane, csrf) = signed_up_with_plane(&browser, "nokey@example.com", "nokey").await;
    let pair = rcgen::generate_simple_self_signed(vec!["nokey.example.com".into()]).unwrap();
    let (status, _, html) = browser
        .post(
            &format!("{plane}/certificates"),
            &[
                ("csrf", &csrf),
                ("cert", &pair.cert.pem()),
                ("key", &pair.signing_key.serialize_pem()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("TOLLGATE_MASTER_KEY"), "{html}");
    api.stop().await;
}
