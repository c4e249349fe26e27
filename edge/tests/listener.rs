//! Through the proxy, byte by byte from the client's side: the plain listener's own HTTP/1.1 path
//! (keep-alive, pipelining, `Connection: close`, HEAD, a client leaving mid-request, shutdown)
//! and its hand-off to hyper for everything else (bodies, HTTP/1.0, malformed heads) on the same
//! connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uuid::Uuid;

/// A response as read off the wire.
struct Raw {
    status_line: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A client connection that reads responses one by one, keeping what follows.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the edge answers within 10 s")
            .unwrap_or(0);
        self.buffer.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head_only` for one to a HEAD request.
    async fn response(&mut self, head_only: bool) -> Raw {
        let end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "the connection closed before a response");
        };
        let head = String::from_utf8(self.buffer[..end].to_vec()).unwrap();
        self.buffer.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let headers: BTreeMap<String, String> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let mut body = Vec::new();
        if !head_only {
            if let Some(length) = headers.get("content-length") {
                let length: usize = length.parse().unwrap();
                while self.buffer.len() < length {
                    assert!(self.fill().await, "the body was cut short");
                }
                body = self.buffer.drain(..length).collect();
            } else if headers
                .get("transfer-encoding")
                .is_some_and(|v| v == "chunked")
            {
                loop {
                    let line_end = loop {
                        if let Some(at) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                            break at;
                        }
                        assert!(self.fill().await);
                    };
                    let size = usize::from_str_radix(
                        std::str::from_utf8(&self.buffer[..line_end]).unwrap(),
                        16,
                    )
                    .unwrap();
                    while self.buffer.len() < line_end + 2 + size + 2 {
                        assert!(self.fill().await);
                    }
                    body.extend_from_slice(&self.buffer[line_end + 2..line_end + 2 + size]);
                    self.buffer.drain(..line_end + 2 + size + 2);
                    if size == 0 {
                        break;
                    }
                }
            } else {
                while self.fill().await {}
                body = std::mem::take(&mut self.buffer);
            }
        }
        Raw {
            status_line,
            headers,
            body,
        }
    }

    /// Whether the edge closed the connection (after whatever was already read).
    async fn closed(&mut self) -> bool {
        while self.fill().await {}
        true
    }
}

async fn echo_edge() -> Setup {
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route])).await
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let setup = echo_edge().await;
    let mut client = Client::connect(setup.edge.proxy_addr).await;
    client
        .send(b"GET /a HTTP/1.1\r\nHost: p.test\r\n\r\nHEAD /b HTTP/1.1\r\nHost: p.test\r\n\r\nGET /c?d=e HTTP/1.1\r\nHost: p.test\r\nX-Custom: yes\r\n\r\n")
        .await;
    let first = client.response(false).await;
    assert_eq!(first.status_line, "HTTP/1.1 200 OK");
    assert_eq!(first.json()["path"], "/a");
    assert!(first.headers.contains_key("date"));
    assert!(first.headers.contains_key("x-request-id"));
    // A HEAD answer carries the length of the body it does not send: the next response follows
    // its head directly.
    let head = client.response(true).await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert!(head.headers["content-length"].parse::<usize>().unwrap() > 0);
    let third = client.response(false).await;
    assert_eq!(third.json()["path"], "/c");
    assert_eq!(third.json()["query"], "d=e");
    assert_eq!(third.json()["headers"]["x-custom"], "yes");

    // Still open for more.
    client
        .send(b"GET /d HTTP/1.1\r\nHost: p.test\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.json()["path"], "/d");
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn connection_close_from_the_client_ends_the_connection_after_the_answer() {
    let setup = echo_edge().await;
    let mut client = Client::connect(setup.edge.proxy_addr).await;
    client
        .send(b"GET /bye HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.json()["path"], "/bye");
    assert_eq!(answer.headers["connection"], "close");
    assert!(client.closed().await);
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn bodies_http10_and_malformed_heads_are_left_to_hyper_on_the_same_connection() {
    let setup = echo_edge().await;
    let mut client = Client::connect(setup.edge.proxy_addr).await;
    // Answered by the listener's own path first, then a body hands the connection over.
    client
        .send(b"GET /own HTTP/1.1\r\nHost: h.test\r\n\r\nPOST /posted HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: h.test\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.json()["path"], "/own");
    let posted = client.response(false).await.json();
    assert_eq!(
        (posted["path"].as_str(), posted["body"].as_str()),
        (Some("/posted"), Some("hello"))
    );
    assert_eq!(client.response(false).await.json()["path"], "/after");

    // Chunked request bodies and `Expect: 100-continue` too.
    client
        .send(b"PUT /chunked HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.json()["body"], "abc");

    let mut old = Client::connect(setup.edge.proxy_addr).await;
    old.send(b"GET /old HTTP/1.0\r\nHost: h.test\r\n\r\n").await;
    let answer = old.response(false).await;
    assert!(
        answer.status_line.starts_with("HTTP/1.0 200"),
        "{}",
        answer.status_line
    );
    assert_eq!(answer.json()["path"], "/old");

    for malformed in [
        &b"GET / HTTP/1.1\r\nbad header: 1\r\n\r\n"[..],
        b"GET /a b HTTP/1.1\r\nHost: h.test\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let mut client = Client::connect(setup.edge.proxy_addr).await;
        client.send(malformed).await;
        let answer = client.response(true).await;
        assert_eq!(
            answer.status_line,
            "HTTP/1.1 400 Bad Request",
            "{}",
            String::from_utf8_lossy(malformed)
        );
    }
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_request_cancels_it_upstream() {
    // An upstream that reads a request, never answers, and tells when its connection closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let closed = Arc::new(Notify::new());
    let told = closed.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        while stream.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
        told.notify_one();
    });
    let svc = service(json!({ "url": format!("http://{up}") }));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    let setup = serve_dedicated(snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route])).await;

    let mut client = Client::connect(setup.edge.proxy_addr).await;
    client
        .send(b"GET /slow HTTP/1.1\r\nHost: l.test\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), closed.notified())
        .await
        .expect("the upstream connection is closed once the client is gone");
    setup.edge.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let setup = echo_edge().await;
    let mut client = Client::connect(setup.edge.proxy_addr).await;
    client
        .send(b"GET /x HTTP/1.1\r\nHost: s.test\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.json()["path"], "/x");
    let started = std::time::Instant::now();
    setup.edge.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for an idle connection",
        started.elapsed()
    );
    assert!(client.closed().await);
}

/// A connection that has not sent a whole request head within the edge's header read timeout
/// is closed: a slow head and an idle keep-alive connection on the listener's own path, and a
/// slow head on a connection handed to hyper.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_after_the_header_read_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    let up = echo_upstream().await;
    let svc = service(json!({ "url": format!("http://{up}") }));
    let route = route_to(&svc, json!({"paths": ["/"]}));
    let setup = serve_dedicated_adjusted(
        snapshot(Uuid::now_v7(), 1, &[], vec![svc], vec![route]),
        |config| config.header_read_timeout = TIMEOUT,
    )
    .await;
    let proxy = setup.edge.proxy_addr;
    // Not before the timeout: the last bytes moved shortly before `since`.
    let closed_after_timeout = |since: tokio::time::Instant, what: &str| {
        let waited = since.elapsed();
        assert!(
            waited >= TIMEOUT - Duration::from_millis(100),
            "{what}: closed after {waited:?}"
        );
    };

    // Half a head on the listener's own path.
    let mut client = Client::connect(proxy).await;
    client.send(b"GET /slow HTTP/1.1\r\nHost: e.test\r\n").await;
    let since = tokio::time::Instant::now();
    assert!(client.closed().await);
    assert!(client.buffer.is_empty(), "no answer to half a head");
    closed_after_timeout(since, "half a head");

    // A whole request is answered; the connection then idles and is closed.
    let mut client = Client::connect(proxy).await;
    client
        .send(b"GET /idle HTTP/1.1\r\nHost: e.test\r\n\r\n")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.json()["path"], "/idle");
    let since = tokio::time::Instant::now();
    assert!(client.closed().await);
    closed_after_timeout(since, "an idle keep-alive connection");

    // A body hands the connection to hyper; half of the next head is cut off there too.
    let mut client = Client::connect(proxy).await;
    client
        .send(b"POST /body HTTP/1.1\r\nHost: e.test\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let answer = client.response(false).await;
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.json()["body"], "hi");
    client.send(b"GET /after HTTP/1.1\r\nHost:").await;
    let since = tokio::time::Instant::now();
    assert!(client.closed().await);
    closed_after_timeout(since, "half a head after the hand-off to hyper");
    setup.edge.shutdown().await;
}
