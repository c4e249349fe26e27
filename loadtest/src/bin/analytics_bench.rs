//! Analytics benchmarks against the real services: how fast the ingester moves request logs
//! from JetStream into ClickHouse, and how fast the dashboard's queries answer over 10 million
//! rows. Each scenario uses a database and NATS prefix of its own and removes them at the end;
//! `--write` puts the tables into `loadtest/RESULTS.md`.
//!
//! ```sh
//! cargo build --release -p tollgate-loadtest --bin analytics_bench
//! target/release/analytics_bench --write                 # both scenarios
//! target/release/analytics_bench ingest --logs 3000000   # one, with its size
//! target/release/analytics_bench queries --rows 10000000 --queries 50
//! target/release/analytics_bench freshness               # request → visible in ClickHouse
//! ```
//!
//! Needs NATS with JetStream on 127.0.0.1:4222 and ClickHouse on 127.0.0.1:8123
//! (`scripts/services.sh` starts both), or `--nats-url` / `--clickhouse-url`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tollgate_analytics::clickhouse::{schema, tables_read, ClickHouseStore, ClickHouseUrl};
use tollgate_analytics::ingest::{self, IngestConfig, IngestMetrics};
use tollgate_analytics::query::{Bucket, Dimension, Filters, SeriesQuery, TimeRange, TopQuery};
use tollgate_analytics::AnalyticsStore;
use tollgate_bus::{Bus, NatsBus};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

const SCENARIOS: &[&str] = &["ingest", "queries", "freshness"];

struct Options {
    scenarios: Vec<String>,
    nats_url: String,
    clickhouse_url: String,
    /// Logs published for the ingest scenario.
    logs: usize,
    /// Logs per published batch.
    batch_size: usize,
    /// Ingesters side by side on one consumer.
    ingesters: usize,
    /// Rows of the tenant the query scenario measures.
    rows: usize,
    /// Times each dashboard query runs.
    queries: usize,
    /// Leave the query scenario's database in place (its name is printed), to study its plans.
    keep: bool,
    write: bool,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        scenarios: Vec::new(),
        nats_url: "nats://127.0.0.1:4222".into(),
        clickhouse_url: "http://127.0.0.1:8123".into(),
        logs: 3_000_000,
        batch_size: 500,
        ingesters: 1,
        rows: 10_000_000,
        queries: 30,
        keep: false,
        write: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--nats-url" => options.nats_url = value("--nats-url")?,
            "--clickhouse-url" => options.clickhouse_url = value("--clickhouse-url")?,
            "--logs" => options.logs = value("--logs")?.parse()?,
            "--batch-size" => options.batch_size = value("--batch-size")?.parse()?,
            "--ingesters" => options.ingesters = value("--ingesters")?.parse()?,
            "--rows" => options.rows = value("--rows")?.parse()?,
            "--queries" => options.queries = value("--queries")?.parse()?,
            "--write" => options.write = true,
            "--keep" => options.keep = true,
            scenario if SCENARIOS.contains(&scenario) => options.scenarios.push(arg),
            other => bail!(
                "unknown argument {other}; scenarios: {}; options: --nats-url --clickhouse-url \
                 --logs --batch-size --ingesters --rows --queries --keep --write",
                SCENARIOS.join(", ")
            ),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    if options.batch_size == 0 || options.ingesters == 0 || options.queries == 0 {
        bail!("--batch-size, --ingesters and --queries must be at least 1");
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    // The ingester's warnings (failed inserts, bus errors) belong in the benchmark's output.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut sections = Vec::new();
    for scenario in options.scenarios.clone() {
        eprintln!("== {scenario}");
        let section = match scenario.as_str() {
            "ingest" => ingest_rate(&options).await?,
            "queries" => dashboard_queries(&options).await?,
            "freshness" => freshness(&options).await?,
            _ => unreachable!("scenarios are checked when parsed"),
        };
        println!("{section}");
        sections.push((scenario, section));
    }
    if options.write {
        tollgate_loadtest::report::write_tool_sections("analytics_bench", &sections)?;
        eprintln!("wrote loadtest/RESULTS.md");
    }
    Ok(())
}

/// A database of the benchmark's own, dropped when done.
struct BenchDb {
    url: ClickHouseUrl,
    store: Arc<ClickHouseStore>,
}

impl BenchDb {
    async fn create(server: &str) -> anyhow::Result<BenchDb> {
        let name = format!("tg_bench_{}", Uuid::new_v4().simple());
        let url = ClickHouseUrl::parse(&format!("{}/{name}", server.trim_end_matches('/')))?;
        schema::migrate(&url)
            .await
            .context("migrating ClickHouse")?;
        Ok(BenchDb {
            store: Arc::new(ClickHouseStore::new(&url)),
            url,
        })
    }

    async fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/?database={}",
                self.url.server, self.url.database
            ))
            .body(sql.to_string())
            .send()
            .await?;
        let ok = response.status().is_success();
        let text = response.text().await?;
        if !ok {
            bail!("{sql}: {text}");
        }
        Ok(text.trim().to_string())
    }

    async fn drop_database(&self) {
        let _ = self
            .sql(&format!("DROP DATABASE IF EXISTS {}", self.url.database))
            .await;
    }
}

/// Deterministic pseudo-random numbers (xorshift), so runs are comparable.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A tenant's shape: control planes, each route in one service of one control plane,
/// consumers, nodes in two regions. Traffic is mostly 2xx with some 4xx and 5xx.
struct SyntheticTenant {
    organization: Uuid,
    control_planes: Vec<Uuid>,
    services: Vec<Uuid>,
    /// (route, service index, control plane index)
    routes: Vec<(Uuid, usize, usize)>,
    consumers: Vec<Uuid>,
    nodes: Vec<(Uuid, &'static str)>,
}

const STATUSES: &[u16] = &[
    200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 204, 301, 400, 401, 404, 429,
    500, 502, 503,
];

impl SyntheticTenant {
    fn new(dice: &mut Dice) -> SyntheticTenant {
        let control_planes: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let services: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
        let routes = (0..40)
            .map(|_| {
                let service = dice.below(services.len() as u64) as usize;
                (Uuid::now_v7(), service, service % control_planes.len())
            })
            .collect();
        SyntheticTenant {
            organization: Uuid::now_v7(),
            control_planes,
            services,
            routes,
            consumers: (0..30).map(|_| Uuid::now_v7()).collect(),
            nodes: vec![
                (Uuid::now_v7(), "eu-west"),
                (Uuid::now_v7(), "eu-west"),
                (Uuid::now_v7(), "us-east"),
                (Uuid::now_v7(), "us-east"),
            ],
        }
    }

    fn log(&self, dice: &mut Dice, time: DateTime<Utc>) -> RequestLog {
        let (route, service, cp) = self.routes[dice.below(self.routes.len() as u64) as usize];
        let (node, region) = self.nodes[dice.below(self.nodes.len() as u64) as usize];
        let status = STATUSES[dice.below(STATUSES.len() as u64) as usize];
        // One request in ten comes without a consumer; unmatched 404s have no route.
        let unmatched = status == 404 && dice.below(2) == 0;
        let consumer = (dice.below(10) != 0)
            .then(|| self.consumers[dice.below(self.consumers.len() as u64) as usize]);
        let upstream =
            (!unmatched && status != 401 && status != 429).then(|| 200 + dice.below(50_000));
        let edge = 50 + dice.below(400);
        RequestLog {
            id: Uuid::now_v7(),
            time,
            organization_id: self.organization,
            control_plane_id: self.control_planes[cp],
            node_id: node,
            region: region.into(),
            request_id: format!("{:016x}", dice.next()),
            service_id: (!unmatched).then_some(self.services[service]),
            route_id: (!unmatched).then_some(route),
            consumer_id: if unmatched { None } else { consumer },
            method: if dice.below(4) == 0 { "POST" } else { "GET" }.into(),
            host: "api.example.com".into(),
            path: format!("/v1/items/{}", dice.below(100_000)),
            status,
            latency_total_us: edge + upstream.unwrap_or(0),
            latency_upstream_us: upstream,
            latency_edge_us: edge,
            bytes_in: if dice.below(4) == 0 {
                dice.below(4096)
            } else {
                0
            },
            bytes_out: 200 + dice.below(8192),
            client_ip: format!("10.0.{}.{}", dice.below(256), dice.below(256)),
            ai: AiUsage::default(),
        }
    }

    /// Logs `first..first + count` of `spread`, in batches of `batch_size`.
    fn batches(
        &self,
        dice: &mut Dice,
        spread: &Spread,
        first: usize,
        count: usize,
        batch_size: usize,
    ) -> Vec<LogBatch> {
        let Spread { from, span, total } = *spread;
        let step_ms = (span.num_milliseconds() as f64 / total.max(1) as f64).max(0.0);
        let logs: Vec<RequestLog> = (first..first + count)
            .map(|i| {
                let time = from + chrono::Duration::milliseconds((i as f64 * step_ms) as i64);
                self.log(dice, time)
            })
            .collect();
        logs.chunks(batch_size)
            .map(|chunk| LogBatch {
                id: Uuid::now_v7(),
                node_id: chunk[0].node_id,
                logs: chunk.to_vec(),
            })
            .collect()
    }
}

/// `total` logs evenly over `[from, from + span)`.
#[derive(Clone, Copy)]
struct Spread {
    from: DateTime<Utc>,
    span: chrono::Duration,
    total: usize,
}

fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default()
}

async fn ingest_rate(options: &Options) -> anyhow::Result<String> {
    let db = BenchDb::create(&options.clickhouse_url).await?;
    let prefix = format!("tgbench{}", &Uuid::new_v4().simple().to_string()[..10]);
    let result = ingest_rate_in(options, &db, &prefix).await;
    db.drop_database().await;
    delete_stream(&options.nats_url, &prefix).await;
    result
}

async fn ingest_rate_in(options: &Options, db: &BenchDb, prefix: &str) -> anyhow::Result<String> {
    let bus = Arc::new(NatsBus::connect(&options.nats_url, prefix).await?);
    // The consumer exists before publishing, so the ingesters start at the stream's beginning.
    drop(bus.log_queue("ingest").await?);

    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let tenants: Vec<SyntheticTenant> = (0..10).map(|_| SyntheticTenant::new(&mut dice)).collect();
    let start = now_ms() - chrono::Duration::hours(1);
    eprintln!(
        "publishing {} logs in batches of {}",
        options.logs, options.batch_size
    );
    let published = Instant::now();
    let chunk = options.batch_size * 100;
    let mut done = 0;
    let mut payload_bytes = 0usize;
    while done < options.logs {
        let count = chunk.min(options.logs - done);
        let tenant = &tenants[(done / chunk) % tenants.len()];
        let spread = Spread {
            from: start,
            span: chrono::Duration::hours(1),
            total: options.logs,
        };
        let batches = tenant.batches(&mut dice, &spread, done, count, options.batch_size);
        payload_bytes += batches
            .iter()
            .map(|b| b.encode().map(|e| e.bytes.len()).unwrap_or(0))
            .sum::<usize>();
        // Several publishes in flight (JetStream acknowledges each).
        let mut tasks = tokio::task::JoinSet::new();
        for group in batches.chunks(batches.len().div_ceil(8).max(1)) {
            let bus = bus.clone();
            let group = group.to_vec();
            tasks.spawn(async move {
                for batch in &group {
                    bus.publish_logs(batch).await?;
                }
                Ok::<_, tollgate_bus::BusError>(())
            });
        }
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        done += count;
    }
    let publish_secs = published.elapsed().as_secs_f64();
    eprintln!(
        "published in {publish_secs:.1} s ({:.0} logs/s, {} bytes per log on the bus); ingesting",
        options.logs as f64 / publish_secs,
        payload_bytes / options.logs.max(1)
    );

    let cpu_before = CpuSplit::now();
    let began = Instant::now();
    let mut running = Vec::new();
    for _ in 0..options.ingesters {
        let bus = NatsBus::connect(&options.nats_url, prefix).await?;
        let queue = bus.log_queue("ingest").await?;
        let metrics = Arc::new(IngestMetrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let store: Arc<dyn AnalyticsStore> = db.store.clone();
        let task = tokio::spawn(ingest::run(
            queue,
            store,
            IngestConfig::default(),
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        running.push((metrics, stop, task));
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let rows: u64 = running.iter().map(|(m, _, _)| m.rows.get()).sum();
        if rows >= options.logs as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("ingested {rows} of {} rows in 30 minutes", options.logs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu = CpuSplit::now().since(&cpu_before);
    eprintln!(
        "CPU while ingesting {secs:.1} s: ingester {:.1} s, clickhouse-server {:.1} s, \
         nats-server {:.1} s ({:.0}% of 2 cores busy)",
        cpu.ingester,
        cpu.clickhouse,
        cpu.nats,
        100.0 * (cpu.ingester + cpu.clickhouse + cpu.nats) / (2.0 * secs),
    );
    let mut errors = 0;
    for (metrics, stop, task) in running {
        errors += metrics.insert_errors.get();
        let _ = stop.send(());
        let _ = task.await;
    }
    let stored: u64 = db.sql("SELECT count() FROM request_logs").await?.parse()?;
    if stored != options.logs as u64 {
        bail!("{stored} rows stored for {} logs published", options.logs);
    }
    let rate = options.logs as f64 / secs;
    let goal = if rate >= 200_000.0 { "met" } else { "not met" };
    Ok(format!(
        "```sh\ntarget/release/analytics_bench ingest --logs {logs} --batch-size {batch} --ingesters {ingesters}\n```\n\n\
         | date | logs | batch | ingesters | time | rows/s | insert errors | goal ≥ 200,000 rows/s |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {date} | {logs} | {batch} | {ingesters} | {secs:.1} s | {rate:.0} | {errors} | {goal} |\n",
        date = Utc::now().format("%Y-%m-%d"),
        logs = options.logs,
        batch = options.batch_size,
        ingesters = options.ingesters,
    ))
}

/// CPU seconds used so far by this process (the ingesters run in it) and by every
/// clickhouse-server and nats-server process on the machine.
struct CpuSplit {
    ingester: f64,
    clickhouse: f64,
    nats: f64,
}

impl CpuSplit {
    fn now() -> CpuSplit {
        let mut split = CpuSplit {
            ingester: cpu_seconds("self"),
            clickhouse: 0.0,
            nats: 0.0,
        };
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                // The kernel cuts command names to 15 bytes.
                match comm.trim() {
                    "clickhouse-serv" | "clickhouse-server" => split.clickhouse += cpu_seconds(pid),
                    "nats-server" => split.nats += cpu_seconds(pid),
                    _ => {}
                }
            }
        }
        split
    }

    fn since(&self, before: &CpuSplit) -> CpuSplit {
        CpuSplit {
            ingester: self.ingester - before.ingester,
            clickhouse: self.clickhouse - before.clickhouse,
            nats: self.nats - before.nats,
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, in seconds (Linux's clock tick is 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let Some((_, after)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

async fn delete_stream(nats_url: &str, prefix: &str) {
    if let Ok(client) = async_nats::connect(nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("{prefix}_logs"))
            .await;
    }
}

async fn dashboard_queries(options: &Options) -> anyhow::Result<String> {
    let db = BenchDb::create(&options.clickhouse_url).await?;
    let result = dashboard_queries_in(options, &db).await;
    if options.keep {
        eprintln!("kept database {}", db.url.database);
    } else {
        db.drop_database().await;
    }
    result
}

async fn dashboard_queries_in(options: &Options, db: &BenchDb) -> anyhow::Result<String> {
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let measured = SyntheticTenant::new(&mut dice);
    let others: Vec<SyntheticTenant> = (0..4).map(|_| SyntheticTenant::new(&mut dice)).collect();
    // A week of traffic ending now: the measured tenant's rows, and a tenth as many for each
    // of the others, interleaved as the ingester would write them.
    let week = chrono::Duration::days(7);
    let end = now_ms();
    let from = end - week;
    let other_rows = options.rows / 10;
    let step = 200_000;
    let began = Instant::now();
    let mut done = 0;
    while done < options.rows {
        let count = step.min(options.rows - done);
        let mine = Spread {
            from,
            span: week,
            total: options.rows,
        };
        let theirs = Spread {
            total: other_rows,
            ..mine
        };
        let mut batches = measured.batches(&mut dice, &mine, done, count, 1000);
        for other in &others {
            let share = count / 10;
            let first = (done / 10).min(other_rows);
            batches.extend(other.batches(&mut dice, &theirs, first, share, 1000));
        }
        db.store.insert(&batches).await?;
        done += count;
        if done % 2_000_000 == 0 {
            eprintln!("inserted {done} rows of the measured tenant");
        }
    }
    let load_secs = began.elapsed().as_secs_f64();
    let total: u64 = db.sql("SELECT count() FROM request_logs").await?.parse()?;
    // Every rollup the schema has (the dashboard tables are named requests_*).
    let rollup_tables: Vec<String> = db
        .sql(
            "SELECT name FROM system.tables WHERE database = currentDatabase() \
             AND name LIKE 'requests%' AND engine = 'AggregatingMergeTree' ORDER BY name",
        )
        .await?
        .lines()
        .map(str::to_string)
        .collect();
    let mut rollup_sizes = Vec::new();
    for table in &rollup_tables {
        let inserted: u64 = db
            .sql(&format!("SELECT count() FROM {table}"))
            .await?
            .parse()?;
        // What a table settled by background merges looks like; dashboards mostly read such
        // parts.
        let _ = db.sql(&format!("OPTIMIZE TABLE {table} FINAL")).await;
        let merged: u64 = db
            .sql(&format!("SELECT count() FROM {table}"))
            .await?
            .parse()?;
        rollup_sizes.push(format!("`{table}` {inserted} → {merged}"));
    }
    eprintln!(
        "{total} rows in {load_secs:.0} s; rollups: {}",
        rollup_sizes.join(", ")
    );

    let org = measured.organization;
    let dashboard = console_queries(db, org, options.queries).await?;
    let ad_hoc = ad_hoc_queries(db, &measured, from, end, options.queries).await?;
    Ok(format!(
        "```sh\ntarget/release/analytics_bench queries --rows {rows} --queries {n}\n```\n\n\
         {date}: {total} rows in `request_logs` ({rows} for the measured tenant, the rest for \
         four others), a week ending at the run. Rollup rows as inserted → after `OPTIMIZE … \
         FINAL`: {sizes}. Each query ran {n} times, one at a time, through `ClickHouseStore`; \
         \"reads\" is what its planner picked (whole days from a daily rollup, whole hours from \
         an hourly one, whole minutes at the ends from the minute rollup where it covers the \
         query, raw rows for the rest).\n\n{dashboard}\n{ad_hoc}",
        rows = options.rows,
        n = options.queries,
        date = Utc::now().format("%Y-%m-%d"),
        sizes = rollup_sizes.join(", "),
    ))
}

/// One store call of the query scenario.
enum QueryKind {
    Series(SeriesQuery),
    Top(TopQuery),
    Totals(TimeRange, Filters),
}

impl QueryKind {
    /// What the store's planner reads for it, so each row of a table explains itself.
    fn tables(&self) -> String {
        let tables = match self {
            QueryKind::Series(q) => tables_read(&q.range, &q.filters, q.group_by, Some(q.bucket)),
            QueryKind::Top(q) => tables_read(&q.range, &q.filters, Some(q.by), None),
            QueryKind::Totals(range, filters) => tables_read(range, filters, None, None),
        };
        tables
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    async fn run(&self, store: &ClickHouseStore, org: Uuid) -> anyhow::Result<()> {
        match self {
            QueryKind::Series(q) => drop(store.series(org, q).await?),
            QueryKind::Top(q) => drop(store.top(org, q).await?),
            QueryKind::Totals(range, filters) => drop(store.totals(org, range, filters).await?),
        }
        Ok(())
    }
}

/// Runs `query` once and records its time in each histogram.
async fn timed(
    query: &QueryKind,
    store: &ClickHouseStore,
    org: Uuid,
    histograms: &mut [&mut hdrhistogram::Histogram<u64>],
) -> anyhow::Result<()> {
    let started = Instant::now();
    query.run(store, org).await?;
    let micros = started.elapsed().as_micros() as u64;
    for histogram in histograms {
        histogram.record(micros)?;
    }
    Ok(())
}

fn ms_at(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The Traffic dashboard's own queries for each of its range presets, as the console makes them
/// (`api/src/console/traffic_pages.rs`): the range ends at the end of the current bucket, the
/// bucket follows the span, and a page asks for totals, the series and five top-N tables.
async fn console_queries(db: &BenchDb, org: Uuid, runs: usize) -> anyhow::Result<String> {
    let presets = [
        ("15 min", chrono::Duration::minutes(15)),
        ("1 h", chrono::Duration::hours(1)),
        ("6 h", chrono::Duration::hours(6)),
        ("24 h", chrono::Duration::hours(24)),
        ("7 d", chrono::Duration::days(7)),
        ("30 d", chrono::Duration::days(30)),
    ];
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut lines = String::new();
    for (name, span) in presets {
        let bucket = Bucket::for_span(span);
        let range = TimeRange::last(span, bucket, Utc::now());
        let top = |by, limit| {
            QueryKind::Top(TopQuery {
                range,
                filters: Filters::default(),
                by,
                limit,
            })
        };
        let page = [
            ("totals", QueryKind::Totals(range, Filters::default())),
            (
                "series",
                QueryKind::Series(SeriesQuery {
                    range,
                    bucket,
                    filters: Filters::default(),
                    group_by: None,
                }),
            ),
            ("statuses", top(Dimension::Status, 100)),
            ("routes", top(Dimension::Route, 10)),
            ("services", top(Dimension::Service, 10)),
            ("consumers", top(Dimension::Consumer, 10)),
            ("control planes", top(Dimension::ControlPlane, 10)),
        ];
        let mut preset = hdrhistogram::Histogram::<u64>::new(3)?;
        let mut slowest = (0.0, "");
        for (what, query) in &page {
            let mut own = hdrhistogram::Histogram::<u64>::new(3)?;
            for _ in 0..runs {
                timed(
                    query,
                    &db.store,
                    org,
                    &mut [&mut own, &mut preset, &mut all],
                )
                .await?;
            }
            if ms_at(&own, 0.95) > slowest.0 {
                slowest = (ms_at(&own, 0.95), what);
            }
        }
        // The page as the console loads it: the seven at once.
        let mut pages = hdrhistogram::Histogram::<u64>::new(3)?;
        for _ in 0..runs {
            let started = Instant::now();
            let runs = page.iter().map(|(_, q)| q.run(&db.store, org));
            for result in futures::future::join_all(runs).await {
                result?;
            }
            pages.record(started.elapsed().as_micros() as u64)?;
        }
        lines.push_str(&format!(
            "| {name} | {bucket:?} | {tables} | {:.1} ms | {:.1} ms | {:.1} ms | {} ({:.1} ms) | {:.1} ms |\n",
            ms_at(&preset, 0.5),
            ms_at(&preset, 0.95),
            preset.max() as f64 / 1000.0,
            slowest.1,
            slowest.0,
            ms_at(&pages, 0.95),
            tables = page[5].1.tables(),
        ));
    }
    let p95 = ms_at(&all, 0.95);
    let goal = if p95 < 200.0 { "met" } else { "not met" };
    Ok(format!(
        "**The Traffic dashboard's queries.** For each range preset of the console, the seven \
         queries a page makes (totals, the series, top statuses, routes, services, consumers \
         and control planes), each run alone; \"reads\" is the top consumers' plan. The page \
         column is a whole page's seven queries run at once, as the console does.\n\n\
         | range | bucket | reads (top consumers) | p50 | p95 | max | slowest at p95 | page p95 |\n\
         |---|---|---|---|---|---|---|---|\n{lines}\
         | **all** | | | {:.1} ms | **{p95:.1} ms** | {:.1} ms | | |\n\n\
         Goal p95 < 200 ms over the dashboard's queries: {goal}.\n",
        ms_at(&all, 0.5),
        all.max() as f64 / 1000.0,
    ))
}

/// Queries the API allows and the console does not make: ranges ending at any millisecond
/// (ragged at both ends), a day of minute buckets, a week by hour per status, one route.
async fn ad_hoc_queries(
    db: &BenchDb,
    measured: &SyntheticTenant,
    from: DateTime<Utc>,
    end: DateTime<Utc>,
    runs: usize,
) -> anyhow::Result<String> {
    let day = TimeRange {
        from: end - chrono::Duration::days(1),
        to: end,
    };
    let whole_week = TimeRange { from, to: end };
    let series = |range: TimeRange, bucket, group_by, filters: Filters| {
        QueryKind::Series(SeriesQuery {
            range,
            bucket,
            filters,
            group_by,
        })
    };
    let top = |range: TimeRange, by| {
        QueryKind::Top(TopQuery {
            range,
            filters: Filters::default(),
            by,
            limit: 10,
        })
    };
    let one_route = Filters {
        route: Some(measured.routes[0].0),
        ..Default::default()
    };
    let queries = [
        ("totals, 24 h", QueryKind::Totals(day, Filters::default())),
        (
            "series by minute, 24 h",
            series(day, Bucket::Minute, None, Filters::default()),
        ),
        (
            "series by hour per status, 7 d",
            series(
                whole_week,
                Bucket::Hour,
                Some(Dimension::Status),
                Filters::default(),
            ),
        ),
        (
            "series by hour, one route, 7 d",
            series(whole_week, Bucket::Hour, None, one_route),
        ),
        ("top 10 routes, 24 h", top(day, Dimension::Route)),
        (
            "top 10 consumers, 7 d",
            top(whole_week, Dimension::Consumer),
        ),
        ("top 10 services, 7 d", top(whole_week, Dimension::Service)),
    ];
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut lines = String::new();
    for (name, query) in &queries {
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
        for _ in 0..runs {
            timed(
                query,
                &db.store,
                measured.organization,
                &mut [&mut histogram, &mut all],
            )
            .await?;
        }
        lines.push_str(&format!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            query.tables(),
            ms_at(&histogram, 0.5),
            ms_at(&histogram, 0.95),
            histogram.max() as f64 / 1000.0,
        ));
    }
    Ok(format!(
        "**Other API queries** (no goal of their own): ranges ending at the millisecond the run \
         began, so every piece of the plan is exercised, and shapes the console does not ask \
         for.\n\n\
         | query | reads | p50 | p95 | max |\n|---|---|---|---|---|\n{lines}\
         | **all** | | {:.1} ms | **{:.1} ms** | {:.1} ms |\n",
        ms_at(&all, 0.5),
        ms_at(&all, 0.95),
        all.max() as f64 / 1000.0,
    ))
}

/// Requests sent by the freshness scenario, one every [`FRESHNESS_INTERVAL`].
const FRESHNESS_REQUESTS: usize = 300;
const FRESHNESS_INTERVAL: Duration = Duration::from_millis(50);
/// How often the scenario looks for new rows: the resolution of its figures.
const FRESHNESS_POLL: Duration = Duration::from_millis(100);

/// From a request answered by a real edge to its row being queryable in ClickHouse, with the
/// production settings of `tollgate edge` (batches flushed every second) and `tollgate ingest`
/// (fetches wait up to 0.5 s): edge in-process on NATS, the ingest loop, ClickHouse.
async fn freshness(options: &Options) -> anyhow::Result<String> {
    let db = BenchDb::create(&options.clickhouse_url).await?;
    let prefix = format!("tgfresh{}", &Uuid::new_v4().simple().to_string()[..10]);
    let result = freshness_in(options, &db, &prefix).await;
    db.drop_database().await;
    delete_stream(&options.nats_url, &prefix).await;
    result
}

async fn freshness_in(options: &Options, db: &BenchDb, prefix: &str) -> anyhow::Result<String> {
    use tollgate_model::entity::{build, Build};
    use tollgate_model::{Route, Service, Snapshot};

    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&options.nats_url, prefix).await?);
    let upstream = ok_upstream().await?;
    let service = build::<Service>(
        Build::Create { id: Uuid::now_v7() },
        &serde_json::json!({ "name": "fresh", "url": format!("http://{upstream}/") }),
        1,
    )
    .map_err(|e| anyhow::anyhow!("service: {e:?}"))?;
    let route = build::<Route>(
        Build::Create { id: Uuid::now_v7() },
        &serde_json::json!({ "name": "fresh", "paths": ["/"], "service": { "id": service.id } }),
        1,
    )
    .map_err(|e| anyhow::anyhow!("route: {e:?}"))?;
    let organization = Uuid::now_v7();
    let host = "fresh.example.com";
    let snapshot = Snapshot::compile(
        Uuid::now_v7(),
        organization,
        1,
        vec![host.to_string()],
        vec![service],
        vec![route],
    );
    let region = "bench";
    bus.publish_snapshot(region, &snapshot).await?;
    let dir = tempfile::tempdir()?;
    let edge = tollgate_edge::start(
        tollgate_edge::EdgeConfig {
            header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
            proxy_listen: "127.0.0.1:0".parse()?,
            proxy_tls_listen: None,
            master_key: None,
            status_listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().to_path_buf(),
            region: region.into(),
            control_plane: None,
            heartbeat_interval: Duration::from_secs(5),
            binary_version: "bench".into(),
            request_logs: tollgate_edge::RequestLogConfig::default(),
        },
        bus.clone(),
    )
    .await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let ingester = tokio::spawn(ingest::run(
        bus.log_queue("ingest").await?,
        db.store.clone(),
        IngestConfig::default(),
        Arc::new(IngestMetrics::new()),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder().no_proxy().build()?;
    let ready = Instant::now();
    loop {
        let status = client
            .get(format!("http://{}/status/ready", edge.status_addr))
            .send()
            .await
            .map(|r| r.status().is_success());
        if let Ok(true) = status {
            break;
        }
        if ready.elapsed() > Duration::from_secs(20) {
            bail!("the edge did not load its config in 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; FRESHNESS_REQUESTS]));
    let sender = {
        let sent = sent.clone();
        let client = client.clone();
        let proxy = edge.proxy_addr;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRESHNESS_INTERVAL);
            for n in 0..FRESHNESS_REQUESTS {
                tick.tick().await;
                let response = client
                    .get(format!("http://{proxy}/fresh/{n}"))
                    .header("host", host)
                    .header("x-request-id", format!("fresh-{n}"))
                    .send()
                    .await;
                if let Ok(response) = response {
                    let _ = response.bytes().await;
                    // Answered: from here the log line is the edge's to deliver.
                    sent.lock().map(|mut s| s[n] = Some(Instant::now())).ok();
                }
            }
        })
    };
    let mut delays: Vec<Option<Duration>> = vec![None; FRESHNESS_REQUESTS];
    let deadline = Instant::now() + Duration::from_secs(60) + FRESHNESS_INTERVAL * 300;
    while delays.iter().any(Option::is_none) && Instant::now() < deadline {
        tokio::time::sleep(FRESHNESS_POLL).await;
        let seen = db
            .sql(&format!(
                "SELECT request_id FROM request_logs WHERE organization_id = toUUID('{organization}')"
            ))
            .await?;
        let now = Instant::now();
        let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
        for id in seen.lines() {
            let Some(n) = id
                .strip_prefix("fresh-")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let (Some(slot), Some(Some(at))) = (delays.get_mut(n), sent.get(n)) {
                if slot.is_none() {
                    *slot = Some(now.saturating_duration_since(*at));
                }
            }
        }
    }
    let _ = sender.await;
    let _ = stop.send(());
    let _ = ingester.await;
    edge.shutdown().await;

    let mut seen: Vec<Duration> = delays.iter().flatten().copied().collect();
    let missing = FRESHNESS_REQUESTS - seen.len();
    if seen.is_empty() {
        bail!("no request became visible within the deadline");
    }
    seen.sort();
    let at = |p: f64| seen[((seen.len() as f64 * p).ceil() as usize).clamp(1, seen.len()) - 1];
    let (p50, p95, max) = (at(0.50), at(0.95), seen[seen.len() - 1]);
    let goal = if missing == 0 && p95 < Duration::from_secs(5) {
        "met"
    } else {
        "not met"
    };
    Ok(format!(
        "```sh\ntarget/release/analytics_bench freshness\n```\n\n\
         {FRESHNESS_REQUESTS} requests through an edge (one every {interval} ms) with `tollgate edge`'s default log settings (flush every 1 s) and `tollgate ingest`'s (fetch wait 0.5 s); each request's row looked for in ClickHouse every {poll} ms from the moment its answer arrived. The rollups the dashboard reads are written by the same insert.\n\n\
         | date | requests | never visible | p50 | p95 | max | goal p95 < 5 s |\n\
         |---|---|---|---|---|---|---|\n\
         | {date} | {FRESHNESS_REQUESTS} | {missing} | {p50} ms | {p95} ms | {max} ms | {goal} |\n",
        interval = FRESHNESS_INTERVAL.as_millis(),
        poll = FRESHNESS_POLL.as_millis(),
        date = Utc::now().format("%Y-%m-%d"),
        p50 = p50.as_millis(),
        p95 = p95.as_millis(),
        max = max.as_millis(),
    ))
}

/// An upstream that answers `ok` to everything, on a free port.
async fn ok_upstream() -> anyhow::Result<std::net::SocketAddr> {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
