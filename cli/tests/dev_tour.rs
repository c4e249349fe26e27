//! The README's tour, run exactly as written against `tollgate dev` started as a user would,
//! then what the tour promises beyond it: route changes reach the edge, a restarted `dev` keeps its
//! data, and a certificate written through the API is served by the edge's TLS listener.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

const START: Duration = Duration::from_secs(60);

fn readme_tour() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- tour:start -->")
        .expect("tour start marker");
    let end = readme.find("<!-- tour:end -->").expect("tour end marker");
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let code_end = block[code_start..].find("```").expect("end of block") + code_start;
    block[code_start..code_end].to_string()
}

fn start_dev(
    dir: &std::path::Path,
    name: &str,
) -> (Process, std::net::SocketAddr, std::net::SocketAddr) {
    let (dev, console, proxy, _) = start_dev_with_tls(dir, name);
    (dev, console, proxy)
}

/// `tollgate dev` on free ports; the fourth address is its TLS listener.
fn start_dev_with_tls(
    dir: &std::path::Path,
    name: &str,
) -> (
    Process,
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let data = dir.join("data");
    let mut dev = Process::spawn(
        name,
        dir,
        &[
            "dev",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--api-listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
            "--proxy-tls-listen",
            "127.0.0.1:0",
        ],
    );
    let console = addr_in(&dev.wait_for_line("console: http://", START));
    let proxy = addr_in(&dev.wait_for_line("proxy:   http://", START));
    let tls_line = dev.wait_for_line("tls:     https://", START);
    let tls = addr_in(&tls_line.replacen("https://", "http://", 1));
    (dev, console, proxy, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_works_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut dev, api, proxy) = start_dev(dir.path(), "dev");

    let output = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(readme_tour())
        .env("API", format!("http://{api}"))
        .current_dir(dir.path())
        .output()
        .await
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tour failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ntollgate dev log:\n{}",
        std::fs::read_to_string(&dev.log).unwrap_or_default()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| **l == r#"{"status":"ok"}"#).count(),
        2,
        "the requests through the edge, direct and balanced: {stdout}"
    );
    assert!(
        stdout.contains(r#""target":"127.0.0.1:"#)
            && stdout.contains(r#""algorithm":"round-robin""#),
        "the upstream and its target: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "\"proxy_url\":\"http://demo.localhost:{}\"",
            proxy.port()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"summary\":\"create route health\""),
        "{stdout}"
    );
    let top_routes = lines
        .iter()
        .find(|l| l.starts_with(r#"{"by":"route""#))
        .unwrap_or_else(|| panic!("requests per route: {stdout}"));
    for route in ["health", "pooled"] {
        assert!(
            top_routes.contains(&format!(r#""name":"{route}","requests":"#)),
            "route {route} in {top_routes}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"{"month":"20"#) && l.contains(r#""name":"demo""#)),
        "this month's usage by control plane: {stdout}"
    );

    // Beyond the tour: a route change reaches the edge and the old path stops.
    let mut client = Client::new(api);
    client.sign_up("dev-e2e").await;
    let (_, cp) = client
        .send(
            Method::POST,
            "/api/v1/control-planes",
            Some(json!({"name": "second"})),
        )
        .await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().expect("id"));
    let upstream = echo_upstream().await;
    client
        .send(
            Method::POST,
            &format!("{base}/services"),
            Some(json!({"name": "echo", "url": format!("http://{upstream}")})),
        )
        .await;
    let (code, _) = client
        .send(
            Method::POST,
            &format!("{base}/routes"),
            Some(json!({"name": "r", "paths": ["/a"], "service": {"name": "echo"}})),
        )
        .await;
    assert_eq!(code, 201);
    let route_id = client
        .send(Method::GET, &format!("{base}/routes/r"), None)
        .await
        .1["id"]
        .as_str()
        .expect("route id")
        .to_string();
    // Every 200 from this control plane went through route `r`: the analytics must count them
    // all, no more and no fewer.
    let served_by_r = std::sync::atomic::AtomicU64::new(0);
    let get = |path: &'static str| {
        let served_by_r = &served_by_r;
        async move {
            let answer = through_proxy(proxy, "second.localhost", path).await;
            if answer.0 == 200 {
                served_by_r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            answer
        }
    };
    eventually("/a served", Duration::from_secs(10), || async {
        (get("/a").await.0 == 200).then_some(())
    })
    .await;
    client
        .send(
            Method::PATCH,
            &format!("{base}/routes/r"),
            Some(json!({"paths": ["/b"]})),
        )
        .await;
    eventually("/b served and /a gone", Duration::from_secs(10), || async {
        let b = get("/b").await.0;
        let a = get("/a").await.0;
        (b == 200 && a == 404).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get("/b").await.0, 200);
    }
    // The tour's control plane is unaffected, and an unknown host gets Kong's 404.
    let (code, body) = through_proxy(proxy, "nobody.localhost", "/b").await;
    assert_eq!(code, 404);
    assert!(
        body.contains("no Route matched with those values"),
        "{body}"
    );
    let route_totals = format!("/api/v1/analytics/totals?route={route_id}");
    eventually(
        "every request through route r logged, once",
        Duration::from_secs(10),
        || counted(&client, &route_totals, &served_by_r),
    )
    .await;

    // Restarted on the same data dir, dev keeps accounts and config.
    dev.kill();
    let (_dev, api, proxy) = start_dev(dir.path(), "dev-restarted");
    let client = Client {
        base: format!("http://{api}"),
        ..client
    };
    let (code, routes) = client
        .send(Method::GET, &format!("{base}/routes"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(routes["data"][0]["paths"], json!(["/b"]));
    eventually(
        "/b served after restart",
        Duration::from_secs(10),
        || async { (through_proxy(proxy, "second.localhost", "/b").await.0 == 200).then_some(()) },
    )
    .await;
    // The request logs survived the restart too, and the new edge's are added to them.
    served_by_r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    eventually(
        "logs from before and after the restart",
        Duration::from_secs(10),
        || counted(&client, &route_totals, &served_by_r),
    )
    .await;
}

/// The master key `dev` keeps in its data dir seals the key in SQLite and opens it in the edge;
/// the TLS listener then serves the certificate for its SNI, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_the_api_is_served_by_the_tls_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut dev, api, _, tls) = start_dev_with_tls(dir.path(), "dev-tls");
    let mut client = Client::new(api);
    client.sign_up("dev-tls").await;
    let (_, cp) = client
        .send(
            Method::POST,
            "/api/v1/control-planes",
            Some(json!({"name": "secure"})),
        )
        .await;
    let base = format!("/api/v1/control-planes/{}", cp["id"].as_str().expect("id"));
    let name = "secure.localhost";
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("certificate");
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let (code, created) = client
        .send(
            Method::POST,
            &format!("{base}/certificates"),
            Some(json!({"cert": cert, "key": key})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created.get("key").is_none(),
        "the key is never returned: {created}"
    );
    let certificate = created["id"].as_str().expect("id").to_string();
    let (code, sni) = client
        .send(
            Method::POST,
            &format!("{base}/certificates/{certificate}/snis"),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(code, 201, "{sni}");
    let upstream = echo_upstream().await;
    client
        .send(
            Method::POST,
            &format!("{base}/services"),
            Some(json!({"name": "echo", "url": format!("http://{upstream}")})),
        )
        .await;
    let (code, route) = client
        .send(
            Method::POST,
            &format!("{base}/routes"),
            Some(json!({"paths": ["/s"], "protocols": ["https"], "service": {"name": "echo"}})),
        )
        .await;
    assert_eq!(code, 201, "{route}");

    // Not in the database in plain text: the key's PEM body is nowhere in SQLite's file.
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let db = std::fs::read(dir.path().join("data/tollgate.db")).expect("sqlite file");
    let db = String::from_utf8_lossy(&db);
    assert!(
        !db.contains(&key_body[..40]),
        "the private key is stored in plain text"
    );

    // Only a client that trusts exactly this certificate gets through: the edge served it.
    eventually(
        "the certificate served for its SNI",
        Duration::from_secs(10),
        || served_over_tls(&cert, name, tls),
    )
    .await;

    dev.kill();
    let (_dev, _, _, tls) = start_dev_with_tls(dir.path(), "dev-tls-restarted");
    eventually(
        "the certificate served after a restart (same master key)",
        Duration::from_secs(10),
        || served_over_tls(&cert, name, tls),
    )
    .await;
}

/// `GET https://{name}/s` at `tls`, trusting only `cert`: `Some` when it answers 200.
async fn served_over_tls(cert: &str, name: &str, tls: std::net::SocketAddr) -> Option<()> {
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).ok()?)
        .tls_built_in_root_certs(false)
        .resolve(name, tls)
        .build()
        .ok()?;
    let url = format!("https://{name}:{}/s", tls.port());
    let response = https.get(&url).send().await.ok()?;
    (response.status() == 200).then_some(())
}

/// `Some` once the analytics count exactly `expected` requests at `totals_path`.
async fn counted(
    client: &Client,
    totals_path: &str,
    expected: &std::sync::atomic::AtomicU64,
) -> Option<()> {
    let (code, totals) = client.send(Method::GET, totals_path, None).await;
    assert_eq!(code, 200, "{totals}");
    (totals["requests"].as_u64() == Some(expected.load(std::sync::atomic::Ordering::SeqCst)))
        .then_some(())
}
