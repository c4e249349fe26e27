//! Test helpers shared by the API's and the CLI's integration tests (the CLI includes this file
//! by path): a Postgres database per test, service addresses, and polling with a deadline.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use uuid::Uuid;

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A database of its own on the shared Postgres server, dropped when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        use sea_orm::ConnectionTrait;
        let admin_url = env_or("TOLLGATE_TEST_POSTGRES", POSTGRES_ADMIN_URL);
        let name = format!("tollgate_test_{}", Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(&admin_url).await.expect(
            "Postgres must be reachable at TOLLGATE_TEST_POSTGRES (default 127.0.0.1:5432)",
        );
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = env_or("TOLLGATE_TEST_POSTGRES", POSTGRES_ADMIN_URL);
        // Drop runs inside the test's runtime; a thread with its own runtime can block on it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sea_orm::ConnectionTrait;
                if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // One check that hangs must not outlast the deadline either.
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(value)) = tokio::time::timeout(remaining, check()).await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
