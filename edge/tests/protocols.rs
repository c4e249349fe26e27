//! Through the proxy: TLS termination with certificates picked by SNI, HTTP/2 by ALPN, WebSocket
//! upgrades, and gRPC (unary, server streaming, trailers, the edge's own errors). Streaming of
//! plain HTTP bodies and h2c are covered in `proxy.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tollgate_edge::NoCertificateCheck;
use tollgate_model::entity::{build, Build};
use tollgate_model::secret::MasterKey;
use tollgate_model::{Certificate, Entities, Route, Service, Snapshot, Sni};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;
use uuid::Uuid;

/// How long one step of a test may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(10);

/// A certificate entity with its key sealed for `control_plane`, and the DER the edge should
/// present for it.
fn sealed_certificate(
    name: &str,
    control_plane: Uuid,
    master_key: &MasterKey,
) -> (Certificate, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let key = master_key
        .seal(control_plane, &generated.signing_key.serialize_pem())
        .unwrap();
    let certificate = build::<Certificate>(
        Build::Create { id: Uuid::now_v7() },
        &json!({ "cert": generated.cert.pem(), "key": key }),
        1,
    )
    .unwrap();
    (certificate, generated.cert.der().clone())
}

fn sni(name: &str, certificate: &Certificate) -> Sni {
    build::<Sni>(
        Build::Create { id: Uuid::now_v7() },
        &json!({ "name": name, "certificate": { "id": certificate.id } }),
        1,
    )
    .unwrap()
}

fn snapshot_with(
    control_plane: Uuid,
    hostnames: &[&str],
    services: Vec<Service>,
    routes: Vec<Route>,
    certificates: Vec<Certificate>,
    snis: Vec<Sni>,
) -> Snapshot {
    Snapshot::of(
        control_plane,
        Uuid::nil(),
        1,
        hostnames.iter().map(|h| h.to_string()).collect(),
        Entities {
            services,
            routes,
            certificates,
            snis,
            ..Entities::default()
        },
    )
}

/// A TLS connection to `addr` sending `server_name` as SNI (an IP address sends none) and
/// offering `alpn`.
async fn tls_connect(addr: SocketAddr, server_name: &str, alpn: &[&str]) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        // Tests look at whichever certificate the edge presents, so none is checked.
        .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    tokio::time::timeout(
        PATIENCE,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the TLS handshake finishes")
    .unwrap()
}

/// The leaf certificate the edge presented for `server_name`.
async fn presented(addr: SocketAddr, server_name: &str) -> CertificateDer<'static> {
    let stream = tls_connect(addr, server_name, &[]).await;
    let (_, connection) = stream.get_ref();
    connection.peer_certificates().unwrap()[0].clone()
}

/// Sends one request on a fresh HTTP/1.1 connection over `io`.
async fn send_http1<IO>(io: IO, request: Request<Full<Bytes>>) -> Response<Incoming>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("an answer")
        .unwrap()
}

/// Sends one request on a fresh HTTP/2 connection over `io`.
async fn send_http2<IO>(io: IO, request: Request<Full<Bytes>>) -> Response<Incoming>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("an answer")
        .unwrap()
}

async fn json_body(response: Response<Incoming>) -> Value {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn get_request(uri: &str, host: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(uri);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn sni_selects_the_certificate_and_unknown_names_get_the_default() {
    let master_key = MasterKey::generate().unwrap();
    let cp = Uuid::now_v7();
    let (cert_a, der_a) = sealed_certificate("a.example.com", cp, &master_key);
    let (cert_b, der_b) = sealed_certificate("b.example.com", cp, &master_key);
    let (cert_wild, der_wild) = sealed_certificate("*.wild.example.com", cp, &master_key);
    let snis = vec![
        sni("a.example.com", &cert_a),
        sni("b.example.com", &cert_b),
        sni("*.wild.example.com", &cert_wild),
        // An exact name beats a wildcard that also covers it.
        sni("exact.wild.example.com", &cert_a),
    ];
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/"]}))];
    let snapshot = snapshot_with(
        cp,
        &["a.example.com", "b.example.com", "*.wild.example.com"],
        vec![svc],
        routes,
        vec![cert_a, cert_b, cert_wild],
        snis,
    );
    let setup = serve_snapshot_with_tls(snapshot, Some(master_key), false).await;
    let tls = setup.edge.proxy_tls_addr.expect("a TLS listener");

    assert_eq!(presented(tls, "a.example.com").await, der_a);
    assert_eq!(presented(tls, "B.Example.com").await, der_b);
    assert_eq!(presented(tls, "x.wild.example.com").await, der_wild);
    assert_eq!(presented(tls, "exact.wild.example.com").await, der_a);
    let default = presented(tls, "unknown.example.com").await;
    assert!(![&der_a, &der_b, &der_wild].contains(&&default));
    // A wildcard stands for one label only; no SNI at all gets the default too.
    assert_eq!(presented(tls, "a.b.wild.example.com").await, default);
    assert_eq!(presented(tls, "127.0.0.1").await, default);

    // Requests over TLS are routed as https.
    let stream = tls_connect(tls, "a.example.com", &["http/1.1"]).await;
    let response = send_http1(stream, get_request("/hello", Some("a.example.com"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    let seen = json_body(response).await;
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        seen["headers"]["x-forwarded-port"],
        tls.port().to_string().as_str()
    );

    // An unknown name still gets its handshake; routing then answers 404 as usual.
    let stream = tls_connect(tls, "unknown.example.com", &[]).await;
    let response = send_http1(stream, get_request("/", Some("unknown.example.com"))).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_certificate_whose_key_does_not_open_is_skipped() {
    let sealing_key = MasterKey::generate().unwrap();
    let cp = Uuid::now_v7();
    let (cert, der) = sealed_certificate("k.example.com", cp, &sealing_key);
    let snis = vec![sni("k.example.com", &cert)];
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/"]}))];
    let snapshot = snapshot_with(cp, &["k.example.com"], vec![svc], routes, vec![cert], snis);
    let other_key = MasterKey::generate().unwrap();
    let setup = serve_snapshot_with_tls(snapshot, Some(other_key), false).await;
    let tls = setup.edge.proxy_tls_addr.unwrap();

    assert_ne!(presented(tls, "k.example.com").await, der);
    let stream = tls_connect(tls, "k.example.com", &[]).await;
    let response = send_http1(stream, get_request("/ok", Some("k.example.com"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(get(&setup.edge, "k.example.com", "/ok").await.status, 200);
}

#[tokio::test]
async fn alpn_picks_http2_or_http1_over_tls() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/two"]}))];
    let snapshot = snapshot(Uuid::now_v7(), 1, &["h2.example.com"], vec![svc], routes);
    let setup = serve_snapshot_with_tls(snapshot, None, false).await;
    let tls = setup.edge.proxy_tls_addr.unwrap();

    let stream = tls_connect(tls, "h2.example.com", &["h2", "http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let response = send_http2(stream, get_request("https://h2.example.com/two/x", None)).await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen = json_body(response).await;
    assert_eq!(seen["path"], "/x");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-host"], "h2.example.com");

    let stream = tls_connect(tls, "h2.example.com", &["http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = send_http1(stream, get_request("/two/y", Some("h2.example.com"))).await;
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(json_body(response).await["path"], "/y");
}

#[tokio::test]
async fn an_https_only_route_redirects_plain_http_and_serves_tls() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(
        &svc,
        json!({"paths": ["/secure"], "protocols": ["https"], "https_redirect_status_code": 308}),
    )];
    let snapshot = snapshot(Uuid::now_v7(), 1, &["s.example.com"], vec![svc], routes);
    let setup = serve_snapshot_with_tls(snapshot, None, false).await;

    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    let response = send_http1(plain, get_request("/secure/a?b=1", Some("s.example.com"))).await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        "https://s.example.com/secure/a?b=1"
    );

    let tls = setup.edge.proxy_tls_addr.unwrap();
    let stream = tls_connect(tls, "s.example.com", &[]).await;
    let response = send_http1(stream, get_request("/secure/a?b=1", Some("s.example.com"))).await;
    assert_eq!(response.status(), 200);
    let seen = json_body(response).await;
    assert_eq!(seen["path"], "/a");
    assert_eq!(seen["query"], "b=1");
}

/// An HTTPS upstream with a self-signed certificate for 127.0.0.1 (offering `h2` and
/// `http/1.1` by ALPN), answering with the path, the HTTP version and whether `x-forwarded-proto`
/// came along.
async fn tls_upstream() -> SocketAddr {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let answer = json!({
                        "path": request.uri().path(),
                        "version": format!("{:?}", request.version()),
                        "forwarded_proto": request.headers().get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok()),
                    });
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                        answer.to_string(),
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// `https` services are reached over TLS; the upstream's certificate is checked against the
/// public roots unless the service sets `tls_verify: false`, so a self-signed upstream answers
/// only then and is otherwise a 502.
#[tokio::test]
async fn https_upstreams_are_reached_over_tls_and_checked_unless_told_not_to() {
    let up = tls_upstream().await;
    let open = service(json!({ "url": format!("https://{up}/base"), "tls_verify": false }));
    let checked = service(json!({ "url": format!("https://{up}") }));
    let routes = vec![
        route_to(&open, json!({"paths": ["/open"]})),
        route_to(&checked, json!({"paths": ["/checked"]})),
    ];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["tls-up.test"],
        vec![open, checked],
        routes,
    ))
    .await;

    for _ in 0..3 {
        let answer = get(&setup.edge, "tls-up.test", "/open/items").await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["path"], "/base/items");
        assert_eq!(answer.body["forwarded_proto"], "http");
        // ALPN: the upstream offered h2 and the edge's TLS client takes it.
        assert_eq!(answer.body["version"], "HTTP/2.0");
    }
    let refused = get(&setup.edge, "tls-up.test", "/checked").await;
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert_eq!(
        refused.body["message"],
        "An invalid response was received from the upstream server"
    );
    setup.edge.shutdown().await;
}

/// Opens a WebSocket to `url` over `io`, exchanges a text and a binary message, and closes it.
async fn websocket_round_trip<IO>(io: IO, url: &str)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let request = url.into_client_request().unwrap();
    let (mut socket, response) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, io))
            .await
            .expect("the upgrade finishes")
            .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(response.headers().contains_key("x-request-id"));
    for message in [Message::text("hello"), Message::binary(vec![0u8, 1, 2])] {
        socket.send(message.clone()).await.unwrap();
        let echoed = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("an echo")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let up = websocket_echo_upstream().await;
    let ws_service = service(json!({ "url": format!("ws://{up}") }));
    let http_service = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![
        route_to(
            &ws_service,
            json!({"paths": ["/ws"], "protocols": ["ws", "wss"]}),
        ),
        // Kong lets a plain http route upgrade too.
        route_to(&http_service, json!({"paths": ["/plain"]})),
    ];
    let snapshot = snapshot(
        Uuid::now_v7(),
        1,
        &["ws.example.com"],
        vec![ws_service, http_service],
        routes,
    );
    let setup = serve_snapshot_with_tls(snapshot, None, false).await;

    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    websocket_round_trip(plain, "ws://ws.example.com/ws").await;
    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    websocket_round_trip(plain, "ws://ws.example.com/plain").await;
    let tls = tls_connect(
        setup.edge.proxy_tls_addr.unwrap(),
        "ws.example.com",
        &["http/1.1"],
    )
    .await;
    websocket_round_trip(tls, "wss://ws.example.com/ws").await;
}

/// Nothing moving on an upgraded connection for the service's `read_timeout` closes it, as nginx
/// does under Kong; messages keep it open well past that timeout.
#[tokio::test]
async fn an_idle_websocket_is_closed_after_the_read_timeout() {
    let up = websocket_echo_upstream().await;
    let svc = service(json!({ "url": format!("ws://{up}"), "read_timeout": 400 }));
    let routes = vec![route_to(&svc, json!({"paths": ["/ws"]}))];
    let snapshot = snapshot(Uuid::now_v7(), 1, &["ws.example.com"], vec![svc], routes);
    let setup = serve_snapshot_with_tls(snapshot, None, false).await;

    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    let request = "ws://ws.example.com/ws".into_client_request().unwrap();
    let (mut socket, _) =
        tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, plain))
            .await
            .expect("the upgrade finishes")
            .unwrap();
    // A message every 100 ms for 1.2 s, three read timeouts: every one is echoed.
    for i in 0..12 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let message = Message::text(format!("tick {i}"));
        socket.send(message.clone()).await.unwrap();
        let echoed = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("an echo")
            .expect("the connection is open")
            .unwrap();
        assert_eq!(echoed, message);
    }
    // Then silence: the edge closes both sides.
    let silent_from = tokio::time::Instant::now();
    let after = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("the edge closes an idle connection");
    assert!(
        matches!(after, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{after:?}"
    );
    let waited = silent_from.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn upgrades_other_than_websocket_are_not_passed_on() {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let routes = vec![route_to(&svc, json!({"paths": ["/"]}))];
    let setup = serve_snapshot(snapshot(
        Uuid::now_v7(),
        1,
        &["u.example.com"],
        vec![svc],
        routes,
    ))
    .await;
    let answer = send(
        &setup.edge,
        "GET",
        "u.example.com",
        "/h2c",
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    for hop_by_hop in ["connection", "upgrade", "http2-settings"] {
        assert_eq!(
            answer.seen(hop_by_hop),
            None,
            "{hop_by_hop} reached the upstream"
        );
    }
}

/// A tonic server with the standard health service.
async fn grpc_health_upstream() -> (SocketAddr, HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (addr, reporter)
}

async fn grpc_client(edge: SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{edge}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

/// `grpc.health.v1.Health/Check` for the server as a whole, framed by hand: an empty message.
fn raw_health_check(uri: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap()
}

async fn next_status(updates: &mut tonic::Streaming<HealthCheckResponse>) -> Option<i32> {
    tokio::time::timeout(PATIENCE, updates.message())
        .await
        .expect("a streamed update")
        .unwrap()
        .map(|update| update.status)
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_calls_reach_a_tonic_upstream() {
    let (up, reporter) = grpc_health_upstream().await;
    let svc = service(json!({ "url": format!("grpc://{up}") }));
    let routes = vec![route_to(
        &svc,
        json!({
            "paths": ["/grpc.health.v1.Health/"],
            "protocols": ["grpc", "grpcs"],
            "strip_path": false,
        }),
    )];
    // Dedicated: tonic's authority is the edge's own address.
    let snapshot = snapshot(Uuid::now_v7(), 1, &[], vec![svc], routes);
    let setup = serve_snapshot_with_tls(snapshot, None, true).await;
    let mut client = grpc_client(setup.edge.proxy_addr).await;

    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(reply.get_ref().status, ServingStatus::Serving as i32);

    reporter
        .set_service_status("watched", tonic_health::ServingStatus::Serving)
        .await;
    let mut updates = client
        .watch(HealthCheckRequest {
            service: "watched".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_status(&mut updates).await,
        Some(ServingStatus::Serving as i32)
    );
    reporter
        .set_service_status("watched", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        next_status(&mut updates).await,
        Some(ServingStatus::NotServing as i32)
    );

    // The status travels in trailers, over h2c and over TLS alike.
    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    let tls = tls_connect(
        setup.edge.proxy_tls_addr.unwrap(),
        "grpc.example.com",
        &["h2"],
    )
    .await;
    let answers = [
        send_http2(
            plain,
            raw_health_check(&format!(
                "http://{}/grpc.health.v1.Health/Check",
                setup.edge.proxy_addr
            )),
        )
        .await,
        send_http2(
            tls,
            raw_health_check("https://grpc.example.com/grpc.health.v1.Health/Check"),
        )
        .await,
    ];
    for response in answers {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let body = response.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        // One uncompressed message: field 1 (status) = SERVING.
        assert_eq!(body.to_bytes(), &[0, 0, 0, 0, 2, 0x08, 0x01][..]);
    }
}

#[tokio::test]
async fn the_edges_own_errors_reach_grpc_clients_as_grpc_statuses() {
    let down = dead_address().await;
    let svc = service(json!({ "url": format!("grpc://{down}") }));
    let routes = vec![route_to(
        &svc,
        json!({
            "paths": ["/grpc.health.v1.Health/Watch"],
            "protocols": ["grpc"],
            "strip_path": false,
        }),
    )];
    let snapshot = snapshot(Uuid::now_v7(), 1, &[], vec![svc], routes);
    let setup = serve_dedicated(snapshot).await;
    let mut client = grpc_client(setup.edge.proxy_addr).await;

    let request = || HealthCheckRequest {
        service: String::new(),
    };
    let no_route = client.check(request()).await.unwrap_err();
    assert_eq!(no_route.code(), tonic::Code::NotFound);
    assert_eq!(no_route.message(), "no Route matched with those values");
    let down = client.watch(request()).await.unwrap_err();
    assert_eq!(down.code(), tonic::Code::Internal);

    let plain = TcpStream::connect(setup.edge.proxy_addr).await.unwrap();
    let response = send_http2(
        plain,
        raw_health_check(&format!(
            "http://{}/grpc.health.v1.Health/Check",
            setup.edge.proxy_addr
        )),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "5");
    assert!(response.headers().contains_key("x-request-id"));

    // A plain HTTP client still gets Kong's JSON.
    let answer = get(&setup.edge, "any.example.com", "/nothing").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["message"], "no Route matched with those values");
}
