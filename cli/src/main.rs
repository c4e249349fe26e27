//! `tollgate`: one binary, thin subcommands that wire the libraries together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tollgate_analytics::clickhouse::{ClickHouseStore, ClickHouseUrl};
use tollgate_analytics::ingest::{self, IngestConfig, IngestMetrics};
use tollgate_analytics::sqlite::SqliteStore;
use tollgate_analytics::AnalyticsStore;
use tollgate_api::ephemeral::{EphemeralStore, MemoryStore, RedisStore};
use tollgate_api::ApiConfig;
use tollgate_bus::{Bus, MemoryBus, NatsBus};
use tollgate_edge::EdgeConfig;
use tollgate_model::secret::MasterKey;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: API gateway, service mesh and AI gateway with a SaaS control plane"
)]
struct Cli {
    /// Log format: `pretty` for people, `json` for log shippers.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    /// Threads that serve requests (and everything else); default: one per CPU core.
    #[arg(long, env = "TOLLGATE_WORKER_THREADS", global = true)]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run API, console and one edge in one process on SQLite and in-process channels.
    Dev(DevArgs),
    /// Apply database migrations.
    Migrate(MigrateArgs),
    /// Run the API and console against Postgres, NATS and Redis.
    Api(ApiArgs),
    /// Run an edge proxy that takes its config from NATS.
    Edge(EdgeArgs),
    /// Move request logs from NATS JetStream into ClickHouse.
    Ingest(IngestArgs),
}

#[derive(Args)]
struct DevArgs {
    /// Where the SQLite database and the edge's last-known-good config live.
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./tollgate-data")]
    data_dir: PathBuf,
    /// Address of the API and console.
    #[arg(long, env = "TOLLGATE_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: SocketAddr,
    /// Address of the proxy.
    #[arg(long, env = "TOLLGATE_PROXY_LISTEN", default_value = "127.0.0.1:8000")]
    proxy_listen: SocketAddr,
    /// Address of the proxy's TLS listener (certificates chosen by SNI from the config).
    #[arg(
        long,
        env = "TOLLGATE_PROXY_TLS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    proxy_tls_listen: SocketAddr,
    /// 64 hex digits that seal private keys at rest. Default: the key in
    /// `<data dir>/master.key`, created on first start.
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Address of the edge's status endpoints.
    #[arg(long, env = "TOLLGATE_STATUS_LISTEN", default_value = "127.0.0.1:8100")]
    status_listen: SocketAddr,
    /// Directory of the console's islands bundle (built by `scripts/build-console`). Default:
    /// `console/dist/pkg` of the source tree this binary was built from, when it exists.
    /// Without the bundle the console's pages work as plain HTML, minus their islands.
    #[arg(long, env = "TOLLGATE_CONSOLE_DIR")]
    console_dir: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["database_url", "clickhouse_url"])))]
struct MigrateArgs {
    /// `postgres://user@host/db` or `sqlite://path?mode=rwc`.
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// The analytics database, `http://host:8123/database` (created when missing).
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
}

#[derive(Args)]
struct ApiArgs {
    /// `postgres://user@host/db`.
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: String,
    /// e.g. `nats://127.0.0.1:4222`.
    #[arg(long, env = "TOLLGATE_NATS_URL")]
    nats_url: String,
    /// e.g. `redis://127.0.0.1:6379`.
    #[arg(long, env = "TOLLGATE_REDIS_URL")]
    redis_url: String,
    /// Address of the API and console.
    #[arg(long, env = "TOLLGATE_API_LISTEN", default_value = "127.0.0.1:8080")]
    api_listen: SocketAddr,
    /// The proxy's public base URL; control planes are served at `<slug>.<its host>`.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_PUBLIC_URL",
        default_value = "http://localhost:8000"
    )]
    proxy_public_url: String,
    /// Region of new control planes.
    #[arg(long, env = "TOLLGATE_REGION", default_value = "default")]
    region: String,
    /// Prefix of the NATS buckets and subjects (one per deployment).
    #[arg(long, env = "TOLLGATE_NATS_PREFIX", default_value = "tollgate")]
    nats_prefix: String,
    /// Prefix of the Redis keys (one per deployment).
    #[arg(long, env = "TOLLGATE_REDIS_PREFIX", default_value = "tollgate")]
    redis_prefix: String,
    /// How long a console session lasts, e.g. `14d`.
    #[arg(long, env = "TOLLGATE_SESSION_TTL", default_value = "14d", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
    /// Mark session cookies Secure (when the console is served over https).
    #[arg(long, env = "TOLLGATE_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Directory of the console's islands bundle (built by `scripts/build-console`). Default:
    /// `console/dist/pkg` of the source tree this binary was built from, when it exists.
    /// Without the bundle the console's pages work as plain HTML, minus their islands.
    #[arg(long, env = "TOLLGATE_CONSOLE_DIR")]
    console_dir: Option<PathBuf>,
    /// 64 hex digits that seal private keys at rest (`openssl rand -hex 32`); the edges that
    /// terminate TLS need the same key. Without it, certificates cannot be created.
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// The analytics database, `http://host:8123/database`, for the traffic and usage
    /// endpoints; without it they answer 503.
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
}

#[derive(Args)]
struct IngestArgs {
    /// e.g. `nats://127.0.0.1:4222`.
    #[arg(long, env = "TOLLGATE_NATS_URL")]
    nats_url: String,
    /// The analytics database, `http://host:8123/database` (migrated by `tollgate migrate`).
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_URL")]
    clickhouse_url: String,
    /// Prefix of the NATS streams and subjects (as given to the edges).
    #[arg(long, env = "TOLLGATE_NATS_PREFIX", default_value = "tollgate")]
    nats_prefix: String,
    /// Name of the durable JetStream consumer; ingesters with the same name share the work.
    #[arg(long, env = "TOLLGATE_INGEST_CONSUMER", default_value = "ingest")]
    consumer: String,
    /// Address of `/metrics` (Prometheus) and `/status`.
    #[arg(long, env = "TOLLGATE_STATUS_LISTEN", default_value = "127.0.0.1:8101")]
    status_listen: SocketAddr,
    /// Most log batches stored by one insert.
    #[arg(long, env = "TOLLGATE_INGEST_MAX_BATCHES", default_value_t = IngestConfig::default().max_batches)]
    max_batches: usize,
    /// Most rows stored by one insert: batches are gathered over several fetches up to this
    /// (ClickHouse does much better with few big inserts).
    #[arg(long, env = "TOLLGATE_INGEST_MAX_ROWS", default_value_t = IngestConfig::default().max_rows)]
    max_rows: usize,
}

#[derive(Args)]
struct EdgeArgs {
    /// e.g. `nats://127.0.0.1:4222`.
    #[arg(long, env = "TOLLGATE_NATS_URL")]
    nats_url: String,
    /// Serve every control plane of this region (shared mode).
    #[arg(long, env = "TOLLGATE_REGION", default_value = "default")]
    region: String,
    /// Serve only this control plane.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE")]
    control_plane: Option<Uuid>,
    /// Address of the proxy.
    #[arg(long, env = "TOLLGATE_PROXY_LISTEN", default_value = "127.0.0.1:8000")]
    proxy_listen: SocketAddr,
    /// Address of the proxy's TLS listener (certificates chosen by SNI from the config); none
    /// when not given.
    #[arg(long, env = "TOLLGATE_PROXY_TLS_LISTEN")]
    proxy_tls_listen: Option<SocketAddr>,
    /// The API's master key (64 hex digits), to open the certificates' private keys. Without
    /// it the TLS listener has no certificates.
    #[arg(long, env = "TOLLGATE_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Address of the status endpoints (`/status`, `/status/ready`).
    #[arg(long, env = "TOLLGATE_STATUS_LISTEN", default_value = "127.0.0.1:8100")]
    status_listen: SocketAddr,
    /// Where the node id and last-known-good config live.
    #[arg(
        long,
        env = "TOLLGATE_DATA_DIR",
        default_value = "./tollgate-edge-data"
    )]
    data_dir: PathBuf,
    /// Prefix of the NATS buckets and subjects (as given to `tollgate api`).
    #[arg(long, env = "TOLLGATE_NATS_PREFIX", default_value = "tollgate")]
    nats_prefix: String,
    /// How often to report to the control plane, e.g. `10s`.
    #[arg(long, env = "TOLLGATE_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Log every answered request and ship the logs on the bus: `on` or `off`.
    #[arg(long, env = "TOLLGATE_REQUEST_LOGS", default_value = "on", value_parser = ["on", "off"])]
    request_logs: String,
    /// Most request log lines in one published batch.
    #[arg(long, env = "TOLLGATE_LOG_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    log_batch_size: u32,
    /// Longest a request log line waits before its batch is published, e.g. `1s`.
    #[arg(long, env = "TOLLGATE_LOG_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    log_flush_interval: Duration,
    /// Most bytes of request logs kept in `<data dir>/log-spool` while NATS is unreachable;
    /// beyond it the oldest batches are dropped (and counted).
    #[arg(long, env = "TOLLGATE_LOG_SPOOL_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    log_spool_max_bytes: u64,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,async_nats=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.compact().init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The proxy allocates small, short-lived buffers per request; mimalloc's thread-local free lists
/// cost a fraction of glibc malloc's (about 7% of the edge's CPU time in a profile under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memory mimalloc frees and does not reuse within a second goes back to the OS. By default its
/// pages are dropped at once (`MADV_DONTNEED`), and using it again takes a page fault for each
/// page and zeroes it. This sets `MADV_FREE` instead: the kernel still takes the pages when it
/// needs memory, and otherwise they are reused without faults.
///
/// This matters for config applies, which come seconds or minutes apart. Each 10,000-route apply
/// allocates tens of MiB. On a VM whose host takes back freed guest memory, faulting that memory
/// in took 100–360 ms of an apply that otherwise takes about 30 ms (`loadtest/RESULTS.md`).
/// The catch is that `top` shows freed memory in RSS until the kernel takes it. An operator can
/// still choose mimalloc's default with `MIMALLOC_PURGE_DECOMMITS=1`.
#[allow(unsafe_code)]
fn free_memory_lazily() {
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some() {
        return;
    }
    // `mi_option_purge_decommits` in mimalloc.h's `mi_option_e` (the same in mimalloc 2 and 3);
    // libmimalloc-sys names only older options.
    const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
    // SAFETY: mi_option_set only stores an option's value; any value is valid for this option.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0) }
}

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` is set (then
/// mimalloc's own setting stands). mimalloc asks for huge pages on the memory it takes from the
/// OS, so the first touch of each 2 MiB zeroes all of it at once, however little of it is used.
/// A config apply touches tens of MiB the process never had, and on the VM measured faulting it
/// in that way was most of a slow apply: the first 10,000-route change after start took
/// 125–207 ms with huge pages and 59–97 ms without, and the edge's anonymous memory over the
/// first two changes went from 35 to 66 MiB instead of 47 to 81 (`loadtest/RESULTS.md`).
/// Latency-sensitive servers commonly run without them (Redis, for one, warns when they are on);
/// a proxy's hot data is small enough for 4 KiB pages.
#[cfg(target_os = "linux")]
fn use_small_pages() -> std::io::Result<()> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Ok(());
    }
    // Process-wide, and inherited by children: the kernel keeps the flag on the address space.
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn use_small_pages() -> std::io::Result<()> {
    Ok(())
}

fn main() {
    free_memory_lazily();
    let small_pages = use_small_pages();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Err(e) = small_pages {
        tracing::warn!(error = %e, "could not turn transparent huge pages off; applies may be slower");
    }
    // One worker: tokio's single-threaded scheduler, which skips the multi-threaded one's work
    // stealing and cross-thread wake-ups (the work runs on this thread, as nginx's one worker).
    let mut runtime = match cli.worker_threads {
        Some(1) | Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let result = match runtime.build() {
        Ok(runtime) => runtime.block_on(async {
            match cli.command {
                Command::Dev(args) => dev(args).await,
                Command::Migrate(args) => migrate(args).await,
                Command::Api(args) => api(args).await,
                Command::Edge(args) => edge(args).await,
                Command::Ingest(args) => ingest(args).await,
            }
        }),
        Err(e) => Err(anyhow::anyhow!("starting the runtime: {e}")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let db_path = args.data_dir.join("tollgate.db");
    let database_url = format!("sqlite://{}?mode=rwc", db_path.display());
    let db = tollgate_api::store::connect(&database_url)
        .await
        .with_context(|| format!("opening {}", db_path.display()))?;
    tollgate_api::store::migrate(&db)
        .await
        .context("migrating the database")?;

    let master_key = match args.master_key {
        Some(text) => parse_master_key(&text)?,
        None => dev_master_key(&args.data_dir)?,
    };

    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let edge = tollgate_edge::start(
        EdgeConfig {
            header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
            proxy_listen: args.proxy_listen,
            proxy_tls_listen: Some(args.proxy_tls_listen),
            master_key: Some(master_key.clone()),
            status_listen: args.status_listen,
            data_dir: args.data_dir.join("edge"),
            region: "default".into(),
            control_plane: None,
            heartbeat_interval: Duration::from_secs(5),
            binary_version: VERSION.into(),
            request_logs: tollgate_edge::RequestLogConfig::default(),
        },
        bus.clone(),
    )
    .await
    .context("starting the edge")?;
    // The edge's request logs go through the in-process channel to an ingester writing SQLite.
    let analytics_path = args.data_dir.join("analytics.db");
    let analytics: Arc<dyn AnalyticsStore> = Arc::new(
        SqliteStore::open(&analytics_path)
            .await
            .with_context(|| format!("opening {}", analytics_path.display()))?,
    );
    let (stop_ingest, ingest_stopped) = tokio::sync::oneshot::channel::<()>();
    let ingester = tokio::spawn(ingest::run(
        bus.log_queue("dev").await?,
        analytics.clone(),
        IngestConfig {
            // Dev traffic is light: store it as soon as it comes.
            wait: Duration::from_millis(100),
            ..IngestConfig::default()
        },
        Arc::new(IngestMetrics::new()),
        async {
            let _ = ingest_stopped.await;
        },
    ));
    let proxy_public_url = format!("http://localhost:{}", edge.proxy_addr.port());
    let ephemeral: Arc<dyn EphemeralStore> = Arc::new(MemoryStore::default());
    let api = tollgate_api::start(
        ApiConfig {
            listen: args.api_listen,
            proxy_public_url: proxy_public_url.clone(),
            default_region: "default".into(),
            session_ttl: Duration::from_secs(14 * 24 * 3600),
            secure_cookies: false,
            console_dir: args
                .console_dir
                .or_else(tollgate_api::assets::source_tree_dir),
            master_key: Some(master_key),
            analytics: Some(analytics.clone()),
        },
        db,
        bus.clone(),
        ephemeral,
    )
    .await
    .context("starting the API")?;

    println!(
        "Tollgate is running (embedded dev mode; data in {})",
        args.data_dir.display()
    );
    println!("  console: http://{}/", api.addr);
    println!("  api:     http://{}/api/v1", api.addr);
    println!(
        "  proxy:   http://{} (each control plane at http://<slug>.localhost:{})",
        edge.proxy_addr,
        edge.proxy_addr.port()
    );
    if let Some(tls) = edge.proxy_tls_addr {
        println!("  tls:     https://{tls} (certificates from the config, by SNI)");
    }
    println!("  status:  http://{}/status", edge.status_addr);
    println!("Press Ctrl-C to stop.");

    shutdown_signal().await;
    tracing::info!("shutting down");
    api.shutdown().await;
    // The edge hands its last logs to the channel as it stops; they are stored before exit.
    edge.shutdown().await;
    let _ = stop_ingest.send(());
    let _ = ingester.await;
    store_remaining_logs(bus.as_ref(), analytics.as_ref()).await;
    Ok(())
}

/// In dev the channel is the only copy of logs not stored yet: drain it into the store.
async fn store_remaining_logs(bus: &dyn Bus, store: &dyn AnalyticsStore) {
    let Ok(mut queue) = bus.log_queue("dev").await else {
        return;
    };
    while let Ok(deliveries) = queue.next(500, Duration::from_millis(50)).await {
        if deliveries.is_empty() {
            break;
        }
        let batches: Vec<_> = deliveries.into_iter().map(|d| d.batch).collect();
        if let Err(e) = store.insert(&batches).await {
            tracing::warn!(error = %e, "storing the last request logs");
            break;
        }
    }
}

/// Refuses a ClickHouse database that lacks migrations of this release: the API would answer
/// dashboards with errors, and an ingester would store rows that views not yet created never
/// count. When ClickHouse cannot be reached the check is skipped with a warning: both processes
/// start before ClickHouse does and retry, as they do when it goes away later.
async fn check_clickhouse_schema(url: &ClickHouseUrl) -> anyhow::Result<()> {
    use tollgate_analytics::clickhouse::{schema, ClickHouseError};
    let missing = match schema::pending(url).await {
        Ok(pending) if pending.is_empty() => return Ok(()),
        Ok(pending) => pending.join(", "),
        Err(ClickHouseError::Unavailable(e)) => {
            tracing::warn!(error = %e, "ClickHouse is unreachable; its schema is not checked");
            return Ok(());
        }
        // No database or no schema_migrations table: nothing was migrated.
        Err(e)
            if ["doesn't exist", "does not exist"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            format!("all ({e})")
        }
        Err(e) => anyhow::bail!(
            "reading the schema of ClickHouse database {} at {}: {e}",
            url.database,
            url.server
        ),
    };
    anyhow::bail!(
        "ClickHouse database {} at {} lacks migrations: {missing}; \
         run `tollgate migrate --clickhouse-url URL` first",
        url.database,
        url.server
    )
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.database_url {
        migrate_database(url).await?;
    }
    if let Some(url) = &args.clickhouse_url {
        let url = ClickHouseUrl::parse(url)?;
        let applied = tollgate_analytics::clickhouse::schema::migrate(&url)
            .await
            .context("migrating ClickHouse")?;
        if applied.is_empty() {
            println!("ClickHouse database {} is up to date", url.database);
        } else {
            println!(
                "applied {} ClickHouse migration(s) to {}: {}",
                applied.len(),
                url.database,
                applied.join(", ")
            );
        }
    }
    Ok(())
}

async fn migrate_database(database_url: &str) -> anyhow::Result<()> {
    let db = tollgate_api::store::connect(database_url)
        .await
        .context("connecting to the database")?;
    let pending = tollgate_api::store::pending_migrations(&db).await?;
    tollgate_api::store::migrate(&db)
        .await
        .context("applying migrations")?;
    if pending.is_empty() {
        println!("database is up to date");
    } else {
        println!(
            "applied {} migration(s): {}",
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(())
}

async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let db = tollgate_api::store::connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&args.nats_url, &args.nats_prefix)
            .await
            .context("connecting to NATS")?,
    );
    let ephemeral: Arc<dyn EphemeralStore> = Arc::new(
        RedisStore::connect(&args.redis_url, &args.redis_prefix)
            .await
            .context("connecting to Redis")?,
    );
    let api = tollgate_api::start(
        ApiConfig {
            listen: args.api_listen,
            proxy_public_url: args.proxy_public_url,
            default_region: args.region,
            session_ttl: args.session_ttl,
            secure_cookies: args.secure_cookies,
            console_dir: args
                .console_dir
                .or_else(tollgate_api::assets::source_tree_dir),
            master_key: args
                .master_key
                .as_deref()
                .map(parse_master_key)
                .transpose()?,
            analytics: match args.clickhouse_url.as_deref() {
                Some(url) => {
                    let url = ClickHouseUrl::parse(url)?;
                    check_clickhouse_schema(&url).await?;
                    Some(Arc::new(ClickHouseStore::new(&url)) as Arc<dyn AnalyticsStore>)
                }
                None => None,
            },
        },
        db,
        bus,
        ephemeral,
    )
    .await?;
    println!("api listening on http://{}", api.addr);
    shutdown_signal().await;
    api.shutdown().await;
    Ok(())
}

async fn edge(args: EdgeArgs) -> anyhow::Result<()> {
    tollgate_bus::validate_region(&args.region).map_err(|e| anyhow::anyhow!("--region: {e}"))?;
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&args.nats_url, &args.nats_prefix)
            .await
            .context("connecting to NATS")?,
    );
    let edge = tollgate_edge::start(
        EdgeConfig {
            header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
            proxy_listen: args.proxy_listen,
            proxy_tls_listen: args.proxy_tls_listen,
            master_key: args
                .master_key
                .as_deref()
                .map(parse_master_key)
                .transpose()?,
            status_listen: args.status_listen,
            data_dir: args.data_dir,
            region: args.region,
            control_plane: args.control_plane,
            heartbeat_interval: args.heartbeat_interval,
            binary_version: VERSION.into(),
            request_logs: tollgate_edge::RequestLogConfig {
                enabled: args.request_logs == "on",
                batch_size: args.log_batch_size as usize,
                flush_interval: args.log_flush_interval,
                spool_max_bytes: args.log_spool_max_bytes,
            },
        },
        bus,
    )
    .await
    .context("starting the edge")?;
    println!(
        "edge {} proxy on http://{}, status on http://{}/status",
        edge.node_id, edge.proxy_addr, edge.status_addr
    );
    shutdown_signal().await;
    edge.shutdown().await;
    Ok(())
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let url = ClickHouseUrl::parse(&args.clickhouse_url)?;
    check_clickhouse_schema(&url).await?;
    let store: Arc<dyn AnalyticsStore> = Arc::new(ClickHouseStore::new(&url));
    let bus = NatsBus::connect(&args.nats_url, &args.nats_prefix)
        .await
        .context("connecting to NATS")?;
    // The stream and consumer are made on first use: retried until NATS answers, so an
    // ingester can start before it.
    let queue = loop {
        match bus.log_queue(&args.consumer).await {
            Ok(queue) => break queue,
            Err(e) => {
                tracing::warn!(error = %e, "opening the log stream; retrying");
                tokio::select! {
                    _ = shutdown_signal() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let metrics = Arc::new(IngestMetrics::new());
    let status = ingest::StatusServer::start(args.status_listen, metrics.clone())
        .await
        .with_context(|| format!("listening on {}", args.status_listen))?;
    println!(
        "ingesting {}_logs (consumer {}) into {} at {}; metrics on http://{}/metrics",
        args.nats_prefix, args.consumer, url.database, url.server, status.addr
    );
    let summary = ingest::run(
        queue,
        store,
        IngestConfig {
            max_batches: args.max_batches.max(1),
            max_rows: args.max_rows.max(1),
            ..IngestConfig::default()
        },
        metrics,
        shutdown_signal(),
    )
    .await;
    tracing::info!(
        rows = summary.rows,
        batches = summary.batches,
        duplicates = summary.duplicate_batches,
        "ingester stopped"
    );
    status.shutdown();
    Ok(())
}

fn parse_master_key(text: &str) -> anyhow::Result<MasterKey> {
    MasterKey::parse(text).map_err(|e| anyhow::anyhow!("--master-key: {e}"))
}

/// Dev mode keeps its master key beside its database, created on first start, so certificates
/// survive restarts without any setup.
fn dev_master_key(data_dir: &std::path::Path) -> anyhow::Result<MasterKey> {
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate()?;
            write_private_file(&path, &key.to_hex())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
