//! Through the proxy: what the plain-HTTP upstream path does with answers hyper's client used to
//! take care of — chunked bodies streamed chunk by chunk, answers without a body, informational
//! answers, `Connection: close`, bodies read until close, idle connections the upstream closed,
//! malformed answers — and how request bodies are framed. Every upstream here is a scripted one
//! speaking HTTP/1.1 byte by byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

/// One thing a scripted upstream does after reading a request.
enum Step {
    Send(&'static [u8]),
    SendOwned(Vec<u8>),
    Wait(Arc<Notify>),
    Sleep(Duration),
    Close,
}

/// What a scripted upstream saw and did.
#[derive(Clone, Default)]
struct Seen {
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Each request as received: head and body (chunked bodies as sent, framing included).
    requests: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn request(&self, index: usize) -> String {
        self.requests.lock().unwrap()[index].clone()
    }
}

/// An upstream that answers each request (numbered from 0 across connections, with its head)
/// with the steps `script` gives.
async fn scripted_upstream<F>(script: F) -> (SocketAddr, Seen)
where
    F: Fn(usize, &str) -> Vec<Step> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let script = Arc::new(script);
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            state.accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_script(stream, script.clone(), state.clone()));
        }
    });
    (addr, seen)
}

async fn serve_script<F>(mut stream: TcpStream, script: Arc<F>, seen: Seen)
where
    F: Fn(usize, &str) -> Vec<Step> + Send + Sync + 'static,
{
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            seen.closed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let index = {
            let mut requests = seen.requests.lock().unwrap();
            requests.push(request.clone());
            requests.len() - 1
        };
        for step in script(index, &request) {
            match step {
                Step::Send(bytes) => {
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                Step::SendOwned(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Wait(notify) => notify.notified().await,
                Step::Sleep(pause) => tokio::time::sleep(pause).await,
                Step::Close => {
                    drop(stream);
                    seen.closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Reads one request (head, then a body framed by `Content-Length` or chunked) as text.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let end = if head.contains("transfer-encoding: chunked") {
        loop {
            if let Some(at) = buffer[head_end..]
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
            {
                break head_end + at + 5;
            }
            read_more(stream, buffer).await?;
        }
    } else {
        let end = head_end + length.unwrap_or(0);
        while buffer.len() < end {
            read_more(stream, buffer).await?;
        }
        end
    };
    let request = String::from_utf8_lossy(&buffer[..end]).into_owned();
    buffer.drain(..end);
    Some(request)
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// A chunked body's data (no extensions, no trailers).
fn unchunk(mut framed: &str) -> String {
    let mut data = String::new();
    loop {
        let (size, rest) = framed.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            assert_eq!(rest, "\r\n");
            return data;
        }
        data.push_str(&rest[..size]);
        assert_eq!(&rest[size..size + 2], "\r\n");
        framed = &rest[size + 2..];
    }
}

/// The request line's path.
fn path_of(request: &str) -> &str {
    request.split(' ').nth(1).unwrap_or("")
}

/// An edge dedicated to one service on `upstream` with `extra` service fields, one `/` route.
async fn edge_to(upstream: SocketAddr, extra: serde_json::Value) -> Setup {
    let mut input = json!({ "url": format!("http://{upstream}") });
    for (key, value) in extra.as_object().unwrap() {
        input[key] = value.clone();
    }
    let svc = service(input);
    let route = route_to(&svc, json!({"paths": ["/"]}));
    serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route])).await
}

#[tokio::test]
async fn chunked_answers_stream_chunk_by_chunk_and_keep_the_connection() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let (up, seen) = scripted_upstream(move |index, _| {
        let mut steps = vec![Step::Send(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6;name=value\r\nfirst;\r\n",
        )];
        if index == 0 {
            steps.push(Step::Wait(held.clone()));
        }
        steps.push(Step::Send(b"6\r\nsecond\r\n0\r\nx-checksum: 1\r\n\r\n"));
        steps
    })
    .await;
    let setup = edge_to(up, json!({})).await;

    let mut response = http()
        .get(format!("http://{}/", setup.edge.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("transfer-encoding").is_some());
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first chunk arrives while the upstream holds the second")
        .unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");

    let again = get(&setup.edge, "c.test", "/").await;
    assert_eq!(again.body["text"], "first;second");
    assert_eq!(
        seen.accepted(),
        1,
        "the connection is reused after a chunked body"
    );
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_keep_the_connection() {
    let (up, seen) = scripted_upstream(|_, request| match path_of(request) {
        // A HEAD answer announces the length of the body it does not send.
        "/head" => vec![Step::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")],
        "/204" => vec![Step::Send(b"HTTP/1.1 204 No Content\r\nx-up: 1\r\n\r\n")],
        "/304" => vec![Step::Send(
            b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 5\r\n\r\n",
        )],
        _ => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )],
    })
    .await;
    let setup = edge_to(up, json!({})).await;
    let url = |path: &str| format!("http://{}{path}", setup.edge.proxy_addr);

    let head = http().head(url("/head")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
    assert!(head.bytes().await.unwrap().is_empty());

    let no_content = http().get(url("/204")).send().await.unwrap();
    assert_eq!(no_content.status(), 204);
    assert_eq!(no_content.headers()["x-up"], "1");
    assert!(no_content.bytes().await.unwrap().is_empty());

    let not_modified = http().get(url("/304")).send().await.unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"], "\"v1\"");
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let after = get(&setup.edge, "n.test", "/after").await;
    assert_eq!(after.body["text"], "ok");
    assert_eq!(
        seen.accepted(),
        1,
        "bodiless answers leave the connection usable"
    );
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn informational_answers_are_skipped() {
    let (up, _) = scripted_upstream(|_, _| {
        vec![Step::Send(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\nmade",
        )]
    })
    .await;
    let setup = edge_to(up, json!({})).await;
    let answer = send(&setup.edge, "POST", "i.test", "/", &[]).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body["text"], "made");
    assert!(answer.headers.get("link").is_none());
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn connection_close_and_bodies_read_until_close_end_the_connection() {
    let (up, seen) = scripted_upstream(|_, request| match path_of(request) {
        // Says close but leaves the connection open: the edge must not reuse it.
        "/close" => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 6\r\n\r\nclosed",
        )],
        "/http10" => vec![
            Step::Send(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"),
            Step::Close,
        ],
        _ => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )],
    })
    .await;
    let setup = edge_to(up, json!({"retries": 0})).await;

    let closed = get(&setup.edge, "k.test", "/close").await;
    assert_eq!(closed.body["text"], "closed");
    assert!(closed
        .headers
        .get("connection")
        .is_none_or(|v| v != "close"));
    assert_eq!(get(&setup.edge, "k.test", "/next").await.body["text"], "ok");
    assert_eq!(
        seen.accepted(),
        2,
        "a connection the upstream said close to is not reused"
    );

    let until_close = get(&setup.edge, "k.test", "/http10").await;
    assert_eq!(until_close.status, 200);
    assert_eq!(until_close.body["text"], "until the end");
    assert_eq!(get(&setup.edge, "k.test", "/next").await.body["text"], "ok");
    assert_eq!(seen.accepted(), 3);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn idle_connections_the_upstream_closed_are_not_reused() {
    let (up, seen) = scripted_upstream(|index, _| {
        let answer = Step::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        match index {
            // Closes while idle, as an upstream's keep-alive timeout does.
            0 => vec![answer, Step::Sleep(Duration::from_millis(50)), Step::Close],
            // Says something unasked before closing: it must not become the next answer.
            1 => vec![
                answer,
                Step::Sleep(Duration::from_millis(50)),
                Step::Send(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"),
                Step::Sleep(Duration::from_millis(50)),
                Step::Close,
            ],
            _ => vec![answer],
        }
    })
    .await;
    // No retries: a reused dead connection would show as a 502.
    let setup = edge_to(up, json!({"retries": 0})).await;
    for closed in 1..=2 {
        let answer = get(&setup.edge, "idle.test", "/").await;
        assert_eq!(
            (answer.status, answer.body["text"].as_str()),
            (200, Some("ok"))
        );
        eventually("the upstream closes the idle connection", || async {
            (seen.closed.load(Ordering::SeqCst) >= closed).then_some(())
        })
        .await;
    }
    let answer = get(&setup.edge, "idle.test", "/").await;
    assert_eq!(
        (answer.status, answer.body["text"].as_str()),
        (200, Some("ok"))
    );
    assert_eq!(seen.accepted(), 3);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn malformed_answers_are_502_with_the_json_message() {
    let (up, _) = scripted_upstream(|_, request| {
        let answer: Vec<u8> = match path_of(request) {
            "/folded" => {
                b"HTTP/1.1 200 OK\r\nx-a: one\r\n two\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
            "/lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok".to_vec(),
            "/not-http" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(),
            "/status" => b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
            "/switching" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n".to_vec(),
            "/header-name" => {
                b"HTTP/1.1 200 OK\r\nbad header: 1\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
            "/many-headers" => {
                let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
                for i in 0..101 {
                    head.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
                }
                head.extend_from_slice(b"content-length: 0\r\n\r\n");
                head
            }
            "/huge-head" => {
                let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                head.resize(head.len() + 500 * 1024, b'a');
                head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                head
            }
            "/cut-head" => return vec![Step::Send(b"HTTP/1.1 200 OK\r\ncontent-le"), Step::Close],
            _ => return vec![Step::Close],
        };
        vec![Step::SendOwned(answer)]
    })
    .await;
    let setup = edge_to(up, json!({"retries": 0})).await;
    for path in [
        "/folded",
        "/lengths",
        "/not-http",
        "/status",
        "/switching",
        "/header-name",
        "/many-headers",
        "/huge-head",
        "/cut-head",
        "/closed",
    ] {
        let answer = get(&setup.edge, "m.test", path).await;
        assert_eq!(answer.status, 502, "{path}");
        assert_eq!(
            answer.body["message"], "An invalid response was received from the upstream server",
            "{path}"
        );
        assert!(answer.body["request_id"].as_str().is_some(), "{path}");
    }
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn a_body_cut_short_fails_the_response_and_is_not_reused() {
    let (up, seen) = scripted_upstream(|_, request| match path_of(request) {
        "/short" => vec![
            Step::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
            Step::Sleep(Duration::from_millis(100)),
            Step::Close,
        ],
        // More than announced: the extra bytes must not be taken for the next answer.
        "/long" => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale",
        )],
        _ => vec![Step::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")],
    })
    .await;
    let setup = edge_to(up, json!({"retries": 0})).await;
    let response = http()
        .get(format!("http://{}/short", setup.edge.proxy_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the client sees the body break off"
    );

    assert_eq!(get(&setup.edge, "s.test", "/long").await.body["text"], "ok");
    assert_eq!(
        get(&setup.edge, "s.test", "/next").await.body["text"],
        "fresh"
    );
    assert_eq!(seen.accepted(), 3);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_framed_by_length_or_chunked_and_streamed() {
    let (up, seen) = scripted_upstream(|_, request| {
        let body = format!("{}", request.len());
        vec![Step::SendOwned(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )]
    })
    .await;
    // Without request buffering every body is streamed.
    let svc = service(json!({ "url": format!("http://{up}") }));
    let buffered = route_to(&svc, json!({"paths": ["/buffered"]}));
    let streamed = route_to(
        &svc,
        json!({"paths": ["/streamed"], "request_buffering": false}),
    );
    let setup = serve_dedicated(snapshot(
        Uuid::now_v7(),
        1,
        &[],
        vec![svc],
        vec![buffered, streamed],
    ))
    .await;
    let url = |path: &str| format!("http://{}{path}", setup.edge.proxy_addr);

    let get = http().get(url("/buffered/get")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let sent = seen.request(0);
    assert!(
        !sent.contains("content-length") && !sent.contains("transfer-encoding"),
        "{sent}"
    );

    let small = http()
        .post(url("/buffered/small"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    let sent = seen.request(1);
    assert!(sent.contains("content-length: 7\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\npayload"), "{sent}");

    // Over the 1 MiB kept for retries, with a length: streamed under that length.
    let large = vec![b'x'; 3 * 1024 * 1024];
    let posted = http()
        .post(url("/buffered/large"))
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let sent = seen.request(2);
    assert!(sent.contains(&format!("content-length: {}\r\n", large.len())));
    assert!(sent.ends_with(&format!("\r\n\r\n{}", String::from_utf8(large).unwrap())));

    // No length: chunked, each chunk as the client sent it.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tx.send(Ok(Bytes::from_static(b"part-one;"))).await.unwrap();
    tx.send(Ok(Bytes::from_static(b"part-two"))).await.unwrap();
    drop(tx);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let chunked = http()
        .post(url("/streamed/chunked"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 200);
    let sent = seen.request(3);
    assert!(sent.contains("transfer-encoding: chunked\r\n"), "{sent}");
    assert!(!sent.contains("content-length"), "{sent}");
    let framed = &sent[sent.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(unchunk(framed), "part-one;part-two", "{framed}");

    assert_eq!(
        seen.accepted(),
        1,
        "one connection for all, streamed bodies included"
    );
    setup.edge.shutdown().await;
}

/// Sends `request` on a new connection and reads one answer whose body is `body_len` bytes long,
/// as text.
async fn raw_exchange(addr: SocketAddr, request: &str, body_len: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    loop {
        let end = received.windows(4).position(|w| w == b"\r\n\r\n");
        if end.is_some_and(|end| received.len() >= end + 4 + body_len) {
            return String::from_utf8(received).unwrap();
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the answer arrives")
            .unwrap();
        assert!(
            n > 0,
            "the edge closed before the whole answer: {received:?}"
        );
        received.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn answer_fields_go_on_as_they_came_and_the_proxys_own_replace_the_upstreams() {
    let (up, _) = scripted_upstream(|_, request| match path_of(request) {
        // The usual answer: its fields are copied as they came, the edge's follow them.
        "/usual" => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\nX-Mixed-Case: A b\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 2\r\nVia: 1.0 origin\r\n\r\nok",
        )],
        // Fields the edge sets itself are replaced, whichever way the answer goes on.
        "/own-id" => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\nx-request-id: from-upstream\r\nx-tollgate-proxy-latency: 99\r\ncontent-length: 2\r\n\r\nok",
        )],
        // Not written `name: value` with CRLF: the answer goes through a header map.
        _ => vec![Step::Send(
            b"HTTP/1.1 200 OK\r\nx-odd:  spaced\r\ncontent-length:2\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nok",
        )],
    })
    .await;
    let setup = edge_to(up, json!({})).await;
    let addr = setup.edge.proxy_addr;

    let usual = raw_exchange(addr, "GET /usual HTTP/1.1\r\nHost: f.test\r\n\r\n", 2).await;
    let (head, body) = usual.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "ok");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "HTTP/1.1 200 OK",
            "X-Mixed-Case: A b",
            "set-cookie: a=1",
            "set-cookie: b=2",
            "content-length: 2",
            "Via: 1.0 origin",
        ],
        "{head}"
    );
    let names: Vec<String> = lines[6..]
        .iter()
        .map(|line| line.split(':').next().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(
        names,
        [
            "via",
            "x-request-id",
            "x-tollgate-proxy-latency",
            "x-tollgate-upstream-latency",
            "date"
        ],
        "{head}"
    );

    let own = raw_exchange(
        addr,
        "GET /own-id HTTP/1.1\r\nHost: f.test\r\nX-Request-Id: mine\r\n\r\n",
        2,
    )
    .await;
    assert_eq!(own.matches("x-request-id").count(), 1, "{own}");
    assert!(own.contains("x-request-id: mine\r\n"), "{own}");
    assert!(!own.contains("99"), "{own}");

    let odd = raw_exchange(addr, "GET /odd HTTP/1.1\r\nHost: f.test\r\n\r\n", 2).await;
    assert!(odd.contains("x-odd: spaced\r\n"), "{odd}");
    assert!(odd.contains("content-length: 2\r\n"), "{odd}");
    assert_eq!(odd.matches("date:").count(), 1, "{odd}");

    // Over HTTP/2 the same fields arrive through hyper's map.
    let usual = h2c_get(addr, "/usual", &[]).await;
    assert_eq!(usual.version(), http::Version::HTTP_2);
    let headers = usual.headers().clone();
    assert_eq!(headers["x-mixed-case"], "A b");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let via: Vec<_> = headers.get_all("via").iter().collect();
    assert_eq!(via, ["1.0 origin", "1.1 tollgate"]);
    assert_eq!(headers["content-length"], "2");
    assert!(headers.contains_key("date"));
    assert!(headers.contains_key("x-tollgate-upstream-latency"));
    let body = usual.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    let own = h2c_get(addr, "/own-id", &[("x-request-id", "mine")]).await;
    let ids: Vec<_> = own.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids, ["mine"]);
    assert_ne!(own.headers()["x-tollgate-proxy-latency"], "99");
    setup.edge.shutdown().await;
}

/// One GET over a new h2c (prior knowledge) connection.
async fn h2c_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::get(format!("http://f.test{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Empty::<Bytes>::new()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer")
        .unwrap()
}
