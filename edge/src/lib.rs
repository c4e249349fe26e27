//! Tollgate's data plane. [`start`] loads the last-known-good config from the data dir, binds the
//! proxy (plain and TLS) and status listeners and returns; background tasks follow config changes
//! on the bus and send heartbeats, so the edge serves even while the bus is unreachable. Every
//! answered request is logged and shipped on the bus (`logging/`), spooled while it is down.

mod balancer;
mod config_sync;
mod data_dir;
mod errors;
mod grpc;
mod health;
mod heartbeat;
mod listener;
mod logging;
mod metrics;
mod proxy;
pub mod router;
mod served;
mod shutdown;
mod state;
mod status;
mod tls;
mod upstream;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_bus::{Bus, ConfigFilter};
use tollgate_model::secret::MasterKey;
use tracing::Instrument;
use uuid::Uuid;

use crate::balancer::targets::TargetRegistry;
use crate::config_sync::{ApplyThread, ConfigSync};
use crate::data_dir::{load_or_create_node_id, LastKnownGood};
pub use crate::listener::DEFAULT_HEADER_READ_TIMEOUT;
use crate::logging::LogShipper;
pub use crate::logging::{RequestLogConfig, SpoolError, SPOOL_DIR};
use crate::proxy::Proxy;
use crate::served::{LoadedControlPlane, ServedConfig};
use crate::state::EdgeState;
use crate::tls::{TlsSetupError, TlsTerminator};
pub use crate::upstream::NoCertificateCheck;
use crate::upstream::Upstreams;

/// How to run one edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Where clients' HTTP traffic comes in (port 0 picks one).
    pub proxy_listen: SocketAddr,
    /// Where clients' HTTPS traffic comes in, terminated with the snapshots' certificates
    /// selected by SNI; `None` serves no TLS.
    pub proxy_tls_listen: Option<SocketAddr>,
    /// Opens the private keys sealed in snapshots; without it certificates are skipped.
    pub master_key: Option<tollgate_model::secret::MasterKey>,
    /// Where `/status` and `/status/ready` are served (port 0 picks one).
    pub status_listen: SocketAddr,
    /// Holds the node id and the last-known-good snapshots.
    pub data_dir: PathBuf,
    /// Shared mode: every control plane of this region is served, selected by Host.
    pub region: String,
    /// Dedicated mode: only this control plane, for every request.
    pub control_plane: Option<Uuid>,
    pub heartbeat_interval: Duration,
    /// Reported in heartbeats and `/status`.
    pub binary_version: String,
    /// Request logs: on or off, batching, and the spool's bound.
    pub request_logs: RequestLogConfig,
    /// How long a client connection may take to send a request head (an idle keep-alive one,
    /// its next) before it is closed: [`DEFAULT_HEADER_READ_TIMEOUT`] unless set.
    pub header_read_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS client setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS listener setup: {0}")]
    TlsListener(#[from] TlsSetupError),
    #[error(transparent)]
    LogSpool(#[from] SpoolError),
    #[error("cannot start the config apply thread: {0}")]
    ApplyThread(std::io::Error),
}

/// A started edge. Dropping it stops the background work; [`RunningEdge::shutdown`] also waits
/// for requests in flight.
pub struct RunningEdge {
    pub proxy_addr: SocketAddr,
    /// The TLS listener's address, when one was asked for.
    pub proxy_tls_addr: Option<SocketAddr>,
    pub status_addr: SocketAddr,
    pub node_id: Uuid,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    log_shipper: Option<LogShipper>,
}

/// How long background tasks get to notice shutdown before they are aborted.
const BACKGROUND_STOP_GRACE: Duration = Duration::from_secs(2);

impl RunningEdge {
    /// Stops accepting, lets requests in flight finish, publishes (or spools) the request logs
    /// still in memory, then stops the background tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        if let Some(shipper) = self.log_shipper {
            shipper.shutdown().await;
        }
        for task in self.background {
            let abort = task.abort_handle();
            if tokio::time::timeout(BACKGROUND_STOP_GRACE, task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Starts an edge: serves its last-known-good config at once and follows the bus from then on.
pub async fn start(config: EdgeConfig, bus: Arc<dyn Bus>) -> Result<RunningEdge, EdgeError> {
    let data_dir = config.data_dir.clone();
    let only = config.control_plane;
    let master_key = config.master_key.clone();
    let targets = Arc::new(TargetRegistry::default());
    let loading = targets.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        load_data_dir(&data_dir, only, master_key.as_ref(), &loading)
    })
    .await
    .map_err(|e| EdgeError::DataDir {
        path: config.data_dir.clone(),
        source: std::io::Error::other(e),
    })?
    .map_err(|source| EdgeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let (node_id, lkg, served) = loaded;
    let state = Arc::new(EdgeState::new(
        node_id,
        config.region.clone(),
        config.binary_version.clone(),
        served,
        targets,
    ));
    let (logs, log_shipper) = if config.request_logs.enabled {
        let (sink, shipper) = logging::start(
            &config.request_logs,
            bus.clone(),
            node_id,
            &config.region,
            &config.data_dir,
            state.metrics.logs.clone(),
        )
        .await?;
        (Some(sink), Some(shipper))
    } else {
        (None, None)
    };
    let proxy = Arc::new(Proxy {
        state: state.clone(),
        upstreams: Upstreams::new()?,
        logs,
    });

    let proxy_listener = bind(config.proxy_listen).await?;
    let status_listener = bind(config.status_listen).await?;
    let proxy_addr = local_addr(&proxy_listener, config.proxy_listen)?;
    let status_addr = local_addr(&status_listener, config.status_listen)?;
    let tls_listener = match config.proxy_tls_listen {
        Some(addr) => {
            let listener = bind(addr).await?;
            let local = local_addr(&listener, addr)?;
            Some((listener, local, TlsTerminator::new(state.clone())?))
        }
        None => None,
    };
    let proxy_tls_addr = tls_listener.as_ref().map(|(_, addr, _)| *addr);
    let (shutdown, signal) = watch::channel(false);

    let mut servers = vec![
        tokio::spawn({
            let proxy = proxy.clone();
            listener::serve(
                proxy_listener,
                None,
                move |info, request| proxy.clone().handle(info, request),
                signal.clone(),
                config.header_read_timeout,
            )
        }),
        tokio::spawn({
            let state = state.clone();
            listener::serve(
                status_listener,
                None,
                move |_, request| status::respond(state.clone(), request),
                signal.clone(),
                config.header_read_timeout,
            )
        }),
    ];
    if let Some((listener, _, terminator)) = tls_listener {
        servers.push(tokio::spawn(listener::serve(
            listener,
            Some(terminator),
            move |info, request| proxy.clone().handle(info, request),
            signal.clone(),
            config.header_read_timeout,
        )));
    }
    let sync = ConfigSync {
        bus: bus.clone(),
        filter: ConfigFilter {
            region: config.region.clone(),
            control_plane: config.control_plane,
        },
        state: state.clone(),
        lkg,
        master_key: config.master_key.clone(),
        apply_thread: ApplyThread::start().map_err(EdgeError::ApplyThread)?,
    };
    let sync_span = tracing::info_span!("config_sync", region = %config.region, control_plane = ?config.control_plane);
    let background = vec![
        tokio::spawn(sync.run(signal.clone()).instrument(sync_span)),
        tokio::spawn(
            health::active::run(state.clone(), signal.clone())
                .instrument(tracing::info_span!("active_health_checks")),
        ),
        tokio::spawn(
            heartbeat::run(bus, state, config.heartbeat_interval, signal)
                .instrument(tracing::info_span!("heartbeat", %node_id)),
        ),
    ];
    tracing::info!(%proxy_addr, ?proxy_tls_addr, %status_addr, %node_id, "edge started");
    Ok(RunningEdge {
        proxy_addr,
        proxy_tls_addr,
        status_addr,
        node_id,
        shutdown,
        servers,
        background,
        log_shipper,
    })
}

/// Node id, the last-known-good store, and the config compiled from it.
fn load_data_dir(
    data_dir: &std::path::Path,
    only: Option<Uuid>,
    master_key: Option<&MasterKey>,
    targets: &TargetRegistry,
) -> std::io::Result<(Uuid, LastKnownGood, ServedConfig)> {
    let node_id = load_or_create_node_id(data_dir)?;
    let lkg = LastKnownGood::new(data_dir)?;
    let control_planes = lkg.load_all(only)?.into_iter().map(|snapshot| {
        tracing::info!(control_plane = %snapshot.control_plane_id, version = snapshot.version, "serving last-known-good config");
        Arc::new(LoadedControlPlane::compile(&snapshot, master_key, targets))
    });
    let served = ServedConfig::of(only, control_planes);
    Ok((node_id, lkg, served))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EdgeError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, EdgeError> {
    listener
        .local_addr()
        .map_err(|source| EdgeError::Bind { addr, source })
}
