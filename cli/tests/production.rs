//! The production shape end to end: separate `tollgate migrate`, `api` and `edge` processes on
//! the real Postgres and Redis and a NATS server of the test's own, which the test takes down.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;
use tollgate_bus::testing::PrivateNats;

const START: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_route_changes_outages_and_last_known_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDatabase::create().await;
    let mut nats = PrivateNats::start(dir.path().join("nats"));
    let prefix = format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let redis = env_or("TOLLGATE_TEST_REDIS", REDIS_URL);
    let upstream = echo_upstream().await;

    let mut migrate = Process::spawn(
        "migrate",
        dir.path(),
        &["migrate", "--database-url", &db.url],
    );
    assert!(
        migrate.wait_success(START),
        "migrate failed: {}",
        std::fs::read_to_string(&migrate.log).unwrap_or_default()
    );
    assert!(migrate.stdout().contains("applied"), "{}", migrate.stdout());

    let nats_url = nats.url();
    let api_args = [
        "api",
        "--database-url",
        &db.url,
        "--nats-url",
        &nats_url,
        "--redis-url",
        &redis,
        "--api-listen",
        "127.0.0.1:0",
        "--nats-prefix",
        &prefix,
        "--redis-prefix",
        &prefix,
    ];
    let mut api = Process::spawn("api", dir.path(), &api_args);
    let api_addr = addr_in(&api.wait_for_line("api listening on", START));

    let edge_dir = dir.path().join("edge");
    let edge_dir_arg = edge_dir.to_str().expect("utf-8 path").to_string();
    let edge_args = |nats_url: &str| -> Vec<String> {
        [
            // One worker thread: the single-threaded runtime the benchmarks measure.
            "--worker-threads",
            "1",
            "edge",
            "--nats-url",
            nats_url,
            "--nats-prefix",
            &prefix,
            "--proxy-listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
            "--data-dir",
            &edge_dir_arg,
            "--heartbeat-interval",
            "200ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = edge_args(&nats_url);
    let mut edge = Process::spawn(
        "edge",
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let line = edge.wait_for_line("proxy on", START);
    let proxy = addr_in(&line);
    let status = addr_in(&line[line.find("status on").expect("status address")..]);
    // The binary runs without transparent huge pages, so applies fault memory in 4 KiB at a time
    // (cli/src/main.rs); the kernel reports the flag per process.
    assert_eq!(edge.proc_status("THP_enabled").as_deref(), Some("0"));
    assert_eq!(api.proc_status("THP_enabled").as_deref(), Some("0"));

    // The tour: sign up, token, control plane, service, route, a request through the edge.
    let mut client = Client::new(api_addr);
    client.sign_up("prod-e2e").await;
    let (code, cp) = client
        .send(
            Method::POST,
            "/api/v1/control-planes",
            Some(json!({"name": "payments"})),
        )
        .await;
    assert_eq!(code, 201, "{cp}");
    let cp_id = cp["id"].as_str().expect("id").to_string();
    let host = cp["hostnames"][0].as_str().expect("hostname").to_string();
    let base = format!("/api/v1/control-planes/{cp_id}");
    let (code, svc) = client
        .send(
            Method::POST,
            &format!("{base}/services"),
            Some(json!({"name": "echo", "url": format!("http://{upstream}/upstream")})),
        )
        .await;
    assert_eq!(code, 201, "{svc}");
    let (code, route) = client
        .send(
            Method::POST,
            &format!("{base}/services/echo/routes"),
            Some(json!({"name": "r", "paths": ["/echo"]})),
        )
        .await;
    assert_eq!(code, 201, "{route}");

    let body = eventually(
        "the route served by the edge",
        Duration::from_secs(15),
        || async {
            let (code, body) = through_proxy(proxy, &host, "/echo/hello?x=1").await;
            (code == 200).then_some(body)
        },
    )
    .await;
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echoed["path"], "/upstream/hello");
    assert_eq!(echoed["query"], "x=1");

    let ready = reqwest::get(format!("http://{status}/status/ready"))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);

    // The node reports the applied version; the API shows it.
    let latest = client.send(Method::GET, &base, None).await.1["config_version"]
        .as_i64()
        .expect("version");
    let nodes = eventually("the node up to date", Duration::from_secs(15), || async {
        let (_, nodes) = client
            .send(Method::GET, &format!("{base}/nodes"), None)
            .await;
        let node = nodes["data"].get(0)?.clone();
        (node["config_version"].as_i64() == Some(latest)).then_some(node)
    })
    .await;
    assert_eq!(nodes["status"], "up to date");
    assert!(nodes["config_hash"]
        .as_str()
        .expect("hash")
        .starts_with("sha256:"));

    // Another tenant sees none of it.
    let mut other = Client::new(api_addr);
    other.sign_up("someone-else").await;
    for path in [
        base.clone(),
        format!("{base}/services/echo"),
        format!("{base}/routes/r"),
        format!("{base}/nodes"),
    ] {
        assert_eq!(other.send(Method::GET, &path, None).await.0, 404, "{path}");
    }

    // A route change: the new path serves, the old one stops.
    let (code, _) = client
        .send(
            Method::PATCH,
            &format!("{base}/routes/r"),
            Some(json!({"paths": ["/v2"]})),
        )
        .await;
    assert_eq!(code, 200);
    eventually(
        "the new path served and the old one gone",
        Duration::from_secs(15),
        || async {
            let (new, _) = through_proxy(proxy, &host, "/v2/x").await;
            let (old, _) = through_proxy(proxy, &host, "/echo/x").await;
            (new == 200 && old == 404).then_some(())
        },
    )
    .await;

    // The API killed: the edge keeps serving.
    api.kill();
    for _ in 0..20 {
        assert_eq!(
            through_proxy(proxy, &host, "/v2/x").await.0,
            200,
            "the edge must serve without the API"
        );
    }

    // NATS down too, and the edge restarted: it serves its last-known-good config.
    nats.stop();
    for _ in 0..5 {
        assert_eq!(
            through_proxy(proxy, &host, "/v2/x").await.0,
            200,
            "the edge must serve without NATS"
        );
    }
    // What it restarts from: the body as it came over NATS, packed, under the control plane's id.
    let stored = std::fs::read(edge_dir.join("snapshots").join(format!("{cp_id}.lz4")))
        .expect("the last-known-good file");
    let stored = tollgate_bus::packing::unpack(&stored).expect("a packed snapshot");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("snapshot JSON");
    assert_eq!(stored["version"].as_i64(), Some(latest + 1));
    edge.kill();
    let mut edge = Process::spawn(
        "edge-restarted",
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let line = edge.wait_for_line("proxy on", START);
    let proxy = addr_in(&line);
    let status = addr_in(&line[line.find("status on").expect("status address")..]);
    let ready = reqwest::get(format!("http://{status}/status/ready"))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200, "ready from last-known-good");
    assert_eq!(through_proxy(proxy, &host, "/v2/x").await.0, 200);
    assert_eq!(through_proxy(proxy, &host, "/echo/x").await.0, 404);
    let state: serde_json::Value = reqwest::get(format!("http://{status}/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(
        state["control_planes"][0]["version"].as_i64(),
        Some(latest + 1),
        "{state}"
    );

    // NATS and the API back: a new change reaches the restarted edge.
    nats.restart();
    let mut api = Process::spawn("api-restarted", dir.path(), &api_args);
    let api_addr = addr_in(&api.wait_for_line("api listening on", START));
    let client = Client {
        base: format!("http://{api_addr}"),
        ..client
    };
    let (code, _) = client
        .send(
            Method::PATCH,
            &format!("{base}/routes/r"),
            Some(json!({"paths": ["/v3"]})),
        )
        .await;
    assert_eq!(code, 200);
    eventually(
        "the edge catches up after the outage",
        Duration::from_secs(30),
        || async { (through_proxy(proxy, &host, "/v3/x").await.0 == 200).then_some(()) },
    )
    .await;
    edge.kill();
    api.kill();
}
