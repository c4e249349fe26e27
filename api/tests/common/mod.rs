//! Starts the API in-process against the real services of this machine — Postgres (a database
//! per test), NATS (a bucket prefix per test) and Redis (a key prefix per test) — and hands back
//! a small client. Each test owns its data, so tests run in parallel.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tollgate_api::ephemeral::RedisStore;
use tollgate_api::{ApiConfig, RunningApi};
use tollgate_bus::{Bus, NatsBus};
use tollgate_model::secret::MasterKey;
use uuid::Uuid;

mod support;
pub use support::*;

pub struct TestApi {
    pub base: String,
    pub bus: Arc<dyn Bus>,
    pub prefix: String,
    pub http: reqwest::Client,
    /// The master key the server seals secrets with, if it has one.
    pub master_key: Option<MasterKey>,
    running: Option<RunningApi>,
    db: TestDatabase,
}

impl TestApi {
    /// A server with a fresh master key of its own.
    pub async fn start() -> TestApi {
        TestApi::start_with_master_key(Some(MasterKey::generate().expect("master key"))).await
    }

    pub async fn start_with_master_key(master_key: Option<MasterKey>) -> TestApi {
        let db = TestDatabase::create().await;
        let conn = tollgate_api::store::connect(&db.url)
            .await
            .expect("connect");
        tollgate_api::store::migrate(&conn).await.expect("migrate");
        let prefix = format!("t{}", &Uuid::new_v4().simple().to_string()[..12]);
        let bus: Arc<dyn Bus> = Arc::new(
            NatsBus::connect(&env_or("TOLLGATE_TEST_NATS", NATS_URL), &prefix)
                .await
                .expect("NATS"),
        );
        let ephemeral = Arc::new(
            RedisStore::connect(&env_or("TOLLGATE_TEST_REDIS", REDIS_URL), &prefix)
                .await
                .expect("Redis must be reachable at TOLLGATE_TEST_REDIS (default 127.0.0.1:6379)"),
        );
        let running = tollgate_api::start(
            ApiConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                proxy_public_url: "http://localhost:8000".into(),
                default_region: "default".into(),
                session_ttl: Duration::from_secs(3600),
                secure_cookies: false,
                console_dir: None,
                master_key: master_key.clone(),
                analytics: None,
            },
            conn,
            bus.clone(),
            ephemeral,
        )
        .await
        .expect("start api");
        TestApi {
            base: format!("http://{}", running.addr),
            bus,
            prefix,
            http: reqwest::Client::new(),
            master_key,
            running: Some(running),
            db,
        }
    }

    /// This test's own Postgres database, for checks the API does not expose.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// Stops the server and removes this test's NATS buckets.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        if let Ok(client) = async_nats::connect(env_or("TOLLGATE_TEST_NATS", NATS_URL)).await {
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(format!("KV_{}_heads", self.prefix)).await;
            let _ = js
                .delete_stream(format!("OBJ_{}_snapshots", self.prefix))
                .await;
        }
    }

    /// Sends `body` as JSON with `auth` as bearer token (or cookie when it starts with
    /// `tollgate_session=`) and returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            req = if auth.starts_with("tollgate_session=") {
                req.header("cookie", auth)
            } else {
                req.bearer_auth(auth)
            };
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a new organization and returns a personal access token of its owner.
    pub async fn tenant(&self, org: &str) -> String {
        let email = format!("{}@{org}.example.com", Uuid::new_v4().simple());
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/signup",
                None,
                Some(json!({"email": email, "password": "correct horse battery", "organization": org})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let resp = self
            .http
            .post(format!("{}/api/v1/login", self.base))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .expect("login");
        let cookie = session_cookie(&resp).expect("session cookie");
        let (status, token) = self
            .post("/api/v1/tokens", &cookie, json!({"name": "tests"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        token["token"].as_str().expect("token").to_string()
    }

    /// Creates a control plane and returns its JSON.
    pub async fn control_plane(&self, token: &str, name: &str) -> Value {
        let (status, cp) = self
            .post("/api/v1/control-planes", token, json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{cp}");
        cp
    }
}

/// `tollgate_session=<value>` from a response's `Set-Cookie`.
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tollgate_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}
