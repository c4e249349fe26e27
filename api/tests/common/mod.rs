//! Starts the API in-process against the real services of this machine — Postgres (a database
//! per test), NATS (a bucket prefix per test) and Redis (a key prefix per test), with request logs
//! in a SQLite analytics store of its own (a temporary file per test) — and hands back a small
//! client. Each test owns its data, so tests run in parallel.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tollgate_analytics::{AnalyticsStore, SqliteStore};
use tollgate_api::ephemeral::RedisStore;
use tollgate_api::{ApiConfig, RunningApi};
use tollgate_bus::{Bus, NatsBus};
use tollgate_model::request_log::LogBatch;
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
    /// The server's request-log store; `None` for a server started without one.
    pub analytics: Option<Arc<SqliteStore>>,
    running: Option<RunningApi>,
    db: TestDatabase,
    /// Holds the analytics store's file until the test ends.
    _analytics_dir: tempfile::TempDir,
}

impl TestApi {
    /// A server with a fresh master key of its own.
    pub async fn start() -> TestApi {
        TestApi::start_with_master_key(Some(MasterKey::generate().expect("master key"))).await
    }

    pub async fn start_with_master_key(master_key: Option<MasterKey>) -> TestApi {
        TestApi::start_with(master_key, true).await
    }

    /// A server whose analytics and usage endpoints have no store to read (503).
    pub async fn start_without_analytics() -> TestApi {
        TestApi::start_with(Some(MasterKey::generate().expect("master key")), false).await
    }

    async fn start_with(master_key: Option<MasterKey>, with_analytics: bool) -> TestApi {
        let analytics_dir = tempfile::tempdir().expect("temp dir");
        let analytics = if with_analytics {
            let store = SqliteStore::open(analytics_dir.path().join("analytics.db"))
                .await
                .expect("analytics store");
            Some(Arc::new(store))
        } else {
            None
        };
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
                analytics: analytics
                    .clone()
                    .map(|store| store as Arc<dyn AnalyticsStore>),
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
            analytics,
            running: Some(running),
            db,
            _analytics_dir: analytics_dir,
        }
    }

    /// Stores request-log batches as the ingester would.
    pub async fn insert_logs(&self, batches: &[LogBatch]) {
        self.analytics
            .as_ref()
            .expect("this server has an analytics store")
            .insert(batches)
            .await
            .expect("insert logs");
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
