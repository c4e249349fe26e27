//! Server time to render the console's Services tab of a control plane with 1,000 services.
//!
//! Runs the API in-process on SQLite (the `tollgate dev` store), creates the services through the
//! API, then times sequential GETs of the tab with a session cookie, as a browser would load it.
//!
//!     cargo run --release -p tollgate-loadtest --bin console_render -- [services] [requests]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use hdrhistogram::Histogram;
use serde_json::json;
use tollgate_api::ephemeral::MemoryStore;
use tollgate_api::ApiConfig;
use tollgate_bus::MemoryBus;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let requests: usize = args.next().map_or(Ok(500), |a| a.parse())?;

    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let db = tollgate_api::store::connect(&url).await?;
    tollgate_api::store::migrate(&db).await?;
    let api = tollgate_api::start(
        ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            proxy_public_url: "http://localhost:8000".into(),
            default_region: "default".into(),
            session_ttl: Duration::from_secs(3600),
            secure_cookies: false,
            console_dir: None,
            master_key: None,
            analytics: None,
        },
        db,
        Arc::new(MemoryBus::new()),
        Arc::new(MemoryStore::default()),
    )
    .await?;
    let base = format!("http://{}", api.addr);
    let http = reqwest::Client::new();
    let signup = http
        .post(format!("{base}/api/v1/signup"))
        .json(&json!({"email": "bench@example.com", "password": "a long password", "organization": "bench"}))
        .send()
        .await?;
    ensure!(signup.status() == 201, "signup: {}", signup.status());
    let cookie = signup
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("session cookie")?
        .to_string();
    let cp: serde_json::Value = http
        .post(format!("{base}/api/v1/control-planes"))
        .header("cookie", &cookie)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let cp = cp["id"].as_str().context("control plane id")?.to_string();
    for i in 0..services {
        let created = http
            .post(format!("{base}/api/v1/control-planes/{cp}/services"))
            .header("cookie", &cookie)
            .json(&json!({"name": format!("service-{i:04}"), "url": format!("http://upstream-{i}.internal:8080/v1"), "tags": ["bench", format!("team-{}", i % 10)]}))
            .send()
            .await?;
        ensure!(created.status() == 201, "service {i}: {}", created.status());
    }

    let page = format!("{base}/control-planes/{cp}/services");
    let mut histogram = Histogram::<u64>::new(3)?;
    for i in 0..requests + 20 {
        let started = Instant::now();
        let response = http.get(&page).header("cookie", &cookie).send().await?;
        ensure!(
            response.status() == 200,
            "GET services tab: {}",
            response.status()
        );
        let body = response.text().await?;
        let elapsed = started.elapsed();
        ensure!(
            body.contains("service-0049") && body.contains(&format!("of {services}")),
            "the tab lists the services"
        );
        if i >= 20 {
            // The first requests warm the connection and the caches.
            histogram.record(elapsed.as_micros() as u64)?;
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "services tab with {services} services, {requests} sequential requests: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    api.shutdown().await;
    Ok(())
}
