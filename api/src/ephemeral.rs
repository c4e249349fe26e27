//! Short-lived shared state: console sessions and attempt counters (login and sign-up limits).
//! Redis in production, so every API replica sees the same; memory in `tollgate dev`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::error::ApiError;

#[async_trait::async_trait]
pub trait EphemeralStore: Send + Sync + 'static {
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), ApiError>;
    async fn get(&self, key: &str) -> Result<Option<String>, ApiError>;
    async fn delete(&self, key: &str) -> Result<(), ApiError>;
    /// Counts one attempt under `key` and returns the count within the current window.
    async fn count_attempt(&self, key: &str, window: Duration) -> Result<u64, ApiError>;
}

pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    /// Connects to Redis; `prefix` namespaces every key (a deployment, or a test).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = client.get_connection_manager().await?;
        Ok(RedisStore {
            connection,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

fn redis_down(e: redis::RedisError) -> ApiError {
    ApiError::Unavailable(format!("session store unavailable: {e}"))
}

#[async_trait::async_trait]
impl EphemeralStore for RedisStore {
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), ApiError> {
        let mut c = self.connection.clone();
        c.set_ex::<_, _, ()>(self.key(key), value, ttl.as_secs().max(1))
            .await
            .map_err(redis_down)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let mut c = self.connection.clone();
        c.get(self.key(key)).await.map_err(redis_down)
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        let mut c = self.connection.clone();
        c.del::<_, ()>(self.key(key)).await.map_err(redis_down)
    }

    async fn count_attempt(&self, key: &str, window: Duration) -> Result<u64, ApiError> {
        let mut c = self.connection.clone();
        let key = self.key(key);
        // NX: the window starts with the first attempt and is not extended by later ones.
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window.as_secs().max(1))
            .arg("NX")
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(redis_down)?;
        Ok(count)
    }
}

/// The single-process store of `tollgate dev`.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl MemoryStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl EphemeralStore for MemoryStore {
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), ApiError> {
        let mut entries = self.entries();
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        entries.insert(key.to_string(), (value.to_string(), now + ttl));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let entries = self.entries();
        Ok(entries
            .get(key)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(value, _)| value.clone()))
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        self.entries().remove(key);
        Ok(())
    }

    async fn count_attempt(&self, key: &str, window: Duration) -> Result<u64, ApiError> {
        let mut entries = self.entries();
        let now = Instant::now();
        let entry = entries
            .entry(key.to_string())
            .or_insert_with(|| ("0".into(), now + window));
        if entry.1 <= now {
            *entry = ("0".into(), now + window);
        }
        let count = entry.0.parse::<u64>().unwrap_or(0) + 1;
        entry.0 = count.to_string();
        Ok(count)
    }
}
