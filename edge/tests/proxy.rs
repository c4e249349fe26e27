//! Through the proxy: routing, priority, path handling, forwarded headers, errors and streaming.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

#[tokio::test]
async fn routes_by_hosts_paths_methods_and_headers() {
    let up = echo_upstream().await;
    let (exact, wild, suffix, port, prefix, regex, method, header) = (
        tagged(up, "exact"),
        tagged(up, "wild"),
        tagged(up, "suffix"),
        tagged(up, "port"),
        tagged(up, "prefix"),
        tagged(up, "regex"),
        tagged(up, "method"),
        tagged(up, "header"),
    );
    let routes = vec![
        route_to(&exact, json!({"hosts": ["api.example.com"]})),
        route_to(&wild, json!({"hosts": ["*.wild.test"]})),
        route_to(&suffix, json!({"hosts": ["suffix.*"]})),
        route_to(&port, json!({"hosts": ["ported.test:8443"]})),
        route_to(&prefix, json!({"paths": ["/items"]})),
        route_to(&regex, json!({"paths": ["~/orders/\\d+$"]})),
        route_to(&method, json!({"methods": ["DELETE"]})),
        route_to(&header, json!({"headers": {"X-Tenant": ["blue"]}})),
    ];
    let services = vec![exact, wild, suffix, port, prefix, regex, method, header];
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], services, routes)).await;
    let edge = &setup.edge;

    assert_eq!(
        get(edge, "API.Example.com:8000", "/a").await.path(),
        "/exact/a"
    );
    assert_eq!(get(edge, "x.y.wild.test", "/").await.path(), "/wild");
    assert_eq!(get(edge, "suffix.org", "/b").await.path(), "/suffix/b");
    assert_eq!(get(edge, "ported.test:8443", "/").await.path(), "/port");
    assert_eq!(get(edge, "ported.test", "/").await.status, 404);
    assert_eq!(
        get(edge, "other.test", "/items/1").await.path(),
        "/prefix/1"
    );
    assert_eq!(get(edge, "other.test", "/orders/42").await.path(), "/regex");
    assert_eq!(get(edge, "other.test", "/orders/42/x").await.status, 404);
    assert_eq!(
        send(edge, "DELETE", "other.test", "/x", &[]).await.path(),
        "/method/x"
    );
    let blue = send(edge, "GET", "other.test", "/x", &[("x-tenant", "BLUE")]).await;
    assert_eq!(blue.path(), "/header/x");
    let red = send(edge, "GET", "other.test", "/x", &[("x-tenant", "red")]).await;
    assert_eq!(red.status, 404);

    let missing = get(edge, "other.test", "/nothing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body["message"],
        "no Route matched with those values"
    );
    let request_id = missing.headers["x-request-id"].to_str().unwrap();
    assert_eq!(missing.body["request_id"], request_id);
}

#[tokio::test]
async fn priority_follows_kong() {
    let up = echo_upstream().await;
    let (short, long, host_path, re_low, re_high, old, new) = (
        tagged(up, "short"),
        tagged(up, "long"),
        tagged(up, "hostpath"),
        tagged(up, "relow"),
        tagged(up, "rehigh"),
        tagged(up, "old"),
        tagged(up, "new"),
    );
    let routes = vec![
        route_to(&short, json!({"paths": ["/api"]})),
        route_to(&long, json!({"paths": ["/api/v1"]})),
        route_to(&host_path, json!({"hosts": ["h.test"], "paths": ["/api"]})),
        route_to(&re_low, json!({"paths": ["~/r/.+"], "regex_priority": 1})),
        route_to(
            &re_high,
            json!({"paths": ["~/r/[a-z]+$"], "regex_priority": 9}),
        ),
        {
            let mut r = route_at(json!({"paths": ["/tie"], "service": {"id": old.id}}), 10);
            r.name = Some("old".into());
            r
        },
        route_at(json!({"paths": ["/tie"], "service": {"id": new.id}}), 20),
    ];
    let services = vec![short, long, host_path, re_low, re_high, old, new];
    let setup = serve_snapshot(snapshot(Uuid::now_v7(), 1, &["*.test"], services, routes)).await;
    let edge = &setup.edge;

    assert_eq!(get(edge, "a.test", "/api/v1/x").await.path(), "/long/x");
    assert_eq!(get(edge, "a.test", "/api/v2").await.path(), "/short/v2");
    assert_eq!(
        get(edge, "h.test", "/api/v1/x").await.path(),
        "/hostpath/v1/x"
    );
    assert_eq!(get(edge, "a.test", "/r/abc").await.path(), "/rehigh");
    assert_eq!(get(edge, "a.test", "/r/123").await.path(), "/relow");
    assert_eq!(get(edge, "a.test", "/tie").await.path(), "/old");
}

#[tokio::test]
async fn strip_path_and_path_handling() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}/s") }));
    let root = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![
        route_to(
            &svc,
            json!({"paths": ["/fv0"], "strip_path": false, "path_handling": "v0"}),
        ),
        route_to(
            &svc,
            json!({"paths": ["/fv1"], "strip_path": false, "path_handling": "v1"}),
        ),
        route_to(
            &svc,
            json!({"paths": ["/tv0"], "strip_path": true, "path_handling": "v0"}),
        ),
        route_to(
            &svc,
            json!({"paths": ["/tv1"], "strip_path": true, "path_handling": "v1"}),
        ),
        route_to(&svc, json!({"paths": ["~/re\\d+"], "strip_path": true})),
        route_to(&root, json!({"paths": ["/keep"], "strip_path": false})),
        route_to(&root, json!({"paths": ["/strip"]})),
    ];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["p.test"],
        vec![svc, root],
        routes,
    ))
    .await;
    let edge = &setup.edge;
    for (request, upstream) in [
        ("/fv0req", "/s/fv0req"),
        ("/fv1req", "/sfv1req"),
        ("/tv0req", "/s/req"),
        ("/tv1req", "/sreq"),
        ("/re42/rest", "/s/rest"),
        ("/keep/a", "/keep/a"),
        ("/strip/a", "/a"),
        ("/strip", "/"),
        ("/strip/./b/../c//d", "/c/d"),
        ("/%73trip/x", "/x"),
    ] {
        assert_eq!(
            get(edge, "p.test", request).await.path(),
            upstream,
            "{request}"
        );
    }
    let with_query = get(edge, "p.test", "/strip/q?a=1&b=%20x").await;
    assert_eq!(with_query.body["query"], "a=1&b=%20x");
}

#[tokio::test]
async fn preserve_host_and_forwarded_headers() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![
        route_to(&svc, json!({"paths": ["/keep"], "preserve_host": true})),
        route_to(&svc, json!({"paths": ["/svc"]})),
    ];
    let setup = serve_snapshot(snapshot(Uuid::now_v7(), 1, &["f.test"], vec![svc], routes)).await;
    let edge = &setup.edge;
    let port = edge.proxy_addr.port().to_string();

    let kept = get(edge, "F.test:1234", "/keep/x").await;
    assert_eq!(kept.seen("host"), Some("F.test:1234"));
    let replaced = get(edge, "f.test", "/svc/x").await;
    assert_eq!(replaced.seen("host"), Some(up.to_string().as_str()));

    let answer = send(
        edge,
        "GET",
        "f.test",
        "/svc/a/b?c=d",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.example"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-custom", "stays"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.seen("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(answer.seen("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(answer.seen("x-forwarded-proto"), Some("http"));
    assert_eq!(answer.seen("x-forwarded-host"), Some("f.test"));
    assert_eq!(answer.seen("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(answer.seen("x-forwarded-path"), Some("/svc/a/b"));
    assert_eq!(answer.seen("x-forwarded-prefix"), Some("/svc"));
    assert_eq!(answer.seen("via"), Some("1.1 tollgate"));
    assert_eq!(answer.seen("x-custom"), Some("stays"));
    assert_eq!(answer.seen("proxy-authorization"), None);
    assert_eq!(answer.seen("x-hop"), None);
    assert_eq!(answer.path(), "/a/b");
    assert_eq!(answer.body["query"], "c=d");

    // Kong's latency headers, in whole milliseconds.
    for header in ["x-tollgate-proxy-latency", "x-tollgate-upstream-latency"] {
        let value = answer.headers[header].to_str().unwrap();
        assert!(value.parse::<u64>().is_ok(), "{header}: {value}");
    }

    // A request id is made up when missing, sent upstream and returned.
    let generated = answer.headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 32);
    assert_eq!(answer.seen("x-request-id"), Some(generated));
    assert!(answer.headers["via"]
        .to_str()
        .unwrap()
        .contains("1.1 tollgate"));
    // … and kept when the client sent one.
    let given = send(
        edge,
        "GET",
        "f.test",
        "/svc",
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(given.seen("x-request-id"), Some("abc-123"));
    assert_eq!(given.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn missing_or_disabled_service_is_503() {
    let up = echo_upstream().await;
    let disabled = service(json!({ "url": format!("http://{up}"), "enabled": false }));
    let routes = vec![
        route(json!({"paths": ["/orphan"]})),
        route_to(&disabled, json!({"paths": ["/off"]})),
        route(json!({"paths": ["/ghost"], "service": {"id": Uuid::now_v7()}})),
    ];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["s.test"],
        vec![disabled],
        routes,
    ))
    .await;
    for path in ["/orphan", "/off", "/ghost"] {
        let answer = get(&setup.edge, "s.test", path).await;
        assert_eq!(answer.status, 503, "{path}");
        assert_eq!(answer.body["message"], "no Service found with those values");
        assert!(answer.body["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
    }
}

#[tokio::test]
async fn dead_upstream_is_502_and_slow_one_504() {
    let dead = service(json!({ "url": format!("http://{}", dead_address().await) }));
    let slow_up = slow_upstream().await;
    let slow = service(json!({ "url": format!("http://{slow_up}"), "read_timeout": 300 }));
    // TLS towards a plain-HTTP server fails the handshake: also a bad gateway.
    let echo = echo_upstream().await;
    let not_tls = service(json!({ "url": format!("https://{echo}") }));
    let routes = vec![
        route_to(&dead, json!({"paths": ["/dead"]})),
        route_to(&slow, json!({"paths": ["/slow"]})),
        route_to(&not_tls, json!({"paths": ["/tls"]})),
    ];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["e.test"],
        vec![dead, slow, not_tls],
        routes,
    ))
    .await;

    let answer = get(&setup.edge, "e.test", "/dead").await;
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.body["message"],
        "An invalid response was received from the upstream server"
    );
    let answer = get(&setup.edge, "e.test", "/tls").await;
    assert_eq!(answer.status, 502);

    let started = std::time::Instant::now();
    let answer = get(&setup.edge, "e.test", "/slow").await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.body["message"], "The upstream server is timing out");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn https_only_route_asks_for_https() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![
        route_to(&svc, json!({"paths": ["/secure"], "protocols": ["https"]})),
        route_to(
            &svc,
            json!({"paths": ["/moved"], "protocols": ["https"], "https_redirect_status_code": 301}),
        ),
    ];
    let setup = serve_snapshot(snapshot(Uuid::now_v7(), 1, &["t.test"], vec![svc], routes)).await;
    let answer = get(&setup.edge, "t.test", "/secure").await;
    assert_eq!(answer.status, 426);
    assert_eq!(answer.body["message"], "Please use HTTPS protocol");

    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(format!("http://{}/moved/x?y=1", setup.edge.proxy_addr))
        .header("host", "t.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "https://t.test/moved/x?y=1");
}

/// A bare HTTP/1.1 upstream that counts the connections it accepts and answers `ok` to each
/// request; with `close_after_each`, it closes the connection after answering without saying so
/// (as an upstream whose keep-alive timeout expired does).
async fn counting_upstream(close_after_each: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buffer[..n]);
                    while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        read.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if close_after_each {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_once_the_upstream_closes_them() {
    let (kept, kept_accepted) = counting_upstream(false).await;
    let (closing, closing_accepted) = counting_upstream(true).await;
    let kept = service(json!({ "url": format!("http://{kept}") }));
    let closing = service(json!({ "url": format!("http://{closing}") }));
    let routes = vec![
        route_to(&kept, json!({"paths": ["/kept"]})),
        route_to(&closing, json!({"paths": ["/closing"]})),
    ];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["pool.test"],
        vec![kept, closing],
        routes,
    ))
    .await;

    for _ in 0..10 {
        let answer = get(&setup.edge, "pool.test", "/kept").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["text"], "ok");
    }
    let kept_connections = kept_accepted.load(Ordering::SeqCst);
    assert!(
        kept_connections <= 2,
        "10 requests in a row took {kept_connections} upstream connections"
    );

    // A connection the upstream closed is not used again, or the request goes on another one.
    for _ in 0..10 {
        let answer = get(&setup.edge, "pool.test", "/closing").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["text"], "ok");
    }
    assert!(closing_accepted.load(Ordering::SeqCst) >= 10);
}

#[tokio::test]
async fn response_body_streams_before_the_upstream_finishes() {
    let release = Arc::new(Notify::new());
    let up = streaming_upstream(release.clone()).await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/stream"]}))];
    let setup = serve_snapshot(snapshot(Uuid::now_v7(), 1, &["st.test"], vec![svc], routes)).await;

    let mut response = http()
        .get(format!("http://{}/stream", setup.edge.proxy_addr))
        .header("host", "st.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first chunk arrives while the upstream is still waiting")
        .unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
}

#[tokio::test]
async fn request_body_streams_before_the_client_finishes() {
    let up = upload_echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/upload"]}))];
    let setup = serve_snapshot(snapshot(Uuid::now_v7(), 1, &["u.test"], vec![svc], routes)).await;

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    tx.send(Ok(Bytes::from_static(b"part-one;"))).await.unwrap();
    let request = http()
        .post(format!("http://{}/upload", setup.edge.proxy_addr))
        .header("host", "u.test")
        .body(body)
        .send();
    let mut response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the upstream answers while the upload is still open")
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first part comes back before the upload ends")
        .unwrap();
    assert_eq!(first.as_deref(), Some(&b"part-one;"[..]));
    tx.send(Ok(Bytes::from_static(b"part-two"))).await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"part-two");
}

#[tokio::test]
async fn post_bodies_and_h2c_prior_knowledge() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/h"]}))];
    // Dedicated mode: the h2 request's authority is the edge's own address.
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], routes)).await;

    let posted = http()
        .post(format!("http://{}/h/post", setup.edge.proxy_addr))
        .header("host", "h2.test")
        .body("hello upstream")
        .send()
        .await
        .unwrap();
    let posted: serde_json::Value = posted.json().await.unwrap();
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["body"], "hello upstream");

    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = http::Request::get(format!("http://{}/h/two", setup.edge.proxy_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = h2.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["path"], "/two");
}

#[tokio::test]
async fn upstream_latency_covers_the_upstreams_time_to_answer() {
    let up = delayed_upstream(Duration::from_millis(300)).await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["slow.test"],
        vec![svc.clone()],
        vec![route_to(&svc, json!({ "paths": ["/"] }))],
    ))
    .await;
    let answer = get(&setup.edge, "slow.test", "/").await;
    assert_eq!(answer.status, 200);
    let upstream: u64 = answer.headers["x-tollgate-upstream-latency"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        upstream >= 300,
        "the upstream took at least 300 ms, the header says {upstream}"
    );
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_config_versions() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let route = route_to(&svc, json!({ "paths": ["/counted"] }));
    let cp = Uuid::now_v7();
    let setup = serve_snapshot(snapshot(
        cp,
        4,
        &["metrics.test"],
        vec![svc.clone()],
        vec![route.clone()],
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(
            get(&setup.edge, "metrics.test", "/counted").await.status,
            200
        );
    }
    assert_eq!(
        get(&setup.edge, "metrics.test", "/nothing-here")
            .await
            .status,
        404
    );
    assert_eq!(get(&setup.edge, "unknown.test", "/").await.status, 404);

    let text = http()
        .get(format!("http://{}/metrics", setup.edge.status_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expect = [
        format!(
            "tollgate_edge_requests_total{{control_plane=\"{cp}\",route=\"{}\",service=\"{}\",status=\"200\"}} 3",
            route.id, svc.id
        ),
        format!(
            "tollgate_edge_requests_total{{control_plane=\"{cp}\",route=\"none\",service=\"none\",status=\"404\"}} 1"
        ),
        "tollgate_edge_requests_total{control_plane=\"none\",route=\"none\",service=\"none\",status=\"404\"} 1".to_string(),
        format!("tollgate_edge_config_version{{control_plane=\"{cp}\"}} 4"),
        format!("tollgate_edge_upstream_duration_seconds_count{{control_plane=\"{cp}\"}} 3"),
        format!("tollgate_edge_request_duration_seconds_count{{control_plane=\"{cp}\"}} 4"),
    ];
    for line in expect {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    setup.edge.shutdown().await;
}
