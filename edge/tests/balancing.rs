//! Through the proxy: services balanced over upstreams (each algorithm, weights, consistent-hashing
//! sources), active and passive health checks, health across config swaps, retries, the three
//! timeouts, and target health in `/metrics` and heartbeats.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tollgate_bus::Bus;
use tollgate_edge::RunningEdge;
use tollgate_model::TargetHealth;
use uuid::Uuid;

/// How a test steers one of its backends.
struct Control {
    id: &'static str,
    /// What ordinary requests get.
    status: AtomicU16,
    /// What `GET /health` (the active probe) gets.
    probe_status: AtomicU16,
    /// Added before answering ordinary requests.
    delay: Duration,
    /// Requests to `/hold…` wait for this to turn true.
    released: watch::Sender<bool>,
    held: AtomicUsize,
}

/// A backend on port 0 that answers JSON with its own id, the path, `Host` and body it saw.
struct Backend {
    addr: SocketAddr,
    control: Arc<Control>,
}

impl Backend {
    async fn start(id: &'static str) -> Backend {
        Backend::with_delay(id, Duration::ZERO).await
    }

    async fn with_delay(id: &'static str, delay: Duration) -> Backend {
        let control = Arc::new(Control {
            id,
            status: AtomicU16::new(200),
            probe_status: AtomicU16::new(200),
            delay,
            released: watch::channel(false).0,
            held: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(control.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Backend { addr, control }
    }

    /// The target string for this backend.
    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn set_status(&self, status: u16) {
        self.control.status.store(status, Ordering::SeqCst);
    }

    fn set_probe_status(&self, status: u16) {
        self.control.probe_status.store(status, Ordering::SeqCst);
    }

    fn held(&self) -> usize {
        self.control.held.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.control.released.send_replace(true);
    }
}

async fn answer(State(control): State<Arc<Control>>, request: Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/health" {
        let status = StatusCode::from_u16(control.probe_status.load(Ordering::SeqCst)).unwrap();
        return (status, control.id).into_response();
    }
    if path.starts_with("/hold") {
        control.held.fetch_add(1, Ordering::SeqCst);
        let mut released = control.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
    if !control.delay.is_zero() {
        tokio::time::sleep(control.delay).await;
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let status = StatusCode::from_u16(control.status.load(Ordering::SeqCst)).unwrap();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let seen = json!({
        "id": control.id,
        "path": path,
        "host": host,
        "body": String::from_utf8_lossy(&body),
    });
    (status, axum::Json(seen)).into_response()
}

/// A service whose host is the upstream `name`, routed at `path`.
fn balanced_service(
    name: &str,
    path: &str,
    extra: Value,
) -> (tollgate_model::Service, tollgate_model::Route) {
    let mut input = json!({ "url": format!("http://{name}") });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        input[key] = value;
    }
    let svc = service(input);
    let route = route_to(&svc, json!({ "paths": [path] }));
    (svc, route)
}

/// One upstream over `backends` (equal weights), a service and a route at `/`, on a dedicated
/// edge.
async fn serve_upstream(upstream: Value, backends: &[&Backend], service_extra: Value) -> Setup {
    let up = upstream_entity(upstream);
    let targets = backends
        .iter()
        .map(|b| target_entity(&up, &b.target(), 100))
        .collect();
    let (svc, route) = balanced_service(&up.name, "/", service_extra);
    serve_dedicated(balanced_snapshot(
        Uuid::now_v7(),
        1,
        vec![svc],
        vec![route],
        vec![up],
        targets,
    ))
    .await
}

/// Which backend answered.
fn id_of(answer: &Answer) -> String {
    answer.body["id"].as_str().unwrap_or("<none>").to_string()
}

async fn ids(edge: &RunningEdge, path: &str, count: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..count {
        let answer = get(edge, "any.test", path).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        *seen.entry(id_of(&answer)).or_default() += 1;
    }
    seen
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The value of `tollgate_upstream_target_health` for one target and state.
fn health_gauge(metrics: &str, upstream: &str, target: &str, state: &str) -> Option<i64> {
    let wanted = format!("state=\"{state}\",target=\"{target}\",upstream=\"{upstream}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_upstream_target_health{"))
        .find(|l| l.contains(&wanted))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until `/metrics` shows `target` of `upstream` in `state`.
async fn wait_for_health(edge: &RunningEdge, upstream: &str, target: &str, state: &str) {
    eventually(&format!("{target} of {upstream} {state}"), || async {
        let text = metrics_text(edge).await;
        (health_gauge(&text, upstream, target, state) == Some(1)).then_some(())
    })
    .await
}

#[tokio::test]
async fn weighted_round_robin_splits_exactly_and_skips_weight_zero() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let up = upstream_entity(json!({"name": "rr.internal"}));
    let targets = vec![
        target_entity(&up, &a.target(), 300),
        target_entity(&up, &b.target(), 100),
        target_entity(&up, &c.target(), 0),
    ];
    let (svc, route) = balanced_service("rr.internal", "/", json!({}));
    let setup = serve_dedicated(balanced_snapshot(
        Uuid::now_v7(),
        1,
        vec![svc],
        vec![route],
        vec![up],
        targets,
    ))
    .await;

    // Smooth weighted round-robin: every 4 requests go a, a, b, a.
    assert_eq!(
        ids(&setup.edge, "/", 40).await,
        counts(&[("a", 30), ("b", 10)])
    );
    // Each target is sent its own host and port as `Host`.
    let answer = get(&setup.edge, "any.test", "/").await;
    let expected = if id_of(&answer) == "a" {
        a.addr
    } else {
        b.addr
    };
    assert_eq!(answer.body["host"], expected.to_string());

    // Weight 0 is out of rotation and not reported.
    let text = metrics_text(&setup.edge).await;
    assert_eq!(
        health_gauge(&text, "rr.internal", &a.target(), "healthchecks_off"),
        Some(1)
    );
    assert_eq!(
        health_gauge(&text, "rr.internal", &c.target(), "healthchecks_off"),
        None
    );
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn least_connections_sends_new_requests_to_the_idle_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let setup = serve_upstream(
        json!({"name": "lc.internal", "algorithm": "least-connections"}),
        &[&a, &b],
        json!({}),
    )
    .await;

    let url = format!("http://{}/hold", setup.edge.proxy_addr);
    let holding = tokio::spawn(async move {
        http()
            .get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    eventually("a request held open", || async {
        (a.held() + b.held() == 1).then_some(())
    })
    .await;
    let (busy, idle) = if a.held() == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert_eq!(
        ids(&setup.edge, "/", 6).await,
        counts(&[(idle, 6)]),
        "{busy} has a request in flight"
    );

    a.release();
    b.release();
    assert_eq!(holding.await.unwrap()["id"], busy);
    // With nothing in flight, both are used again.
    assert_eq!(ids(&setup.edge, "/", 6).await.len(), 2);
    setup.edge.shutdown().await;
}

/// Sends each of `keys` three times; every key must stick to one backend, and the keys together
/// must reach more than one.
async fn assert_sticky_and_spread<F, Fut>(what: &str, keys: usize, mut send_key: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut reached = BTreeSet::new();
    for key in 0..keys {
        let first = send_key(key).await;
        for _ in 0..2 {
            assert_eq!(send_key(key).await, first, "{what}: key {key} moved");
        }
        reached.insert(first);
    }
    assert!(reached.len() > 1, "{what}: every key went to {reached:?}");
}

#[tokio::test]
async fn consistent_hashing_sticks_by_header_ip_path_query_arg_and_falls_back() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let hashing = [
        (
            "/hdr",
            json!({"name": "hdr.internal", "algorithm": "consistent-hashing", "hash_on": "header",
                   "hash_on_header": "X-User", "hash_fallback": "query_arg", "hash_fallback_query_arg": "user"}),
        ),
        (
            "/ip",
            json!({"name": "ip.internal", "algorithm": "consistent-hashing", "hash_on": "ip"}),
        ),
        (
            "/path",
            json!({"name": "path.internal", "algorithm": "consistent-hashing", "hash_on": "path"}),
        ),
        (
            "/arg",
            json!({"name": "arg.internal", "algorithm": "consistent-hashing", "hash_on": "query_arg",
                   "hash_on_query_arg": "k"}),
        ),
    ];
    let (mut services, mut routes, mut upstreams, mut targets) = (vec![], vec![], vec![], vec![]);
    for (path, upstream) in hashing {
        let up = upstream_entity(upstream);
        for backend in [&a, &b, &c] {
            targets.push(target_entity(&up, &backend.target(), 100));
        }
        let (svc, route) = balanced_service(&up.name, path, json!({}));
        services.push(svc);
        routes.push(route);
        upstreams.push(up);
    }
    let setup = serve_dedicated(balanced_snapshot(
        Uuid::now_v7(),
        1,
        services,
        routes,
        upstreams,
        targets,
    ))
    .await;
    let edge = &setup.edge;

    assert_sticky_and_spread("header", 20, |key| async move {
        let user = format!("user-{key}");
        id_of(&send(edge, "GET", "h.test", "/hdr", &[("x-user", &user)]).await)
    })
    .await;
    // Without the header, the fallback query argument decides; with it, the header does.
    assert_sticky_and_spread("fallback", 20, |key| async move {
        id_of(&get(edge, "h.test", &format!("/hdr?user={key}")).await)
    })
    .await;
    let by_header = id_of(&send(edge, "GET", "h.test", "/hdr", &[("x-user", "fixed")]).await);
    for key in 0..10 {
        let path = format!("/hdr?user={key}");
        let answer = send(edge, "GET", "h.test", &path, &[("x-user", "fixed")]).await;
        assert_eq!(id_of(&answer), by_header);
    }
    assert_sticky_and_spread("path", 20, |key| async move {
        id_of(&get(edge, "h.test", &format!("/path/item-{key}")).await)
    })
    .await;
    assert_sticky_and_spread("query_arg", 20, |key| async move {
        id_of(&get(edge, "h.test", &format!("/arg?k=v{key}&other=1")).await)
    })
    .await;
    let proxy = edge.proxy_addr;
    assert_sticky_and_spread("ip", 12, |key| async move {
        let ip = IpAddr::from([127, 0, 0, 2 + u8::try_from(key).unwrap()]);
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(ip)
            .build()
            .unwrap();
        let seen: Value = client
            .get(format!("http://{proxy}/ip"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen["id"].as_str().unwrap().to_string()
    })
    .await;
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn consistent_hashing_on_a_cookie_sets_it_then_sticks() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let setup = serve_upstream(
        json!({"name": "ck.internal", "algorithm": "consistent-hashing", "hash_on": "cookie",
               "hash_on_cookie": "sticky", "hash_on_cookie_path": "/app"}),
        &[&a, &b, &c],
        json!({}),
    )
    .await;
    let edge = &setup.edge;
    let mut reached = BTreeSet::new();
    for _ in 0..12 {
        let first = get(edge, "c.test", "/").await;
        let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
        let (pair, attributes) = set_cookie.split_once("; ").unwrap();
        assert_eq!(attributes, "Path=/app; SameSite=Lax; HttpOnly");
        let value = pair.strip_prefix("sticky=").unwrap();
        assert!(Uuid::parse_str(value).is_ok(), "{value}");
        let cookie = format!("other=1; {pair}");
        for _ in 0..3 {
            let again = send(edge, "GET", "c.test", "/", &[("cookie", &cookie)]).await;
            assert_eq!(id_of(&again), id_of(&first));
            assert!(again.headers.get("set-cookie").is_none());
        }
        reached.insert(id_of(&first));
    }
    assert!(reached.len() > 1, "every cookie went to {reached:?}");
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn latency_aware_balancing_favours_the_fast_target() {
    let fast = Backend::start("fast").await;
    let slow = Backend::with_delay("slow", Duration::from_secs(1)).await;
    let setup = serve_upstream(
        json!({"name": "lat.internal", "algorithm": "latency"}),
        &[&slow, &fast],
        json!({}),
    )
    .await;
    let seen = ids(&setup.edge, "/", 20).await;
    // Each is measured once; the slow one's average keeps it out for the rest.
    let slow_count = seen.get("slow").copied().unwrap_or(0);
    assert!((1..=2).contains(&slow_count), "{seen:?}");
    assert_eq!(seen.get("fast").copied().unwrap_or(0), 20 - slow_count);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn active_checks_take_a_failing_target_out_and_bring_it_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let setup = serve_upstream(
        json!({"name": "active.internal", "healthchecks": {"active": {
            "http_path": "/health", "timeout": 2,
            "healthy": {"interval": 0.1, "successes": 2},
            "unhealthy": {"interval": 0.1, "http_failures": 2}}}}),
        &[&a, &b],
        json!({}),
    )
    .await;
    let edge = &setup.edge;
    wait_for_health(edge, "active.internal", &a.target(), "healthy").await;
    assert_eq!(ids(edge, "/", 4).await, counts(&[("a", 2), ("b", 2)]));

    a.set_probe_status(503);
    wait_for_health(edge, "active.internal", &a.target(), "unhealthy").await;
    assert_eq!(ids(edge, "/", 6).await, counts(&[("b", 6)]));

    a.set_probe_status(200);
    wait_for_health(edge, "active.internal", &a.target(), "healthy").await;
    assert_eq!(ids(edge, "/", 4).await, counts(&[("a", 2), ("b", 2)]));
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn passive_checks_break_the_circuit_and_health_survives_config_swaps() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(500);
    let up = upstream_entity(
        json!({"name": "passive.internal", "healthchecks": {"passive": {
        "unhealthy": {"http_failures": 3}}}}),
    );
    let targets = vec![
        target_entity(&up, &a.target(), 100),
        target_entity(&up, &b.target(), 100),
    ];
    let (svc, route) = balanced_service("passive.internal", "/", json!({}));
    let cp = Uuid::now_v7();
    let snapshot = |version, targets: Vec<tollgate_model::Target>, extra_route: bool| {
        let mut routes = vec![route.clone()];
        if extra_route {
            routes.push(route_to(&svc, json!({"paths": ["/extra"]})));
        }
        balanced_snapshot(
            cp,
            version,
            vec![svc.clone()],
            routes,
            vec![up.clone()],
            targets,
        )
    };
    let setup = serve_dedicated(snapshot(1, targets.clone(), false)).await;
    let edge = &setup.edge;

    // Round-robin alternates until a's third 500 opens its circuit; then only b answers.
    let mut statuses = BTreeMap::new();
    for _ in 0..20 {
        let answer = get(edge, "p.test", "/").await;
        *statuses.entry((id_of(&answer), answer.status)).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(("a".to_string(), 500), 3), (("b".to_string(), 200), 17)])
    );
    wait_for_health(edge, "passive.internal", &a.target(), "unhealthy").await;
    wait_for_health(edge, "passive.internal", &b.target(), "healthy").await;

    // A new version keeps what the edge learnt about its targets.
    setup
        .bus
        .publish_snapshot(REGION, &snapshot(2, targets.clone(), true))
        .await
        .unwrap();
    wait_for_version(edge, cp, 2).await;
    assert_eq!(ids(edge, "/", 6).await, counts(&[("b", 6)]));
    wait_for_health(edge, "passive.internal", &a.target(), "unhealthy").await;

    // A target taken out of the config is forgotten.
    setup
        .bus
        .publish_snapshot(REGION, &snapshot(3, vec![targets[1].clone()], true))
        .await
        .unwrap();
    wait_for_version(edge, cp, 3).await;
    let text = metrics_text(edge).await;
    assert_eq!(
        health_gauge(&text, "passive.internal", &a.target(), "unhealthy"),
        None
    );
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn no_usable_target_is_503_with_kongs_message() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(500);
    let passive = json!({"passive": {"unhealthy": {"http_failures": 1}}});
    let lone = upstream_entity(json!({"name": "lone.internal", "healthchecks": passive}));
    let strict = upstream_entity(json!({"name": "strict.internal",
        "healthchecks": {"threshold": 100, "passive": {"unhealthy": {"http_failures": 1}}}}));
    let empty = upstream_entity(json!({"name": "empty.internal"}));
    let targets = vec![
        target_entity(&lone, &a.target(), 100),
        target_entity(&strict, &a.target(), 100),
        target_entity(&strict, &b.target(), 100),
        target_entity(&empty, &b.target(), 0),
    ];
    let (s1, r1) = balanced_service("lone.internal", "/lone", json!({}));
    let (s2, r2) = balanced_service("strict.internal", "/strict", json!({}));
    let (s3, r3) = balanced_service("empty.internal", "/empty", json!({}));
    let setup = serve_dedicated(balanced_snapshot(
        Uuid::now_v7(),
        1,
        vec![s1, s2, s3],
        vec![r1, r2, r3],
        vec![lone, strict, empty],
        targets,
    ))
    .await;
    let edge = &setup.edge;

    assert_eq!(get(edge, "n.test", "/lone").await.status, 500);
    // The strict upstream's first pick is a (created first): one failure takes half its weight,
    // under its 100 % threshold, so b is not used either.
    assert_eq!(get(edge, "n.test", "/strict").await.status, 500);
    for path in ["/lone", "/strict", "/empty"] {
        let answer = get(edge, "n.test", path).await;
        assert_eq!(answer.status, 503, "{path}");
        assert_eq!(
            answer.body["message"],
            "failure to get a peer from the ring-balancer"
        );
        assert!(answer.body["request_id"].as_str().is_some());
    }
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn retries_move_to_the_next_target_only_when_they_may() {
    let b = Backend::start("b").await;
    let dead = dead_address().await.to_string();
    let slow = Backend::with_delay("slow", Duration::from_secs(30)).await;

    // The refusing target is first in rotation: every first pick fails over to b.
    let refusing = upstream_entity(json!({"name": "refusing.internal"}));
    let timing_out = upstream_entity(json!({"name": "timing-out.internal"}));
    let lone_dead = upstream_entity(json!({"name": "dead.internal"}));
    let targets = vec![
        target_entity(&refusing, &dead, 100),
        target_entity(&refusing, &b.target(), 100),
        target_entity(&timing_out, &slow.target(), 100),
        target_entity(&timing_out, &b.target(), 100),
        target_entity(&lone_dead, &dead, 100),
    ];
    let (s1, r1) = balanced_service("refusing.internal", "/refusing", json!({}));
    let (s2, r2) = balanced_service(
        "timing-out.internal",
        "/timing-out",
        json!({"read_timeout": 300}),
    );
    let (s3, r3) = balanced_service("dead.internal", "/no-retries", json!({"retries": 0}));
    let setup = serve_dedicated(balanced_snapshot(
        Uuid::now_v7(),
        1,
        vec![s1, s2, s3],
        vec![r1, r2, r3],
        vec![refusing, timing_out, lone_dead],
        targets,
    ))
    .await;
    let edge = &setup.edge;

    assert_eq!(ids(edge, "/refusing", 6).await, counts(&[("b", 6)]));
    // A small body is kept for the retry.
    let posted = http()
        .post(format!("http://{}/refusing/p", edge.proxy_addr))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(
        (posted["id"].as_str(), posted["body"].as_str()),
        (Some("b"), Some("payload"))
    );

    // A timed-out GET is retried on the next target; a POST that may have arrived is not.
    assert_eq!(ids(edge, "/timing-out", 2).await, counts(&[("b", 2)]));
    let mut post_statuses = BTreeSet::new();
    for _ in 0..2 {
        let status = http()
            .post(format!("http://{}/timing-out", edge.proxy_addr))
            .body("once")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        post_statuses.insert(status);
    }
    assert_eq!(post_statuses, BTreeSet::from([200, 504]));

    let answer = get(edge, "r.test", "/no-retries").await;
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.body["message"],
        "An invalid response was received from the upstream server"
    );
    setup.edge.shutdown().await;
}

/// A listener whose accept queue is full: connecting to it hangs while the listener and the
/// queued connections are kept.
async fn unanswered_listener() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Fill the queue until a connection does not complete.
    loop {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connecting to the listener: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never fills");
    }
    (addr, listener, queued)
}

#[tokio::test]
async fn connect_timeout_is_504() {
    let (addr, _listener, _queued) = unanswered_listener().await;
    let svc =
        service(json!({"url": format!("http://{addr}"), "connect_timeout": 200, "retries": 0}));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route])).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), get(&setup.edge, "c.test", "/"))
        .await
        .expect("the connect timeout answers before the OS gives up");
    assert_eq!(answer.status, 504);
    assert_eq!(answer.body["message"], "The upstream server is timing out");
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn write_timeout_is_504_when_the_upstream_stops_reading() {
    // Connections complete into the accept queue, and the kernel buffers what is sent until its
    // buffers are full; nobody ever reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service(json!({"url": format!("http://{addr}"), "write_timeout": 300, "retries": 0}));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    let cp = Uuid::now_v7();
    let setup = serve_dedicated(snapshot(cp, 1, &[], vec![svc.clone()], vec![route.clone()])).await;

    let upload = http()
        .post(format!("http://{}/upload", setup.edge.proxy_addr))
        .body(vec![b'x'; 64 * 1024 * 1024])
        .send();
    // The edge may close the connection while the client is still sending; either way it has
    // answered 504.
    if let Ok(response) = tokio::time::timeout(Duration::from_secs(20), upload)
        .await
        .expect("an answer")
    {
        assert_eq!(response.status(), 504);
    }
    let line = format!(
        "tollgate_edge_requests_total{{control_plane=\"{cp}\",route=\"{}\",service=\"{}\",status=\"504\"}} 1",
        route.id, svc.id
    );
    eventually("the 504 counted", || async {
        metrics_text(&setup.edge)
            .await
            .lines()
            .any(|l| l == line)
            .then_some(())
    })
    .await;
    drop(listener);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn read_timeout_applies_between_response_chunks() {
    let never = Arc::new(Notify::new());
    let up = streaming_upstream(never.clone()).await;
    let svc = service(json!({"url": format!("http://{up}"), "read_timeout": 300}));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route])).await;

    let mut response = http()
        .get(format!("http://{}/", setup.edge.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    let rest = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the edge gives up on the silent upstream");
    assert!(rest.is_err(), "the body is cut short: {rest:?}");
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn heartbeats_report_target_health() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    a.set_status(500);
    let watched = upstream_entity(json!({"name": "watched.internal",
        "healthchecks": {"passive": {"unhealthy": {"http_failures": 1}}}}));
    let unwatched = upstream_entity(json!({"name": "unwatched.internal"}));
    let targets = vec![
        target_entity(&watched, &a.target(), 100),
        target_entity(&watched, &b.target(), 100),
        target_entity(&unwatched, &b.target(), 100),
    ];
    let (s1, r1) = balanced_service("watched.internal", "/w", json!({}));
    let (s2, r2) = balanced_service("unwatched.internal", "/u", json!({}));
    let cp = Uuid::now_v7();
    let setup = serve_dedicated(balanced_snapshot(
        cp,
        1,
        vec![s1, s2],
        vec![r1, r2],
        vec![watched.clone(), unwatched.clone()],
        targets,
    ))
    .await;
    let mut heartbeats = setup.bus.heartbeats().await.unwrap();
    // a is first in rotation: its 500 marks it unhealthy.
    assert_eq!(get(&setup.edge, "h.test", "/w").await.status, 500);

    let expected: HashSet<(Uuid, String, TargetHealth)> = HashSet::from([
        (watched.id, a.target(), TargetHealth::Unhealthy),
        (watched.id, b.target(), TargetHealth::Healthy),
        (unwatched.id, b.target(), TargetHealth::HealthchecksOff),
    ]);
    let reported = |beat: &tollgate_model::Heartbeat| -> HashSet<(Uuid, String, TargetHealth)> {
        beat.target_health
            .iter()
            .filter(|r| r.control_plane_id == cp)
            .map(|r| (r.upstream_id, r.target.clone(), r.health))
            .collect()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let beat = heartbeats.next().await.unwrap();
            if reported(&beat) == expected {
                break;
            }
        }
    })
    .await
    .expect("a heartbeat with the targets' health");
    setup.edge.shutdown().await;
}

/// A target whose name does not resolve is Kong's `DNS_ERROR`: the failed attempt answers 503
/// with Kong's message, the target is then left out of rotation (with no retries configured,
/// every later request still succeeds), and `/metrics` and heartbeats report it.
#[tokio::test]
async fn a_target_whose_name_does_not_resolve_is_dns_error_and_left_out() {
    let b = Backend::start("b").await;
    let unresolvable = "no-such-target.invalid:80";
    let up = upstream_entity(json!({"name": "dns.internal"}));
    let targets = vec![
        target_entity(&up, unresolvable, 100),
        target_entity(&up, &b.target(), 100),
    ];
    let (svc, route) = balanced_service("dns.internal", "/", json!({"retries": 0}));
    let cp = Uuid::now_v7();
    let setup = serve_dedicated(balanced_snapshot(
        cp,
        1,
        vec![svc],
        vec![route],
        vec![up.clone()],
        targets,
    ))
    .await;
    let mut heartbeats = setup.bus.heartbeats().await.unwrap();

    // The unresolvable target is first in rotation.
    let failed = get(&setup.edge, "d.test", "/").await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    assert_eq!(failed.body["message"], "name resolution failed");
    assert_eq!(
        ids(&setup.edge, "/", 20).await,
        counts(&[("b", 20)]),
        "after a failed resolution the target is out of rotation"
    );

    let text = metrics_text(&setup.edge).await;
    assert_eq!(
        health_gauge(&text, "dns.internal", unresolvable, "dns_error"),
        Some(1)
    );
    assert_eq!(
        health_gauge(&text, "dns.internal", &b.target(), "healthchecks_off"),
        Some(1)
    );
    let expected: HashSet<(String, TargetHealth)> = HashSet::from([
        (unresolvable.to_string(), TargetHealth::DnsError),
        (b.target(), TargetHealth::HealthchecksOff),
    ]);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let beat = heartbeats.next().await.unwrap();
            let reported: HashSet<(String, TargetHealth)> = beat
                .target_health
                .iter()
                .filter(|r| r.control_plane_id == cp && r.upstream_id == up.id)
                .map(|r| (r.target.clone(), r.health))
                .collect();
            if reported == expected {
                break;
            }
        }
    })
    .await
    .expect("a heartbeat reporting DNS_ERROR");
    setup.edge.shutdown().await;
}
