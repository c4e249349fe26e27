//! The HTTP clients requests are forwarded with: one shared keep-alive pool for `http` and
//! `https` upstreams (rustls with the Mozilla roots), and a second one for services that set
//! `tls_verify: false`. `grpc` services get HTTP/2 with prior knowledge; `grpcs` negotiate `h2`
//! by ALPN like `https`. Upgrades (WebSocket) use HTTP/1.1-only pools.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tollgate_model::service::is_tls_protocol;
use tollgate_model::Service;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Kong's default `connect_timeout`; per-service connect timeouts are not applied yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle pooled connections are closed after this, well under common upstream keep-alive limits.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Upstreams {
    verified: UpstreamClient,
    unverified: UpstreamClient,
    h2c: UpstreamClient,
    /// TLS could negotiate `h2`, where an HTTP/1.1 upgrade cannot happen.
    verified_http1: UpstreamClient,
    unverified_http1: UpstreamClient,
}

impl Upstreams {
    pub fn new() -> Result<Upstreams, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let with_roots =
            || HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider.clone());
        let h2c = with_roots()?.https_or_http().enable_http2();
        let verified_http1 = with_roots()?.https_or_http().enable_http1();
        let verified =
            HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider.clone())?;
        let unverified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth();
        let unverified_http1 = HttpsConnectorBuilder::new()
            .with_tls_config(unverified.clone())
            .https_or_http()
            .enable_http1();
        let unverified = HttpsConnectorBuilder::new().with_tls_config(unverified);
        Ok(Upstreams {
            verified: client(
                verified
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(tcp_connector()),
            ),
            unverified: client(
                unverified
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(tcp_connector()),
            ),
            h2c: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .http2_only(true)
                .build(h2c.wrap_connector(tcp_connector())),
            verified_http1: client(verified_http1.wrap_connector(tcp_connector())),
            unverified_http1: client(unverified_http1.wrap_connector(tcp_connector())),
        })
    }

    /// The client for a service: certificates are checked unless it says `tls_verify: false`.
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

/// The URL scheme a service's protocol is reached with.
pub fn url_scheme(protocol: &str) -> &'static str {
    if is_tls_protocol(protocol) {
        "https"
    } else {
        "http"
    }
}

fn tcp_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

fn client(connector: HttpsConnector<HttpConnector>) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// Accepts any certificate but still checks handshake signatures: what `tls_verify: false` asks.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

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
