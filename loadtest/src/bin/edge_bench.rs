//! Side-by-side benchmark of the edge against nginx, HAProxy and direct calls to the upstream.
//! Each scenario starts what it needs, drives load with [`tollgate_loadtest::driver`] and prints
//! a Markdown table; `--write` puts the tables into `loadtest/RESULTS.md`.
//!
//! ```sh
//! cargo build --release -p tollgate -p tollgate-loadtest
//! loadtest/bench                               # installs the peers, builds, runs all, writes RESULTS.md
//! target/release/edge_bench --write            # every scenario
//! target/release/edge_bench plain latency      # some of them
//! target/release/edge_bench config --upstream 127.0.0.1:9100   # the plain scenario's config
//! ```
//!
//! `config` publishes the `plain` scenario's snapshot (one `/` route to `--upstream`, or with
//! `--routes 10000` the `routes` scenario's `/r0` … `/r9999`) on NATS under a fresh prefix and prints the `tollgate edge` command line that serves it, for running
//! the edge by hand under a profiler (see DEVELOPERS.md).
//!
//! Needs NATS on 127.0.0.1:4222 (or `--nats-url`) and Debian's nginx and haproxy packages.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tollgate_bus::{Bus, NatsBus};
use tollgate_loadtest::driver::{self, Load, Outcome, Protocol, Target};
use tollgate_loadtest::peers::{self, EdgeProcess, Headers, Peer};
use tollgate_model::entity::{build, Build};
use tollgate_model::secret::MasterKey;
use tollgate_model::{Certificate, Entities, Route, Service, Snapshot, Sni};
use uuid::Uuid;

const HOST: &str = "bench.local";
const SCENARIOS: &[&str] = &[
    "plain", "latency", "rate", "routes", "swaps", "h2tls", "logging",
];

struct Options {
    scenarios: Vec<String>,
    duration: Duration,
    warmup: Duration,
    users: usize,
    rate: u64,
    threads: usize,
    /// Measured runs per peer; the median by requests/s is reported.
    rounds: usize,
    /// Snapshots of 10,000 routes published to a running edge in the `routes` scenario.
    applies: usize,
    /// The pause before each of those applies. Config changes come seconds or minutes apart, and
    /// the allocator hands memory nobody reused within a second back to the OS: applies back to
    /// back would reuse memory that a real one has to fault in again.
    apply_gap: Duration,
    nats_url: String,
    write: bool,
    /// Another `tollgate` binary to run beside the edge in the `plain` scenario, to compare two
    /// builds of the edge in the same rounds (a profile, a change). Not written to RESULTS.md.
    also_edge: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        scenarios: Vec::new(),
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        users: 64,
        rate: 5000,
        threads: 1,
        rounds: 3,
        applies: 25,
        apply_gap: Duration::from_secs(2),
        nats_url: "nats://127.0.0.1:4222".into(),
        write: false,
        also_edge: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--duration" => options.duration = Duration::from_secs(value("--duration")?.parse()?),
            "--warmup" => options.warmup = Duration::from_secs(value("--warmup")?.parse()?),
            "--users" => options.users = value("--users")?.parse()?,
            "--rate" => options.rate = value("--rate")?.parse()?,
            "--threads" => options.threads = value("--threads")?.parse()?,
            "--rounds" => options.rounds = value("--rounds")?.parse::<usize>()?.max(1),
            "--applies" => options.applies = value("--applies")?.parse::<usize>()?.max(1),
            "--apply-gap" => {
                let given = value("--apply-gap")?;
                let seconds: f64 = given
                    .parse()
                    .with_context(|| format!("--apply-gap {given}: seconds, 0 or more"))?;
                options.apply_gap = Duration::try_from_secs_f64(seconds)
                    .with_context(|| format!("--apply-gap {seconds}: seconds, 0 or more"))?
            }
            "--nats-url" => options.nats_url = value("--nats-url")?,
            "--write" => options.write = true,
            "--also-edge" => options.also_edge = Some(value("--also-edge")?.into()),
            "--help" | "-h" => {
                println!("edge_bench [--write] [--duration S] [--warmup S] [--users N] [--rate R] [--threads T] [--rounds N] [--applies N] [--apply-gap S] [--nats-url URL] [--also-edge TOLLGATE_BINARY] [{}]", SCENARIOS.join("|"));
                std::process::exit(0);
            }
            s if SCENARIOS.contains(&s) => options.scenarios.push(s.to_string()),
            other => bail!(
                "unknown argument '{other}'; scenarios: {}",
                SCENARIOS.join(", ")
            ),
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    if let Some(binary) = &options.also_edge {
        if options.write {
            bail!(
                "--also-edge compares builds and is not written to RESULTS.md: leave out --write"
            );
        }
        if !binary.is_file() {
            bail!("--also-edge {}: no such file", binary.display());
        }
        if !options.scenarios.iter().any(|s| s == "plain") {
            bail!("--also-edge runs in the plain scenario only: name it (edge_bench plain --also-edge …)");
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("upstream") => return tollgate_loadtest::upstream::serve_from_args(args.collect()),
        Some("config") => {
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(print_config(args.collect()));
        }
        _ => {}
    }
    let options = parse_args()?;
    // The driver gets one thread: the machine's other cores are for the peer under test.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

/// `config --upstream ADDR [--nats-url URL] [--request-logs on|off] [--routes N]`: publishes the
/// plain (or, with `--routes`, the routes) scenario's snapshot and prints how to start an edge
/// serving it.
async fn print_config(args: Vec<String>) -> anyhow::Result<()> {
    let mut upstream: Option<std::net::SocketAddr> = None;
    let mut nats_url = "nats://127.0.0.1:4222".to_string();
    let mut request_logs = "off".to_string();
    let mut routes = 1;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upstream" => upstream = Some(args.next().context("--upstream ADDR")?.parse()?),
            "--nats-url" => nats_url = args.next().context("--nats-url URL")?,
            "--request-logs" => request_logs = args.next().context("--request-logs on|off")?,
            "--routes" => routes = args.next().context("--routes N")?.parse()?,
            other => bail!("config: unknown argument '{other}'"),
        }
    }
    let upstream = upstream.context("config: --upstream ADDR is required")?;
    let prefix = format!("bench{}", Uuid::new_v4().simple());
    let bus = NatsBus::connect(&nats_url, &prefix)
        .await
        .with_context(|| format!("NATS at {nats_url}"))?;
    let mut config = EdgeConfig {
        bus: Arc::new(bus),
        control_plane: Uuid::now_v7(),
        service: service(&format!("http://{upstream}")),
        routes: route_set(routes),
        certificate: None,
        version: 0,
        first_applied_in: Duration::ZERO,
    };
    config.publish().await?;
    println!(
        "tollgate --worker-threads 1 edge --nats-url {nats_url} --nats-prefix {prefix} \
         --control-plane {} --request-logs {request_logs} \
         --proxy-listen 127.0.0.1:PORT --status-listen 127.0.0.1:PORT --data-dir DIR",
        config.control_plane
    );
    Ok(())
}

/// Everything a scenario shares: the upstream, certificates, NATS and the edge binary.
struct Bench {
    options: Options,
    dir: tempfile::TempDir,
    upstream: Peer,
    cert_pem: PathBuf,
    key_pem: PathBuf,
    combined_pem: PathBuf,
    cert: String,
    key: String,
    master_key: MasterKey,
    tollgate: PathBuf,
    /// NATS prefixes of the edges started, so their request log streams can be deleted.
    prefixes: std::sync::Mutex<Vec<String>>,
}

async fn run(options: Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tollgate = peers::tollgate_binary()?;
    let upstream = peers::upstream(options.threads)?;
    let certified = rcgen::generate_simple_self_signed(vec![HOST.to_string()])?;
    let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let cert_pem = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    let combined_pem = dir.path().join("combined.pem");
    std::fs::write(&cert_pem, &cert)?;
    std::fs::write(&key_pem, &key)?;
    std::fs::write(&combined_pem, format!("{cert}{key}"))?;
    let bench = Bench {
        master_key: MasterKey::generate()?,
        options,
        dir,
        upstream,
        cert_pem,
        key_pem,
        combined_pem,
        cert,
        key,
        tollgate,
        prefixes: std::sync::Mutex::new(Vec::new()),
    };
    let mut sections = Vec::new();
    for scenario in bench.options.scenarios.clone() {
        eprintln!("== {scenario}");
        let section = match scenario.as_str() {
            "plain" => plain(&bench).await?,
            "latency" => latency(&bench).await?,
            "rate" => fixed_rate(&bench).await?,
            "routes" => many_routes(&bench).await?,
            "swaps" => swaps(&bench).await?,
            "h2tls" => h2_and_tls(&bench).await?,
            "logging" => logging(&bench).await?,
            _ => unreachable!("scenarios are checked when parsed"),
        };
        println!("{section}");
        sections.push((scenario, section));
    }
    bench.delete_log_streams().await;
    if bench.options.write {
        tollgate_loadtest::report::write_sections(&sections)?;
        eprintln!("wrote loadtest/RESULTS.md");
    }
    Ok(())
}

impl Bench {
    fn target(&self, addr: std::net::SocketAddr, protocol: Protocol, paths: Vec<String>) -> Target {
        Target {
            addr,
            host: HOST.into(),
            paths: Arc::new(paths),
            protocol,
        }
    }

    fn nginx(&self, locations: &[String], headers: Headers) -> anyhow::Result<Peer> {
        let dir = self
            .dir
            .path()
            .join(format!("nginx-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        peers::nginx(
            &dir,
            self.upstream.addr,
            self.options.threads,
            &self.cert_pem,
            &self.key_pem,
            locations,
            headers,
        )
    }

    fn haproxy(&self) -> anyhow::Result<Peer> {
        peers::haproxy(
            self.dir.path(),
            self.upstream.addr,
            self.options.threads,
            &self.combined_pem,
        )
    }

    /// An edge dedicated to one control plane whose snapshot is published on NATS first, with
    /// request logs off.
    async fn edge(&self, routes: usize) -> anyhow::Result<(Peer, EdgeConfig)> {
        // Like for like: the nginx and HAProxy peers keep no access log, so neither does the edge
        // here; the `logging` scenario measures what request logs cost.
        self.edge_with_logs(routes, false).await
    }

    async fn edge_with_logs(
        &self,
        routes: usize,
        request_logs: bool,
    ) -> anyhow::Result<(Peer, EdgeConfig)> {
        self.edge_from(&self.tollgate, routes, request_logs).await
    }

    /// An edge run from `binary`, serving `routes` routes once it has applied them.
    async fn edge_from(
        &self,
        binary: &Path,
        routes: usize,
        request_logs: bool,
    ) -> anyhow::Result<(Peer, EdgeConfig)> {
        let prefix = format!("bench{}", Uuid::new_v4().simple());
        if let Ok(mut prefixes) = self.prefixes.lock() {
            prefixes.push(prefix.clone());
        }
        let bus = NatsBus::connect(&self.options.nats_url, &prefix)
            .await
            .with_context(|| format!("NATS at {}", self.options.nats_url))?;
        let config = EdgeConfig {
            bus: Arc::new(bus),
            control_plane: Uuid::now_v7(),
            service: service(&format!("http://{}", self.upstream.addr)),
            routes: route_set(routes),
            certificate: None,
            version: 0,
            first_applied_in: Duration::ZERO,
        };
        let mut config = config.with_certificate(self, &self.cert, &self.key)?;
        config.publish().await?;
        let data_dir = self.dir.path().join(format!("edge-{prefix}"));
        let spawned = Instant::now();
        let peer = peers::edge(&EdgeProcess {
            binary,
            data_dir: &data_dir,
            nats_url: &self.options.nats_url,
            nats_prefix: &prefix,
            control_plane: config.control_plane,
            threads: self.options.threads,
            master_key_hex: &self.master_key.to_hex(),
            request_logs,
        })?;
        wait_for_version(&peer, config.version, Duration::from_secs(30)).await?;
        config.first_applied_in = spawned.elapsed();
        Ok((peer, config))
    }
}

impl Bench {
    /// The edges' request logs are kept by JetStream for a week; a benchmark's are of no use
    /// after it and weigh hundreds of MB.
    async fn delete_log_streams(&self) {
        let prefixes = self.prefixes.lock().map(|p| p.clone()).unwrap_or_default();
        let Ok(client) = async_nats::connect(&self.options.nats_url).await else {
            eprintln!("cannot reach NATS to delete the benchmark's request log streams");
            return;
        };
        let jetstream = async_nats::jetstream::new(client);
        for prefix in prefixes {
            // An edge that never published has no stream.
            let _ = jetstream.delete_stream(format!("{prefix}_logs")).await;
        }
    }
}

/// The edge's config as the benchmark changes it.
struct EdgeConfig {
    bus: Arc<dyn Bus>,
    control_plane: Uuid,
    service: Service,
    routes: Vec<Route>,
    certificate: Option<(Certificate, Sni)>,
    version: i64,
    /// From starting the edge's process to its `/status` showing the first version.
    first_applied_in: Duration,
}

impl EdgeConfig {
    fn with_certificate(mut self, bench: &Bench, cert: &str, key: &str) -> anyhow::Result<Self> {
        let sealed = bench.master_key.seal(self.control_plane, key)?;
        let certificate: Certificate = build(
            Build::Create { id: Uuid::now_v7() },
            &json!({"cert": cert, "key": sealed}),
            1,
        )
        .map_err(|e| anyhow::anyhow!("benchmark certificate: {e}"))?;
        let sni: Sni = build(
            Build::Create { id: Uuid::now_v7() },
            &json!({"name": HOST, "certificate": {"id": certificate.id}}),
            1,
        )
        .map_err(|e| anyhow::anyhow!("benchmark SNI: {e}"))?;
        self.certificate = Some((certificate, sni));
        Ok(self)
    }

    fn snapshot(&self) -> Snapshot {
        let (certificates, snis) = match &self.certificate {
            Some((c, s)) => (vec![c.clone()], vec![s.clone()]),
            None => (vec![], vec![]),
        };
        let routes = self
            .routes
            .iter()
            .cloned()
            .map(|mut r| {
                r.service = Some(tollgate_model::ForeignKey {
                    id: self.service.id,
                });
                r
            })
            .collect();
        Snapshot::of(
            self.control_plane,
            Uuid::nil(),
            self.version,
            vec![HOST.into()],
            Entities {
                services: vec![self.service.clone()],
                routes,
                certificates,
                snis,
                ..Entities::default()
            },
        )
    }

    /// Publishes the next version.
    async fn publish(&mut self) -> anyhow::Result<i64> {
        self.version += 1;
        self.bus
            .publish_snapshot("default", &self.snapshot())
            .await?;
        Ok(self.version)
    }
}

fn service(url: &str) -> Service {
    build(
        Build::Create { id: Uuid::now_v7() },
        &json!({ "url": url }),
        1,
    )
    .unwrap_or_else(|e| panic!("benchmark service {url}: {e}"))
}

fn route(input: serde_json::Value) -> Route {
    build(Build::Create { id: Uuid::now_v7() }, &input, 1)
        .unwrap_or_else(|e| panic!("benchmark route: {e}"))
}

/// One catch-all route, or `n` routes `/r0` … with the path kept.
fn route_set(n: usize) -> Vec<Route> {
    if n <= 1 {
        return vec![route(json!({"paths": ["/"], "strip_path": false}))];
    }
    (0..n)
        .map(|i| route(json!({"paths": [format!("/r{i}")], "strip_path": false})))
        .collect()
}

async fn wait_for_version(peer: &Peer, version: i64, within: Duration) -> anyhow::Result<Duration> {
    let status = peer.status_addr.context("the edge has a status listener")?;
    let url = format!("http://{status}/status");
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(response) = client.get(&url).send().await {
            if let Ok(body) = response.json::<serde_json::Value>().await {
                let applied = body["control_planes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|cp| cp["version"].as_i64() == Some(version));
                if applied {
                    return Ok(start.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("the edge did not apply version {version} within {within:?}")
}

struct Row {
    name: String,
    outcome: Outcome,
    cpu: Option<Duration>,
    rss_kib: Option<u64>,
}

fn row(name: &str, outcome: Outcome, peer: Option<&Peer>, cpu_before: Duration) -> Row {
    Row {
        name: name.into(),
        cpu: peer.map(|p| p.cpu_time().saturating_sub(cpu_before)),
        rss_kib: peer.map(Peer::peak_rss_kib),
        outcome,
    }
}

/// Warms up, then measures `rounds` times and keeps the median run by requests/s (a shared VM's
/// neighbours make single runs swing); CPU time counts only the measured run it reports.
async fn measure(
    bench: &Bench,
    name: &str,
    peer: Option<&Peer>,
    target: &Target,
    load: Load,
) -> anyhow::Result<Row> {
    let (rows, _) = interleaved(bench, &[(name, peer, target.clone())], load).await?;
    rows.into_iter().next().context("a measured peer has a row")
}

fn table(rows: &[Row], baseline: &str) -> String {
    use std::fmt::Write;
    let base = rows
        .iter()
        .find(|r| r.name == baseline)
        .map(|r| r.outcome.rps());
    let mut out = format!(
        "| peer | req/s | vs {baseline} | p50 | p99 | p99.9 | errors | CPU per request | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let o = &r.outcome;
        let ratio = base.map_or("".into(), |b| format!("{:.2}", o.rps() / b));
        let cpu = r.cpu.map_or("–".into(), |c| {
            let per = c.as_secs_f64() * 1e6 / (o.requests.max(1) as f64);
            format!("{per:.1} µs")
        });
        let rss = r
            .rss_kib
            .map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            o.rps(),
            ratio,
            us(o.percentile_us(0.50)),
            us(o.percentile_us(0.99)),
            us(o.percentile_us(0.999)),
            o.errors,
            cpu,
            rss
        );
    }
    out
}

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1000.0)
    } else {
        format!("{v} µs")
    }
}

fn header(bench: &Bench, title: &str, what: &str, scenario: &str) -> String {
    let o = &bench.options;
    format!(
        "### {title}\n\n{what}\n\nRun {date}: {threads} worker thread(s) per peer, warm-up {w} s, then {r} runs of {d} s; the median run by requests/s is shown. \
         Command: `loadtest/bench {scenario} --duration {d} --warmup {w} --rounds {r} --users {u} --threads {threads}`.\n\n",
        u = o.users,
        date = chrono::Utc::now().format("%Y-%m-%d"),
        threads = o.threads,
        w = o.warmup.as_secs(),
        r = o.rounds,
        d = o.duration.as_secs(),
    )
}

/// Measures each of `peers` under `load` in turns: every peer is warmed up, then each round runs
/// every peer once, one after another (every other round in reverse), so that a shared VM's slow
/// minutes fall on all of them alike. Each peer's row is its median round by requests/s; the
/// second value is, per round, each peer's requests/s over the first peer's.
async fn interleaved(
    bench: &Bench,
    peers: &[(&str, Option<&Peer>, Target)],
    load: Load,
) -> anyhow::Result<(Vec<Row>, Vec<Vec<f64>>)> {
    for (_, _, target) in peers {
        driver::run(target, load, Duration::ZERO, bench.options.warmup).await?;
    }
    let mut runs: Vec<Vec<Row>> = peers.iter().map(|_| Vec::new()).collect();
    let mut ratios = Vec::new();
    for n in 0..bench.options.rounds {
        // Every other round runs the peers in reverse order, so that a machine slowing down or
        // speeding up within a round does not favour the same peer each time.
        let order: Vec<usize> = match n % 2 {
            0 => (0..peers.len()).collect(),
            _ => (0..peers.len()).rev().collect(),
        };
        let mut round = vec![0.0; peers.len()];
        for i in order {
            let (name, peer, target) = &peers[i];
            let before = peer.map(Peer::cpu_time).unwrap_or_default();
            let outcome = driver::run(target, load, Duration::ZERO, bench.options.duration).await?;
            eprintln!(
                "   {name}: {:.0} req/s, p99 {} µs, errors {}",
                outcome.rps(),
                outcome.percentile_us(0.99),
                outcome.errors
            );
            round[i] = outcome.rps();
            runs[i].push(row(name, outcome, *peer, before));
        }
        ratios.push(round.iter().map(|rps| rps / round[0]).collect());
    }
    let rows = runs.into_iter().map(median_run).collect();
    Ok((rows, ratios))
}

/// The upstream called directly, then the edge, nginx and HAProxy (one `/` route each), and any
/// `more` peers, all under `load` over HTTP/1.1, in turns; with each round's edge-to-nginx ratio,
/// and each round's requests/s of every peer as a share of direct's.
async fn four_peers(
    bench: &Bench,
    load: Load,
    more: &[&Peer],
) -> anyhow::Result<(Vec<Row>, Vec<f64>, Vec<Vec<f64>>)> {
    let (edge, _config) = bench.edge(1).await?;
    let nginx = bench.nginx(&["/".to_string()], Headers::LikeTheEdge)?;
    let haproxy = bench.haproxy()?;
    let paths = vec!["/".to_string()];
    let direct = bench.target(bench.upstream.addr, Protocol::Http1, paths.clone());
    let mut peers = vec![("direct", None, direct)];
    for peer in [&edge, &nginx, &haproxy]
        .into_iter()
        .chain(more.iter().copied())
    {
        let target = bench.target(peer.addr, Protocol::Http1, paths.clone());
        peers.push((peer.name, Some(peer), target));
    }
    let (rows, ratios) = interleaved(bench, &peers, load).await?;
    // Peers 1 and 2 are the edge and nginx.
    let edge_to_nginx = ratios.iter().map(|round| round[1] / round[2]).collect();
    Ok((rows, edge_to_nginx, ratios))
}

/// "Edge to nginx, round by round: 1.02, 0.97, 1.04 (median 1.02)."
fn round_ratios(ratios: &[f64]) -> String {
    format!(
        "\nEdge to nginx, round by round (each round runs every peer once, one after another, every other round in reverse order): {}.\n",
        listed_with_median(ratios)
    )
}

/// "1.02, 0.97, 1.04 (median 1.02)"
fn listed_with_median(ratios: &[f64]) -> String {
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("{} (median {:.2})", listed.join(", "), median(ratios))
}

/// The middle value (the upper one of an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The run with the median requests/s (the upper one of an even count).
fn median_run(mut runs: Vec<Row>) -> Row {
    runs.sort_by(|a, b| a.outcome.rps().total_cmp(&b.outcome.rps()));
    runs.swap_remove(runs.len() / 2)
}

async fn plain(bench: &Bench) -> anyhow::Result<String> {
    let users = bench.options.users;
    // What the header work costs nginx, for reference.
    let bare = bench.nginx(&["/".to_string()], Headers::ForwardingOnly)?;
    let mut more = vec![&bare];
    let also = match &bench.options.also_edge {
        Some(binary) => {
            let (mut peer, _config) = bench.edge_from(binary, 1, false).await?;
            // Named once per run; the name lives as long as the process.
            peer.name = Box::leak(format!("Tollgate edge from {}", binary.display()).into());
            Some(peer)
        }
        None => None,
    };
    more.extend(&also);
    let (rows, ratios, rounds) = four_peers(bench, Load::Closed { users }, &more).await?;
    let also_ratios = match &also {
        // It is the last peer; the edge is the first after direct.
        Some(_) => format!(
            "\nThat edge to this one, round by round: {}.\n",
            listed_with_median(
                &rounds
                    .iter()
                    .map(|r| r[r.len() - 1] / r[1])
                    .collect::<Vec<_>>()
            )
        ),
        None => String::new(),
    };
    Ok(header(
        bench,
        "Plain proxy, HTTP/1.1 keep-alive",
        &format!(
            "{users} concurrent users (closed loop), `GET /` answered with 1 KiB by the upstream. \
             nginx and HAProxy add the headers the edge adds (`loadtest/src/peers.rs`); the last \
             row is nginx adding only `Host` and `X-Forwarded-For/Proto`."
        ),
        "plain",
    ) + &table(&rows, "nginx")
        + &round_ratios(&ratios)
        + &also_ratios)
}

async fn latency(bench: &Bench) -> anyhow::Result<String> {
    let (rows, _, _) = four_peers(bench, Load::Closed { users: 1 }, &[]).await?;
    let direct = &rows[0].outcome;
    let mut added = String::from("\nAdded latency (peer minus direct, same percentile):\n\n| peer | p50 | p99 | p99.9 |\n|---|---|---|---|\n");
    for r in &rows[1..] {
        let d = |q: f64| r.outcome.percentile_us(q) as i64 - direct.percentile_us(q) as i64;
        added.push_str(&format!(
            "| {} | {} µs | {} µs | {} µs |\n",
            r.name,
            d(0.5),
            d(0.99),
            d(0.999)
        ));
    }
    Ok(header(
        bench,
        "Added latency at concurrency 1",
        "One user sending requests back to back over one keep-alive connection.",
        "latency",
    ) + &table(&rows, "direct")
        + &added)
}

async fn fixed_rate(bench: &Bench) -> anyhow::Result<String> {
    let rate = bench.options.rate;
    let load = Load::Open {
        rate,
        connections: 64,
    };
    let (rows, _, _) = four_peers(bench, load, &[]).await?;
    Ok(header(
        bench,
        &format!("Fixed rate: {rate} requests/s"),
        "Open loop over up to 64 keep-alive connections; latency counts from when each request was due (no coordinated omission).",
        &format!("--rate {rate} rate"),
    ) + &table(&rows, "nginx"))
}

async fn many_routes(bench: &Bench) -> anyhow::Result<String> {
    const ROUTES: usize = 10_000;
    let users = bench.options.users;
    let paths: Vec<String> = {
        // Spread over every route, in a fixed shuffled order so neighbours differ.
        let mut p: Vec<String> = (0..ROUTES)
            .map(|i| format!("/r{}", (i * 7919) % ROUTES))
            .collect();
        p.dedup();
        p
    };
    let (edge_one, _c1) = bench.edge(1).await?;
    let started = Instant::now();
    let (edge_many, mut config) = bench.edge(ROUTES).await?;
    let first_apply = started.elapsed();
    let locations: Vec<String> = (0..ROUTES).map(|i| format!("/r{i}")).collect();
    let nginx = bench.nginx(&locations, Headers::LikeTheEdge)?;
    let peers = [
        ("Tollgate edge, 1 route", Some(&edge_one)),
        ("Tollgate edge, 10,000 routes", Some(&edge_many)),
        ("nginx, 10,000 locations", Some(&nginx)),
    ]
    .map(|(name, peer)| {
        let addr = peer.map_or(bench.upstream.addr, |p| p.addr);
        (
            name,
            peer,
            bench.target(addr, Protocol::Http1, paths.clone()),
        )
    });
    let (rows, ratios) = interleaved(bench, &peers, Load::Closed { users }).await?;
    drop(edge_one);
    drop(nginx);
    // Round by round, the 10,000-route edge against the 1-route edge measured just before it.
    let costs: Vec<f64> = ratios.iter().map(|round| 1.0 - round[1]).collect();
    let listed = costs
        .iter()
        .map(|c| format!("{:.1}%", c * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    let cost = median(&costs);
    // Apply time of a 10,000-route snapshot on a running edge: publish to applied, as /status
    // shows it (includes the NATS notification and the fetch of the packed body). Each version
    // adds a route, so every apply is a real change (the same content under a new number would
    // be one too, but a cheaper one to optimize for), and comes `--apply-gap` after the last, as
    // config changes do. After each, the edge's own account of that apply (its phases) from
    // /status.
    let mut applies = Vec::new();
    let mut phases: Vec<(&str, Vec<Duration>)> =
        APPLY_PHASES.iter().map(|p| (*p, Vec::new())).collect();
    for n in 0..bench.options.applies {
        tokio::time::sleep(bench.options.apply_gap).await;
        config.routes.push(route(
            json!({"paths": [format!("/added{n}")], "strip_path": false}),
        ));
        let version = config.publish().await?;
        let took = wait_for_version(&edge_many, version, Duration::from_secs(30)).await?;
        let report = apply_report(&edge_many, config.control_plane, version).await;
        eprintln!(
            "   apply v{version}: {:.1} ms; edge: {}",
            took.as_secs_f64() * 1000.0,
            report.as_ref().map_or("no phase report".into(), |r| r
                .iter()
                .map(|(phase, d)| format!("{phase} {:.1}", d.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")),
        );
        applies.push(took);
        for (phase, took) in report.into_iter().flatten() {
            if let Some((_, all)) = phases.iter_mut().find(|(p, _)| *p == phase) {
                all.push(took);
            }
        }
    }
    drop(edge_many);
    let json = serde_json::to_vec(&config.snapshot())?;
    let body_sizes = format!(
        "{:.1} MB of JSON, {:.0} KB packed as it travels",
        json.len() as f64 / 1e6,
        tollgate_bus::packing::pack(&json).len() as f64 / 1e3
    );
    let phase_text = phases
        .iter()
        .filter(|(_, all)| !all.is_empty())
        .map(|(phase, all)| format!("{phase} {}", spread(all)))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(header(bench, "10,000 routes", &format!("{users} users; requests spread over `/r0` … `/r9999` (one route per path); the 1-route edge serves the same paths with one `/` route."), "routes")
        + &table(&rows, "Tollgate edge, 1 route")
        + &format!(
            "\nCost of 10,000 routes: {:.1}% of requests/s, the median of the rounds' costs ({listed}; each round runs the three peers one after another, every other round in reverse order) (goal < 5%).\n\nSnapshot of 10,000 routes ({body_sizes}; each version adds one), publish on NATS to applied (`/status`), {} runs (`--applies`) {:.1} s apart (`--apply-gap`): median / p95 / max {} (goal < 100 ms); \
             the first change after start, which needs memory for a second copy of the config, took {:.1} ms. \
             First start with it: {} ms from starting the process to applied ({} ms with publishing it first).\n\n\
             The edge's phases of those applies (median / p95 / max, from `/status`): {}.\n",
            cost * 100.0,
            applies.len(),
            bench.options.apply_gap.as_secs_f64(),
            spread(&applies),
            applies.first().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            config.first_applied_in.as_millis(),
            first_apply.as_millis(),
            if phase_text.is_empty() { "not reported".to_string() } else { phase_text },
        ))
}

/// The phases the edge reports for an apply, in the order they happen.
const APPLY_PHASES: &[&str] = &["fetch", "decode", "verify", "compile", "swap", "total"];

/// The edge's timing of applying `version`, from its `/status`; `None` from an edge that does
/// not report it (or already applied a newer version).
async fn apply_report(
    peer: &Peer,
    control_plane: Uuid,
    version: i64,
) -> Option<Vec<(String, Duration)>> {
    let status = peer.status_addr?;
    let body: serde_json::Value = reqwest::get(format!("http://{status}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let report = body["config_applies"].as_array()?.iter().find(|r| {
        r["control_plane_id"].as_str() == Some(&control_plane.to_string())
            && r["version"].as_i64() == Some(version)
    })?;
    Some(
        APPLY_PHASES
            .iter()
            .filter_map(|phase| {
                let seconds = report["seconds"][phase].as_f64()?;
                Some((phase.to_string(), Duration::from_secs_f64(seconds)))
            })
            .collect(),
    )
}

/// "median / p95 / max" of durations, in ms.
fn spread(durations: &[Duration]) -> String {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let at = |q: f64| {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1000.0
    };
    format!("{:.1} / {:.1} / {:.1} ms", at(0.5), at(0.95), at(1.0))
}

async fn swaps(bench: &Bench) -> anyhow::Result<String> {
    let users = bench.options.users.min(32);
    let (edge, mut config) = bench.edge(100).await?;
    let paths: Vec<String> = (0..100).map(|i| format!("/r{i}")).collect();
    let target = bench.target(edge.addr, Protocol::Http1, paths);
    let quiet = measure(
        bench,
        "no config changes",
        Some(&edge),
        &target,
        Load::Closed { users },
    )
    .await?;
    // One change per second for the whole run: each version adds a route, so every swap
    // compiles a new router while requests flow.
    let total = bench.options.warmup + bench.options.duration;
    let changer = {
        let mut applies = Vec::new();
        let start = Instant::now();
        let load = tokio::spawn({
            let target = target.clone();
            let (w, d) = (bench.options.warmup, bench.options.duration);
            async move { driver::run(&target, Load::Closed { users }, w, d).await }
        });
        let mut n = 0;
        while start.elapsed() + Duration::from_secs(1) < total {
            tokio::time::sleep(Duration::from_secs(1)).await;
            config
                .routes
                .push(route(json!({"paths": [format!("/swap{n}")]})));
            n += 1;
            let version = config.publish().await?;
            applies.push(wait_for_version(&edge, version, Duration::from_secs(10)).await?);
        }
        let outcome = load.await??;
        (outcome, applies)
    };
    let (outcome, mut applies) = changer;
    applies.sort();
    eprintln!(
        "   with changes: {:.0} req/s, p99 {} µs, errors {}",
        outcome.rps(),
        outcome.percentile_us(0.99),
        outcome.errors
    );
    let swaps_done = applies.len();
    let rows = vec![
        quiet,
        Row {
            name: format!("{swaps_done} config changes, 1 per second"),
            outcome,
            cpu: None,
            rss_kib: None,
        },
    ];
    Ok(header(bench, "Config changes under load", &format!("{users} users over 100 routes; then the same load while a new version (one more route) is published on NATS every second."), "swaps")
        + &table(&rows, "no config changes")
        + &format!(
            "\nFailed requests during the changes: {} (goal 0). Publish-to-applied: median {} ms, max {} ms.\n",
            rows[1].outcome.errors,
            applies.get(applies.len() / 2).map_or(0, |d| d.as_millis()),
            applies.last().map_or(0, |d| d.as_millis()),
        ))
}

async fn h2_and_tls(bench: &Bench) -> anyhow::Result<String> {
    let users = bench.options.users;
    let (edge, _config) = bench.edge(1).await?;
    let nginx = bench.nginx(&["/".to_string()], Headers::LikeTheEdge)?;
    let haproxy = bench.haproxy()?;
    let paths = vec!["/".to_string()];
    let mut out = header(bench, "HTTP/2 and TLS", &format!("{users} users; HTTP/2 multiplexes 16 users per connection; TLS 1.3 with a self-signed certificate chosen by SNI `{HOST}`; HTTP/1.1 to the upstream in every case."), "h2tls");
    for protocol in [Protocol::H2c, Protocol::Https1, Protocol::Https2] {
        let mut rows = Vec::new();
        for peer in [&edge, &nginx, &haproxy] {
            let addr = match protocol {
                Protocol::H2c => peer.h2c_addr,
                _ => peer.tls_addr.context("TLS listener")?,
            };
            let name = if peer.name == "Tollgate edge" {
                "Tollgate edge"
            } else {
                peer.name
            };
            rows.push(
                measure(
                    bench,
                    name,
                    Some(peer),
                    &bench.target(addr, protocol, paths.clone()),
                    Load::Closed { users },
                )
                .await?,
            );
        }
        out.push_str(&format!("\n{}:\n\n", protocol.label()));
        out.push_str(&table(&rows, "nginx"));
    }
    Ok(out)
}

/// A counter from an edge's `/metrics`, 0 when absent.
async fn edge_metric(peer: &Peer, series: &str) -> anyhow::Result<u64> {
    let status = peer.status_addr.context("the edge has a status listener")?;
    let text = reqwest::get(format!("http://{status}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// The plain-proxy load against an edge with request logs off and one with them on (publishing
/// to NATS under its own prefix), both running, measured in alternating rounds: this VM's speed
/// drifts by more than the 5% the goal allows within minutes, and alternating puts each pair of
/// rounds under the same drift.
async fn logging(bench: &Bench) -> anyhow::Result<String> {
    let users = bench.options.users;
    let paths = vec!["/".to_string()];
    let load = Load::Closed { users };
    let (off, _off_config) = bench.edge_with_logs(1, false).await?;
    let (on, _on_config) = bench.edge_with_logs(1, true).await?;
    let off_target = bench.target(off.addr, Protocol::Http1, paths.clone());
    let on_target = bench.target(on.addr, Protocol::Http1, paths);
    let (off_name, on_name) = (
        "Tollgate edge, request logs off",
        "Tollgate edge, request logs on",
    );
    driver::run(&off_target, load, Duration::ZERO, bench.options.warmup).await?;
    driver::run(&on_target, load, Duration::ZERO, bench.options.warmup).await?;
    let (mut off_runs, mut on_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // The NATS server shares these cores: what it spends storing the logs counts here too.
    let mut nats = [NatsShare::default(), NatsShare::default()];
    for round in 0..bench.options.rounds {
        // Which goes first alternates too.
        let order = if round % 2 == 0 {
            [(off_name, &off, &off_target), (on_name, &on, &on_target)]
        } else {
            [(on_name, &on, &on_target), (off_name, &off, &off_target)]
        };
        for (name, peer, target) in order {
            let before = peer.cpu_time();
            let nats_before = peers::cpu_time_of_named("nats-server");
            let outcome = driver::run(target, load, Duration::ZERO, bench.options.duration).await?;
            let nats_cpu = peers::cpu_time_of_named("nats-server")
                .zip(nats_before)
                .map(|(after, before)| after.saturating_sub(before));
            eprintln!(
                "   {name}: {:.0} req/s, NATS server CPU {}",
                outcome.rps(),
                nats_cpu.map_or("unknown".into(), |c| format!("{} ms", c.as_millis()))
            );
            nats[usize::from(name == on_name)].add(nats_cpu, outcome.requests);
            let measured = row(name, outcome, Some(peer), before);
            if name == off_name {
                off_runs.push(measured);
            } else {
                on_runs.push(measured);
            }
        }
        let pair = on_runs[round].outcome.rps() / off_runs[round].outcome.rps();
        ratios.push(pair);
    }
    let ratio = median(&ratios);
    // The edge's own CPU time per request over every round: what decides its requests/s when
    // it has its cores to itself, as it does in production (here it shares two cores with the
    // load generator, the upstream and the NATS server).
    let cpu_per_request = |runs: &[Row]| {
        let cpu: Duration = runs.iter().filter_map(|r| r.cpu).sum();
        let requests: u64 = runs.iter().map(|r| r.outcome.requests).sum();
        cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
    };
    let (off_cpu, on_cpu) = (cpu_per_request(&off_runs), cpu_per_request(&on_runs));
    let (off_row, on_row) = (median_run(off_runs), median_run(on_runs));
    let pairs = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The last batch goes out within the flush interval (1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shipped = edge_metric(&on, "tollgate_request_logs_shipped_total").await?;
    let batches = edge_metric(&on, "tollgate_request_log_batches_published_total").await?;
    let dropped = edge_metric(
        &on,
        "tollgate_request_logs_dropped_total{reason=\"queue_full\"}",
    )
    .await?;
    let spooled = edge_metric(&on, "tollgate_request_log_spool_batches").await?;
    drop(on);
    drop(off);
    let rows = vec![off_row, on_row];
    Ok(header(
        bench,
        "Request logs on versus off",
        &format!(
            "{users} concurrent users (closed loop), `GET /` answered with 1 KiB by the upstream; the same edge binary twice, running side by side, with `--request-logs off` and `on` (batches of up to 1,000 lines, flushed every second, published to JetStream on the local NATS), driven in alternating rounds (the median round of each is shown)."
        ),
        "logging",
    ) + &table(&rows, "Tollgate edge, request logs off")
        + &format!(
            "\nRequests/s with logs on / off, round by round: {pairs}; median {ratio:.2} (goal >= 0.95). The logging edge shipped {shipped} log lines in {batches} batches (warm-up and every run), dropped {dropped} for a full queue, and had {spooled} batches in its spool at the end. The local NATS server's CPU per request over all rounds: {} with logs off, {} with logs on.\n\nThe edge's own CPU time per request over all rounds: {off_cpu:.2} µs with logs off, {on_cpu:.2} µs with logs on: by CPU, an edge with logs on serves {:.3} of the requests it serves with them off.\n",
            nats[0], nats[1], off_cpu / on_cpu
        ))
}

/// The NATS server's CPU time over some rounds and the requests they made.
#[derive(Default)]
struct NatsShare {
    cpu: Option<Duration>,
    requests: u64,
}

impl NatsShare {
    fn add(&mut self, cpu: Option<Duration>, requests: u64) {
        if let Some(cpu) = cpu {
            self.cpu = Some(self.cpu.unwrap_or_default() + cpu);
            self.requests += requests;
        }
    }
}

impl std::fmt::Display for NatsShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cpu {
            Some(cpu) => write!(
                f,
                "{:.2} µs",
                cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
            ),
            None => write!(f, "unknown (no nats-server process here)"),
        }
    }
}
