//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tollgate_bus::Bus;

use crate::ephemeral::EphemeralStore;
use crate::publish::Publisher;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub bus: Arc<dyn Bus>,
    pub ephemeral: Arc<dyn EphemeralStore>,
    pub publisher: Publisher,
    pub settings: Arc<Settings>,
    /// Request logs and usage; `None` when the server was started without an analytics store.
    pub analytics: Option<Arc<dyn tollgate_analytics::AnalyticsStore>>,
}

/// Settings that shape responses, taken from the server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public base URL of the proxy; a control plane's `proxy_url` puts its slug in front of
    /// this host, and its default hostname is `<slug>.<this host>`.
    pub proxy_public_url: url::Url,
    pub default_region: String,
    pub session_ttl: Duration,
    /// Mark session cookies `Secure` (serve the console over https).
    pub secure_cookies: bool,
    /// Seals and opens secret fields; `None` refuses writes that carry secrets.
    pub master_key: Option<tollgate_model::secret::MasterKey>,
}

impl Settings {
    pub fn proxy_domain(&self) -> String {
        self.proxy_public_url
            .host_str()
            .unwrap_or("localhost")
            .to_ascii_lowercase()
    }

    pub fn default_hostname(&self, slug: &str) -> String {
        format!("{slug}.{}", self.proxy_domain())
    }

    pub fn proxy_url(&self, slug: &str) -> String {
        let mut url = self.proxy_public_url.clone();
        // The host is a valid DNS name, so setting `<slug>.<host>` cannot fail.
        let _ = url.set_host(Some(&self.default_hostname(slug)));
        url.as_str().trim_end_matches('/').to_string()
    }
}
