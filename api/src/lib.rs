//! The Tollgate API server: the tenant API (accounts, control planes, gateway entities, config
//! history, nodes, analytics and usage), the console, and the background tasks that publish
//! config and record heartbeats. [`start`] builds it from a config struct so tests can run it in-process on port 0.

pub mod accounts;
pub mod analytics;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod config;
pub mod console;
pub mod control_planes;
pub mod ephemeral;
pub mod error;
pub mod gateway;
pub mod json;
pub mod members;
pub mod nodes;
pub mod pagination;
pub mod publish;
pub mod state;
pub mod store;
pub mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tollgate_bus::Bus;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ephemeral::EphemeralStore;
use crate::error::ApiError;
use crate::publish::Publisher;
use crate::state::{AppState, Settings};

/// Bodies above this get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// e.g. `http://localhost:8000`; see [`Settings::proxy_public_url`].
    pub proxy_public_url: String,
    pub default_region: String,
    pub session_ttl: Duration,
    pub secure_cookies: bool,
    /// Directory of the console's islands bundle (`console.js`, `console_bg.wasm`, written by
    /// `scripts/build-console`). `None`, or a directory without them: pages are served without
    /// the bundle and work as plain HTML.
    pub console_dir: Option<std::path::PathBuf>,
    /// Seals private keys at rest; without it, certificates cannot be written.
    pub master_key: Option<tollgate_model::secret::MasterKey>,
    /// Where request logs are queried (ClickHouse in production, SQLite in dev); without it
    /// the analytics and usage endpoints answer 503.
    pub analytics: Option<Arc<dyn tollgate_analytics::AnalyticsStore>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid proxy public URL '{0}': {1}")]
    ProxyUrl(String, String),
    #[error("invalid region: {0}")]
    Region(String),
    #[error("the database has pending migrations ({0}); run `tollgate migrate` first")]
    PendingMigrations(String),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate API",
        description = "The tenant API of Tollgate. Authenticate with the session cookie from \
                       /api/v1/login or with `Authorization: Bearer <personal access token>`. \
                       Gateway entities follow Kong Admin API conventions."
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session" = []))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

/// The API's routes and its OpenAPI document, from the same handler annotations.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::signup))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::create_token, accounts::list_tokens))
        .routes(routes!(accounts::delete_token))
        .routes(routes!(control_planes::list, control_planes::create))
        .routes(routes!(
            control_planes::get,
            control_planes::update,
            control_planes::delete
        ))
        .routes(routes!(gateway::list_services, gateway::create_service))
        .routes(routes!(
            gateway::get_service,
            gateway::update_service,
            gateway::upsert_service,
            gateway::delete_service
        ))
        .routes(routes!(gateway::list_routes, gateway::create_route))
        .routes(routes!(
            gateway::get_route,
            gateway::update_route,
            gateway::upsert_route,
            gateway::delete_route
        ))
        .routes(routes!(
            gateway::list_service_routes,
            gateway::create_service_route
        ))
        .routes(routes!(
            gateway::upstreams::list_upstreams,
            gateway::upstreams::create_upstream
        ))
        .routes(routes!(
            gateway::upstreams::get_upstream,
            gateway::upstreams::update_upstream,
            gateway::upstreams::upsert_upstream,
            gateway::upstreams::delete_upstream
        ))
        .routes(routes!(gateway::health::upstream_health))
        .routes(routes!(
            gateway::upstreams::list_upstream_targets,
            gateway::upstreams::create_upstream_target
        ))
        .routes(routes!(
            gateway::upstreams::get_upstream_target,
            gateway::upstreams::update_upstream_target,
            gateway::upstreams::upsert_upstream_target,
            gateway::upstreams::delete_upstream_target
        ))
        .routes(routes!(
            gateway::certificates::list_certificates,
            gateway::certificates::create_certificate
        ))
        .routes(routes!(
            gateway::certificates::get_certificate,
            gateway::certificates::update_certificate,
            gateway::certificates::upsert_certificate,
            gateway::certificates::delete_certificate
        ))
        .routes(routes!(
            gateway::certificates::list_certificate_snis,
            gateway::certificates::create_certificate_sni
        ))
        .routes(routes!(
            gateway::certificates::list_snis,
            gateway::certificates::create_sni
        ))
        .routes(routes!(
            gateway::certificates::get_sni,
            gateway::certificates::update_sni,
            gateway::certificates::upsert_sni,
            gateway::certificates::delete_sni
        ))
        .routes(routes!(versions::list))
        .routes(routes!(versions::get))
        .routes(routes!(versions::restore))
        .routes(routes!(members::list_members))
        .routes(routes!(members::update_member, members::remove_member))
        .routes(routes!(
            members::list_invitations,
            members::create_invitation
        ))
        .routes(routes!(members::revoke_invitation))
        .routes(routes!(members::accept_invitation))
        .routes(routes!(nodes::list))
        .routes(routes!(analytics::series))
        .routes(routes!(analytics::top))
        .routes(routes!(analytics::totals))
        .routes(routes!(analytics::requests))
        .routes(routes!(analytics::usage))
        .routes(routes!(analytics::usage_csv))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let openapi = openapi.clone();
            async move { Json(openapi.as_ref().clone()) }
        }),
    )
    .route(
        "/api/v1/health",
        get(|| async { Json(serde_json::json!({"status": "ok"})) }),
    )
    .merge(console::routes())
    .merge(assets::routes())
    .fallback(|| async { ApiError::NotFound })
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    // A bug in one handler answers 500 with a request id instead of dropping the connection.
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |panic: Box<dyn std::any::Any + Send>| {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            ApiError::Internal(format!("handler panicked: {cause}")).into_response()
        },
    ))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}

/// A running API server and its background tasks.
pub struct RunningApi {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningApi {
    /// Stops accepting, lets requests in flight finish, and stops the background tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Resolves when the server stops (after [`RunningApi::shutdown`] elsewhere or a fatal error).
    pub async fn wait(&mut self) {
        for task in self.tasks.iter_mut() {
            let _ = task.await;
        }
    }
}

/// Builds and starts the API on `config.listen`.
pub async fn start(
    config: ApiConfig,
    db: DatabaseConnection,
    bus: Arc<dyn Bus>,
    ephemeral: Arc<dyn EphemeralStore>,
) -> Result<RunningApi, StartError> {
    let proxy_public_url = url::Url::parse(&config.proxy_public_url)
        .map_err(|e| StartError::ProxyUrl(config.proxy_public_url.clone(), e.to_string()))?;
    if proxy_public_url.host_str().is_none() {
        return Err(StartError::ProxyUrl(
            config.proxy_public_url.clone(),
            "no host".into(),
        ));
    }
    tollgate_bus::validate_region(&config.default_region).map_err(StartError::Region)?;
    let pending = store::pending_migrations(&db).await?;
    if !pending.is_empty() {
        return Err(StartError::PendingMigrations(pending.join(", ")));
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (publisher, publisher_task) =
        Publisher::spawn(db.clone(), bus.clone(), shutdown_rx.clone());
    let heartbeat_task = tokio::spawn(nodes::record_heartbeats(
        db.clone(),
        bus.clone(),
        shutdown_rx.clone(),
    ));
    let state = AppState {
        db,
        bus,
        ephemeral,
        publisher,
        settings: Arc::new(Settings {
            proxy_public_url,
            default_region: config.default_region.clone(),
            session_ttl: config.session_ttl,
            secure_cookies: config.secure_cookies,
            master_key: config.master_key.clone(),
        }),
        analytics: config.analytics.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Listen(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(config.listen, e))?;
    let bundle = assets::ConsoleBundle::locate(config.console_dir.as_deref());
    let app = router(state).layer(axum::Extension(bundle));
    let mut stop = shutdown_rx.clone();
    let server_task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "api server stopped");
        }
    });
    tracing::info!(%addr, "api listening");
    Ok(RunningApi {
        addr,
        shutdown,
        tasks: vec![server_task, publisher_task, heartbeat_task],
    })
}
