//! How long a running edge takes to apply a 10,000-route snapshot from NATS, and where the time
//! goes: starts an edge in-process (one thread, as `--worker-threads 1` runs it) against NATS,
//! publishes new versions one at a time, and reads each apply's phases from `/status`.
//!
//! ```sh
//! cargo run --release -p tollgate-edge --example snapshot_apply -- 25
//! # repeatable instruction counts, for before/after comparisons on a busy machine:
//! valgrind --tool=callgrind target/release/examples/snapshot_apply 5
//! ```
//!
//! Needs NATS with JetStream on 127.0.0.1:4222 (or `TOLLGATE_NATS_URL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_bus::{Bus, NatsBus};
use tollgate_edge::{EdgeConfig, RequestLogConfig};
use tollgate_model::entity::{build, Build};
use tollgate_model::secret::MasterKey;
use tollgate_model::{Certificate, Entities, Route, Service, Snapshot, Sni};
use uuid::Uuid;

/// The allocator the `tollgate` binary uses: freeing and growing MiBs depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUTES: usize = 10_000;
const HOST: &str = "bench.local";

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let applies: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(25);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(applies))
}

async fn run(applies: usize) -> Result<(), Failure> {
    let nats_url =
        std::env::var("TOLLGATE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let prefix = format!("applybench{}", Uuid::new_v4().simple());
    let master_key = MasterKey::generate()?;
    let control_plane = Uuid::now_v7();
    let entities = entities(control_plane, &master_key)?;
    let snapshot = |version: i64| {
        Snapshot::of(
            control_plane,
            Uuid::nil(),
            version,
            vec![HOST.into()],
            entities.clone(),
        )
    };
    let publisher = NatsBus::connect(&nats_url, &prefix).await?;
    publisher.publish_snapshot("default", &snapshot(1)).await?;

    let dir = tempfile::tempdir()?;
    let config = EdgeConfig {
        header_read_timeout: tollgate_edge::DEFAULT_HEADER_READ_TIMEOUT,
        proxy_listen: "127.0.0.1:0".parse()?,
        proxy_tls_listen: Some("127.0.0.1:0".parse()?),
        master_key: Some(master_key),
        status_listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_path_buf(),
        region: "default".into(),
        control_plane: Some(control_plane),
        heartbeat_interval: Duration::from_secs(10),
        binary_version: "snapshot-apply".into(),
        request_logs: RequestLogConfig {
            enabled: false,
            ..RequestLogConfig::default()
        },
    };
    let started = Instant::now();
    let edge = tollgate_edge::start(
        config,
        Arc::new(NatsBus::connect(&nats_url, &prefix).await?),
    )
    .await?;
    let status = format!("http://{}/status", edge.status_addr);
    let client = reqwest::Client::builder().no_proxy().build()?;
    wait_for_version(&client, &status, 1).await?;
    println!(
        "first start: {:.1} ms from starting the edge to applied",
        millis(started.elapsed())
    );

    let mut totals = Vec::new();
    for version in 2..2 + i64::try_from(applies)? {
        publisher
            .publish_snapshot("default", &snapshot(version))
            .await?;
        let took = wait_for_version(&client, &status, version).await?;
        totals.push(took);
        let report = client
            .get(&status)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?;
        let phases = report["config_applies"][0]["seconds"]
            .as_object()
            .map(|phases| {
                phases
                    .iter()
                    .map(|(phase, s)| format!("{phase} {:.1}", s.as_f64().unwrap_or(0.0) * 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "no phases reported".into());
        println!(
            "v{version}: {:.1} ms publish to applied; edge (ms): {phases}",
            millis(took)
        );
    }
    totals.sort();
    let at = |q: f64| {
        let rank = ((q * totals.len() as f64).ceil() as usize).clamp(1, totals.len());
        millis(totals[rank - 1])
    };
    println!(
        "{} applies of {ROUTES} routes: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        totals.len(),
        at(0.5),
        at(0.95),
        at(1.0)
    );
    edge.shutdown().await;
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    for bucket in ["heads", "snapshots"] {
        let _ = jetstream
            .delete_stream(match bucket {
                "heads" => format!("KV_{prefix}_heads"),
                _ => format!("OBJ_{prefix}_snapshots"),
            })
            .await;
    }
    Ok(())
}

/// One service, `ROUTES` routes `/r0` … and a certificate for `HOST`, as the `routes` benchmark
/// publishes.
fn entities(control_plane: Uuid, master_key: &MasterKey) -> Result<Entities, Failure> {
    let service: Service = build(
        Build::Create { id: Uuid::now_v7() },
        &json!({"url": "http://127.0.0.1:9"}),
        1,
    )?;
    let routes = (0..ROUTES)
        .map(|i| {
            build::<Route>(
                Build::Create { id: Uuid::now_v7() },
                &json!({"paths": [format!("/r{i}")], "strip_path": false, "service": {"id": service.id}}),
                1,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let certified = rcgen::generate_simple_self_signed(vec![HOST.to_string()])?;
    let sealed = master_key.seal(control_plane, &certified.signing_key.serialize_pem())?;
    let certificate: Certificate = build(
        Build::Create { id: Uuid::now_v7() },
        &json!({"cert": certified.cert.pem(), "key": sealed}),
        1,
    )?;
    let sni: Sni = build(
        Build::Create { id: Uuid::now_v7() },
        &json!({"name": HOST, "certificate": {"id": certificate.id}}),
        1,
    )?;
    Ok(Entities {
        services: vec![service],
        routes,
        certificates: vec![certificate],
        snis: vec![sni],
        ..Entities::default()
    })
}

/// Polls `/status` until it shows `version`; how long that took.
async fn wait_for_version(
    client: &reqwest::Client,
    status: &str,
    version: i64,
) -> Result<Duration, Failure> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(response) = client.get(status).send().await {
            let body: serde_json::Value = response.json().await?;
            if body["control_planes"][0]["version"].as_i64() == Some(version) {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(format!("version {version} not applied within 30 s").into())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
