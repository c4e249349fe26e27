//! End-to-end harness: runs the real `tollgate` binary as a user would, reads what it prints, and
//! provides an echo upstream, a private nats-server (so a test can take NATS down), and a
//! Postgres database per test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::Json;
use serde_json::{json, Value};

#[path = "../../../api/tests/common/support.rs"]
mod support;
// Not every test binary uses the support helpers.
#[allow(unused_imports)]
pub use support::*;

/// A running `tollgate` process; killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    pub log: PathBuf,
}

impl Process {
    /// Starts `tollgate <args>`, stderr to `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env("TOLLGATE_LOG", "info,tollgate_edge=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn tollgate");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(line);
            }
        });
        Process {
            name: name.to_string(),
            child,
            stdout,
            log,
        }
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .stdout
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before printing '{needle}'; log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print '{needle}'; log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit and returns whether it succeeded.
    pub fn wait_success(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lines").join("\n")
    }

    /// A field of the running process's `/proc/<pid>/status` (`"THP_enabled"`, say), trimmed.
    pub fn proc_status(&self, field: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == field).then(|| value.trim().to_string())
        })
    }

    /// SIGKILL: no graceful shutdown, as a crash or an OOM kill would be.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first `http://host:port` in a line.
pub fn addr_in(line: &str) -> SocketAddr {
    let start = line.find("http://").expect("an http:// address") + "http://".len();
    let rest = &line[start..];
    let end = rest.find(['/', ' ', ',', ')']).unwrap_or(rest.len());
    rest[..end].parse().expect("a socket address")
}

/// An upstream that answers every request with what it received, as JSON.
pub async fn echo_upstream() -> SocketAddr {
    async fn echo(req: Request) -> Json<Value> {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        Json(json!({
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(echo)).await;
    });
    addr
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A tiny API client for the tour.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub fn new(api: SocketAddr) -> Client {
        Client {
            base: format!("http://{api}"),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("api request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Signs up an organization and keeps a token of its owner.
    pub async fn sign_up(&mut self, org: &str) {
        let email = format!("{}@{org}.example.com", uuid::Uuid::new_v4().simple());
        let resp = self
            .http
            .post(format!("{}/api/v1/signup", self.base))
            .json(&json!({"email": email, "password": "a long password", "organization": org}))
            .send()
            .await
            .expect("signup");
        assert_eq!(resp.status(), 201);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("cookie")
            .to_string();
        let created: Value = self
            .http
            .post(format!("{}/api/v1/tokens", self.base))
            .header("cookie", cookie)
            .json(&json!({"name": "e2e"}))
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        self.token = Some(created["token"].as_str().expect("token").to_string());
    }
}

/// GET through the proxy at `proxy` with `host` as the Host header; returns status and body.
pub async fn through_proxy(proxy: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{proxy}{path}"))
        .header("host", host)
        .send()
        .await;
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}
