//! TLS termination: the certificates of each snapshot, compiled with the rest of its config, and
//! the resolver that picks one by the client's SNI (exact names before `*.` wildcards, which stand
//! for one label). A handshake without SNI, or with one no control plane claims, gets the edge's
//! self-signed default certificate, as Kong serves its own; routing then answers as usual.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tollgate_model::secret::MasterKey;
use tollgate_model::{Certificate, Snapshot};
use uuid::Uuid;

use crate::served::ServedConfig;
use crate::state::EdgeState;

/// A client gets this long to finish its handshake, so idle TLS connects do not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the default certificate is issued to (Kong's is `localhost` too).
const DEFAULT_CERTIFICATE_NAME: &str = "localhost";

/// One certificate entity ready to serve: its main pair, then its alternate pair if it has one.
#[derive(Debug)]
pub struct ServedCertificate {
    pairs: Vec<Arc<CertifiedKey>>,
}

impl ServedCertificate {
    /// The first pair whose key can sign with a scheme the client offers (an ECDSA `cert_alt`
    /// for a client without RSA, say).
    fn choose(&self, offered: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.pairs
            .iter()
            .find(|pair| pair.key.choose_scheme(offered).is_some())
            .or_else(|| self.pairs.first())
            .cloned()
    }
}

/// SNI names and the certificates they select.
#[derive(Debug, Default)]
pub struct SniTable {
    exact: HashMap<String, Arc<ServedCertificate>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Arc<ServedCertificate>>,
}

impl SniTable {
    /// The certificate for a lowercase server name: an exact entry, else a wildcard one label up.
    pub fn find(&self, name: &str) -> Option<&Arc<ServedCertificate>> {
        if let Some(found) = self.exact.get(name) {
            return Some(found);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// Adds `name` unless it is already claimed; says whether it was added.
    fn claim(&mut self, name: &str, certificate: &Arc<ServedCertificate>) -> bool {
        let (map, key) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, name),
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.to_string(), certificate.clone());
        true
    }

    /// Adds the names of `other` not claimed yet.
    fn add_unclaimed(&mut self, other: &SniTable) {
        for (name, certificate) in &other.exact {
            self.exact
                .entry(name.clone())
                .or_insert_with(|| certificate.clone());
        }
        for (parent, certificate) in &other.wildcard {
            self.wildcard
                .entry(parent.clone())
                .or_insert_with(|| certificate.clone());
        }
    }

    /// Opens and parses a snapshot's certificates and indexes its SNIs. A certificate whose key
    /// does not open or whose PEM does not parse is skipped with a warning: the rest still serve.
    pub fn compile(snapshot: &Snapshot, master_key: Option<&MasterKey>) -> SniTable {
        let mut table = SniTable::default();
        if snapshot.snis.is_empty() {
            return table;
        }
        let control_plane = snapshot.control_plane_id;
        let Some(master_key) = master_key else {
            tracing::warn!(%control_plane, "no master key: the snapshot's certificates are not served");
            return table;
        };
        let provider = rustls::crypto::ring::default_provider();
        let certificates: HashMap<Uuid, Arc<ServedCertificate>> = snapshot
            .certificates
            .iter()
            .filter_map(|certificate| {
                match open_certificate(certificate, control_plane, master_key, &provider) {
                    Ok(served) => Some((certificate.id, Arc::new(served))),
                    Err(cause) => {
                        tracing::warn!(%control_plane, certificate = %certificate.id, %cause, "certificate skipped");
                        None
                    }
                }
            })
            .collect();
        for sni in &snapshot.snis {
            if let Some(certificate) = certificates.get(&sni.certificate.id) {
                table.claim(&sni.name.to_ascii_lowercase(), certificate);
            }
        }
        table
    }
}

fn open_certificate(
    certificate: &Certificate,
    control_plane: Uuid,
    master_key: &MasterKey,
    provider: &CryptoProvider,
) -> Result<ServedCertificate, String> {
    let mut pairs = vec![open_pair(
        &certificate.cert,
        &certificate.key,
        control_plane,
        master_key,
        provider,
    )?];
    if let (Some(cert), Some(key)) = (&certificate.cert_alt, &certificate.key_alt) {
        pairs.push(open_pair(cert, key, control_plane, master_key, provider)?);
    }
    Ok(ServedCertificate { pairs })
}

fn open_pair(
    cert: &str,
    sealed_key: &str,
    control_plane: Uuid,
    master_key: &MasterKey,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = Certificate::chain(cert)?;
    let key = master_key
        .open(control_plane, sealed_key)
        .map_err(|e| e.to_string())?;
    let key = Certificate::private_key(&key)?;
    let pair = CertifiedKey::from_der(chain, key, provider).map_err(|e| e.to_string())?;
    Ok(Arc::new(pair))
}

/// Every control plane's SNIs in one table, for names whose owner (by Host) declares none.
/// Rebuilt on the first handshake after the served config changes.
struct Claims {
    /// The config this was built from; a `Weak` keeps its address from being reused.
    built_from: Weak<ServedConfig>,
    table: SniTable,
}

impl Claims {
    fn of(served: &Arc<ServedConfig>) -> Claims {
        let mut table = SniTable::default();
        // `applied` walks control planes in id order: the first to declare a name keeps it.
        for applied in served.applied() {
            let Some(cp) = served.get(applied.control_plane_id) else {
                continue;
            };
            table.add_unclaimed(&cp.certificates);
        }
        Claims {
            built_from: Arc::downgrade(served),
            table,
        }
    }
}

/// Picks the certificate for each handshake from the config served at that moment.
pub struct SniResolver {
    state: Arc<EdgeState>,
    fallback: Arc<CertifiedKey>,
    claims: ArcSwapOption<Claims>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    fn certificate_for(&self, name: &str) -> Option<Arc<ServedCertificate>> {
        let served = self.state.served.load_full();
        // The control plane the name selects as a Host comes first: a tenant's own domain is
        // served with its own certificate whatever another tenant declares.
        if let Some(found) = served
            .select(name)
            .and_then(|cp| cp.certificates.find(name))
        {
            return Some(found.clone());
        }
        let claims = match self.claims.load_full() {
            Some(claims) if std::ptr::eq(claims.built_from.as_ptr(), Arc::as_ptr(&served)) => {
                claims
            }
            _ => {
                let fresh = Arc::new(Claims::of(&served));
                self.claims.store(Some(fresh.clone()));
                fresh
            }
        };
        claims.table.find(name).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = client_hello.server_name().and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.certificate_for(&name)?
                .choose(client_hello.signature_schemes())
        });
        Some(chosen.unwrap_or_else(|| self.fallback.clone()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("generating the default certificate: {0}")]
    DefaultCertificate(#[from] rcgen::Error),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// Accepts TLS connections for the proxy.
#[derive(Clone)]
pub struct TlsTerminator {
    acceptor: TlsAcceptor,
}

/// A finished handshake: the stream and the server name the client asked for.
pub struct Terminated {
    pub stream: TlsStream<TcpStream>,
    pub sni: Option<Arc<str>>,
}

impl TlsTerminator {
    /// ALPN offers `h2` and `http/1.1`; certificates come from the config `state` serves.
    pub fn new(state: Arc<EdgeState>) -> Result<TlsTerminator, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = SniResolver {
            state,
            fallback: default_certificate(&provider)?,
            claims: ArcSwapOption::empty(),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsTerminator {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the handshake; `None` (logged) when it fails or takes too long.
    pub async fn handshake(&self, stream: TcpStream) -> Option<Terminated> {
        let peer = stream.peer_addr().ok();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let sni = stream.get_ref().1.server_name().map(Arc::from);
                Some(Terminated { stream, sni })
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, ?peer, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// A fresh self-signed certificate for `localhost`, made at start.
fn default_certificate(provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERTIFICATE_NAME.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERTIFICATE_NAME);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok(Arc::new(CertifiedKey::from_der(
        vec![cert.der().clone()],
        key,
        provider,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[(&str, &Arc<ServedCertificate>)]) -> SniTable {
        let mut table = SniTable::default();
        for (name, certificate) in names {
            table.claim(name, certificate);
        }
        table
    }

    #[test]
    fn exact_names_beat_wildcards_which_cover_one_label() {
        let exact = Arc::new(ServedCertificate { pairs: Vec::new() });
        let wild = Arc::new(ServedCertificate { pairs: Vec::new() });
        let table = table(&[("*.example.com", &wild), ("api.example.com", &exact)]);
        let found = |name| table.find(name).map(Arc::as_ptr);
        assert_eq!(found("api.example.com"), Some(Arc::as_ptr(&exact)));
        assert_eq!(found("www.example.com"), Some(Arc::as_ptr(&wild)));
        assert_eq!(found("a.b.example.com"), None);
        assert_eq!(found("example.com"), None);
        assert_eq!(found("other.test"), None);
    }

    #[test]
    fn the_first_claim_of_a_name_keeps_it() {
        let first = Arc::new(ServedCertificate { pairs: Vec::new() });
        let second = Arc::new(ServedCertificate { pairs: Vec::new() });
        let mut merged = table(&[("a.example.com", &first)]);
        merged.add_unclaimed(&table(&[
            ("a.example.com", &second),
            ("*.example.com", &second),
        ]));
        let found = |name| merged.find(name).map(Arc::as_ptr);
        assert_eq!(found("a.example.com"), Some(Arc::as_ptr(&first)));
        assert_eq!(found("b.example.com"), Some(Arc::as_ptr(&second)));
    }
}
