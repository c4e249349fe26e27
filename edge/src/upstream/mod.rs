//! Sending requests upstream: keep-alive pools shared by every worker thread and service — a
//! lean HTTP/1.1 one for plain `http` ([`pool`], spoken by [`http1`]), and hyper-util's client per TLS-verification choice (rustls with the Mozilla roots, or no certificate check for services
//! that set `tls_verify: false`), HTTP/2 with prior knowledge for `grpc` services (`grpcs`
//! negotiates `h2` by ALPN like `https`), and HTTP/1.1-only pools for upgrades (WebSocket), which
//! `h2` cannot carry. [`forward`] runs a request's attempts with retries and timeouts; [`body`]
//! has the bodies that enforce them.

pub mod body;
pub mod forward;
pub mod http1;
pub mod pool;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tollgate_model::service::is_tls_protocol;
use tollgate_model::Service;

use body::RequestBody;
use pool::Http1Pool;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;
/// What active health checks probe with: no pooling, a connection per probe.
pub type ProbeClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Idle pooled connections are closed after this, well under common upstream keep-alive limits.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Upstreams {
    /// Plain `http` services, when the request does not ask for an upgrade.
    http1: Http1Pool,
    verified: UpstreamClient,
    unverified: UpstreamClient,
    h2c: UpstreamClient,
    /// TLS could negotiate `h2`, where an HTTP/1.1 upgrade cannot happen.
    verified_http1: UpstreamClient,
    unverified_http1: UpstreamClient,
}

/// Which HTTP versions a connector offers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Versions {
    Http1,
    Http1AndHttp2,
    /// Prior knowledge on plain TCP.
    Http2,
}

impl Upstreams {
    pub fn new() -> Result<Upstreams, rustls::Error> {
        use Versions::*;
        Ok(Upstreams {
            http1: Http1Pool::new(tcp_connector(None), POOL_IDLE_TIMEOUT),
            verified: pooled(connector(true, None, None, Http1AndHttp2)?, false),
            unverified: pooled(connector(false, None, None, Http1AndHttp2)?, false),
            h2c: pooled(connector(true, None, None, Http2)?, true),
            verified_http1: pooled(connector(true, None, None, Http1)?, false),
            unverified_http1: pooled(connector(false, None, None, Http1)?, false),
        })
    }

    /// How a request to `service` goes: plain `http` through the HTTP/1.1 pool unless it asks to
    /// upgrade; otherwise by the client [`Upstreams::for_service`] or [`Upstreams::for_upgrade`]
    /// picks.
    pub fn sender_for(&self, service: &Service, upgrade: bool) -> UpstreamSender<'_> {
        if upgrade {
            UpstreamSender::Client(self.for_upgrade(service))
        } else if service.protocol == "http" {
            UpstreamSender::Pool(&self.http1)
        } else {
            UpstreamSender::Client(self.for_service(service))
        }
    }

    /// The client for a service: certificates are checked unless it says `tls_verify: false`;
    /// `grpc` speaks HTTP/2 with prior knowledge.
    pub fn for_service(&self, service: &Service) -> &UpstreamClient {
        if service.protocol == "grpc" {
            &self.h2c
        } else if service.tls_verify == Some(false) {
            &self.unverified
        } else {
            &self.verified
        }
    }

    /// The client for a request that asks to upgrade its connection: HTTP/1.1 only.
    pub fn for_upgrade(&self, service: &Service) -> &UpstreamClient {
        if service.tls_verify == Some(false) {
            &self.unverified_http1
        } else {
            &self.verified_http1
        }
    }
}

/// What sends one request upstream.
#[derive(Clone, Copy)]
pub enum UpstreamSender<'a> {
    Pool(&'a Http1Pool),
    Client(&'a UpstreamClient),
}

/// The URL scheme a service's protocol is reached with.
pub fn url_scheme(protocol: &str) -> &'static str {
    if is_tls_protocol(protocol) {
        "https"
    } else {
        "http"
    }
}

/// A client for active health probes of one upstream: HTTP/1.1, a fresh connection per probe (as
/// Kong's checker opens one), the certificate checked or not, and the TLS server name fixed when
/// `sni` is given.
pub fn probe_client(
    verify: bool,
    sni: Option<&str>,
    connect_timeout: Duration,
) -> Result<ProbeClient, rustls::Error> {
    let connector = connector(verify, sni, Some(connect_timeout), Versions::Http1)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector))
}

/// Per-service connect timeouts are enforced per attempt by [`forward`], which covers the TLS
/// handshake too, so pooled connectors have none of their own (the OS bounds a hung connect).
fn connector(
    verify: bool,
    sni: Option<&str>,
    connect_timeout: Option<Duration>,
    versions: Versions,
) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = if verify {
        HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider)?
    } else {
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth();
        HttpsConnectorBuilder::new().with_tls_config(config)
    };
    let mut builder = builder.https_or_http();
    if let Some(sni) = sni {
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| rustls::Error::General(format!("https_sni {sni}: {e}")))?;
        builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    let mut tcp = tcp_connector(connect_timeout);
    tcp.enforce_http(false);
    Ok(match versions {
        Versions::Http1 => builder.enable_http1().wrap_connector(tcp),
        Versions::Http1AndHttp2 => builder.enable_http1().enable_http2().wrap_connector(tcp),
        Versions::Http2 => builder.enable_http2().wrap_connector(tcp),
    })
}

/// TCP connections to upstreams: no Nagle delay, OS keep-alive probes.
fn tcp_connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    tcp
}

fn pooled(connector: HttpsConnector<HttpConnector>, http2_only: bool) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .http2_only(http2_only)
        .build(connector)
}

/// Accepts any certificate but still checks handshake signatures: what `tls_verify: false` asks.
/// Public for tools that talk to an edge serving a self-signed certificate (tests, benchmarks).
#[derive(Debug)]
pub struct NoCertificateCheck(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
