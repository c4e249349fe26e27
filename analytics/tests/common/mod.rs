//! Harness for the ClickHouse and ingester tests: a fresh database per test on the shared
//! ClickHouse (dropped when the test ends), a private clickhouse-server a test may stop, a NATS
//! prefix per test on the shared server (its stream deleted at the end), and log builders.
//! Missing services fail the test with what to run; nothing is skipped.

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tollgate_analytics::clickhouse::{schema, ClickHouseStore, ClickHouseUrl};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

pub const CLICKHOUSE: &str = "http://127.0.0.1:8123";
pub const NATS: &str = "nats://127.0.0.1:4222";

/// Polls `check` until it gives `Some`, failing with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer of ClickHouse's HTTP interface to `sql` (TabSeparated text), or the error.
pub async fn clickhouse_text(server: &str, database: &str, sql: &str) -> Result<String, String> {
    let response = reqwest::Client::new()
        .post(format!("{server}/?database={database}"))
        .body(sql.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = response.status().is_success();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(text)
    } else {
        Err(text)
    }
}

pub async fn require_clickhouse(server: &str) {
    eventually(
        &format!("ClickHouse at {server} (run scripts/services.sh to start it)"),
        Duration::from_secs(10),
        || async { clickhouse_text(server, "default", "SELECT 1").await.ok() },
    )
    .await;
}

/// A database of its own on a ClickHouse server, migrated; dropped when this is dropped.
pub struct TestDb {
    pub url: ClickHouseUrl,
    pub store: Arc<ClickHouseStore>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on(CLICKHOUSE).await
    }

    pub async fn on(server: &str) -> TestDb {
        require_clickhouse(server).await;
        let name = format!("tg_test_{}", Uuid::new_v4().simple());
        let url = ClickHouseUrl::parse(&format!("{server}/{name}")).expect("test URL");
        let applied = schema::migrate(&url).await.expect("migrate");
        assert_eq!(applied.len(), schema::MIGRATIONS.len());
        TestDb {
            store: Arc::new(ClickHouseStore::new(&url)),
            url,
        }
    }

    /// A number from a query of this database (e.g. a count).
    pub async fn number(&self, sql: &str) -> u64 {
        let text = clickhouse_text(&self.url.server, &self.url.database, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {text}"))
    }

    pub async fn try_number(&self, sql: &str) -> Option<u64> {
        clickhouse_text(&self.url.server, &self.url.database, sql)
            .await
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Blocking and dependency-free, so it also runs while a failed test unwinds.
        let host = self.url.server.trim_start_matches("http://").to_string();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.url.database);
        let _ = http_post(&host, &sql);
    }
}

fn http_post(host: &str, body: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

/// A clickhouse-server of the test's own (own data dir and ports), so stopping it disturbs no
/// other test. Killed when dropped.
pub struct PrivateClickHouse {
    dir: tempfile::TempDir,
    pub server: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrivateClickHouse {
    pub async fn start() -> PrivateClickHouse {
        let dir = tempfile::tempdir().expect("temp dir");
        let http_port = free_port();
        let tcp_port = free_port();
        let root = dir.path().display().to_string();
        for sub in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("dirs");
        }
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{root}/log/server.log</log>
        <errorlog>{root}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>536870912</mark_cache_size>
    <uncompressed_cache_size>536870912</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <timezone>UTC</timezone>
</yandex>
"#
        );
        std::fs::write(dir.path().join("config.xml"), config).expect("config");
        std::fs::write(dir.path().join("users.xml"), USERS_XML).expect("users");
        let mut server = PrivateClickHouse {
            dir,
            server: format!("http://127.0.0.1:{http_port}"),
            child: None,
        };
        server.run().await;
        server
    }

    fn binary() -> PathBuf {
        for candidate in ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"] {
            if std::path::Path::new(candidate).exists() {
                return candidate.into();
            }
        }
        panic!("clickhouse-server is not installed: run scripts/services.sh");
    }

    /// Starts the server (again) and waits until it answers.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(Self::binary())
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clickhouse-server");
        self.child = Some(child);
        let server = self.server.clone();
        eventually(
            &format!(
                "the private clickhouse-server at {server} (log in {})",
                self.dir.path().join("log").display()
            ),
            Duration::from_secs(60),
            || async { clickhouse_text(&server, "default", "SELECT 1").await.ok() },
        )
        .await;
    }

    /// Stops the server as an operator would (SIGTERM) and waits until it has exited.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#;

/// A NATS prefix of the test's own on the shared server. Its log stream is created here with
/// the bus's settings but a short acknowledgement deadline, so redeliveries after a crash come
/// in seconds, not the production minute; its streams are deleted when dropped.
pub struct NatsPrefix {
    pub prefix: String,
}

pub const TEST_ACK_WAIT: Duration = Duration::from_secs(3);

impl NatsPrefix {
    pub async fn new(consumer: &str) -> NatsPrefix {
        NatsPrefix::with_ack_wait(consumer, TEST_ACK_WAIT).await
    }

    /// With the consumer's acknowledgement deadline set to `ack_wait`.
    pub async fn with_ack_wait(consumer: &str, ack_wait: Duration) -> NatsPrefix {
        use async_nats::jetstream::{self, consumer as c, stream};
        let prefix = format!("tgtest{}", &Uuid::new_v4().simple().to_string()[..12]);
        let client = async_nats::connect(NATS).await.unwrap_or_else(|e| {
            panic!("NATS at {NATS} (run scripts/services.sh to start it): {e}")
        });
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("{prefix}_logs"),
                subjects: vec![format!("{prefix}.logs.>")],
                max_age: Duration::from_secs(3600),
                duplicate_window: Duration::from_secs(120),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("log stream");
        stream
            .get_or_create_consumer::<c::pull::Config>(
                consumer,
                c::pull::Config {
                    durable_name: Some(consumer.to_string()),
                    ack_policy: c::AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 50_000,
                    ..Default::default()
                },
            )
            .await
            .expect("log consumer");
        NatsPrefix { prefix }
    }
}

impl Drop for NatsPrefix {
    fn drop(&mut self) {
        // The log stream, and the heads and snapshots of a test that ran an edge.
        let names = [
            format!("{}_logs", self.prefix),
            format!("KV_{}_heads", self.prefix),
            format!("OBJ_{}_snapshots", self.prefix),
        ];
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(client) = async_nats::connect(NATS).await {
                        let js = async_nats::jetstream::new(client);
                        for name in &names {
                            let _ = js.delete_stream(name).await;
                        }
                    }
                });
            }
        })
        .join();
    }
}

/// Who a log belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    pub organization: Uuid,
    pub control_plane: Uuid,
    pub service: Uuid,
    pub route: Uuid,
    pub consumer: Uuid,
    pub node: Uuid,
}

impl Tenant {
    pub fn new() -> Tenant {
        Tenant {
            organization: Uuid::now_v7(),
            control_plane: Uuid::now_v7(),
            service: Uuid::now_v7(),
            route: Uuid::now_v7(),
            consumer: Uuid::now_v7(),
            node: Uuid::now_v7(),
        }
    }

    /// A proxied request answered 200, with every field set.
    pub fn log(&self, time: DateTime<Utc>, n: u64) -> RequestLog {
        RequestLog {
            id: Uuid::now_v7(),
            time,
            organization_id: self.organization,
            control_plane_id: self.control_plane,
            node_id: self.node,
            region: "eu-west".into(),
            request_id: format!("req-{n}"),
            service_id: Some(self.service),
            route_id: Some(self.route),
            consumer_id: Some(self.consumer),
            method: "GET".into(),
            host: "api.example.com".into(),
            path: format!("/items/{n}"),
            status: 200,
            latency_total_us: 1_000 + n,
            latency_upstream_us: Some(800 + n),
            latency_edge_us: 200,
            bytes_in: 10,
            bytes_out: 100 + n,
            client_ip: "192.0.2.7".into(),
            ai: AiUsage::default(),
        }
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::new()
    }
}

pub fn batch(logs: Vec<RequestLog>) -> LogBatch {
    LogBatch {
        id: Uuid::now_v7(),
        node_id: logs.first().map(|l| l.node_id).unwrap_or_else(Uuid::now_v7),
        logs,
    }
}

/// `n` batches of `per_batch` logs each for `tenant`, a millisecond apart, from `start`.
pub fn batches(tenant: &Tenant, start: DateTime<Utc>, n: usize, per_batch: usize) -> Vec<LogBatch> {
    (0..n)
        .map(|b| {
            batch(
                (0..per_batch)
                    .map(|i| {
                        let k = (b * per_batch + i) as u64;
                        tenant.log(start + chrono::Duration::milliseconds(k as i64), k)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Now, to the millisecond (what a log keeps).
pub fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

/// Fails on the first log that differs, without printing thousands.
pub fn assert_same_logs(mut got: Vec<RequestLog>, mut want: Vec<RequestLog>) {
    got.sort_by_key(|l| l.id);
    want.sort_by_key(|l| l.id);
    assert_eq!(got.len(), want.len(), "number of logs");
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got, want);
    }
}

pub fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a valid time")
}
