//! Services: the upstream an API is proxied to, with Kong's fields, defaults and validation.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity::{check_name, check_range, check_tags, Entity, ForeignKey};
use crate::hostname::validate_host;
use crate::ValidationError;

/// Protocols a service may speak to its upstream.
pub const SERVICE_PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs", "ws", "wss"];

/// Whether `protocol` runs over TLS.
pub fn is_tls_protocol(protocol: &str) -> bool {
    matches!(protocol, "https" | "grpcs" | "wss")
}

/// The port a URL of `protocol` means without one.
pub fn default_port(protocol: &str) -> u16 {
    if is_tls_protocol(protocol) {
        443
    } else {
        80
    }
}

/// A Kong service. `url` in the input is shorthand for protocol, host, port and path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub id: Uuid,
    pub name: Option<String>,
    /// `http` (default), `https`, `grpc`, `grpcs`, `ws` or `wss`.
    pub protocol: String,
    pub host: String,
    /// Default 80.
    pub port: i64,
    pub path: Option<String>,
    /// Default 5.
    pub retries: i64,
    /// Milliseconds; default 60000.
    pub connect_timeout: i64,
    /// Milliseconds; default 60000.
    pub write_timeout: i64,
    /// Milliseconds; default 60000.
    pub read_timeout: i64,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub client_certificate: Option<ForeignKey>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub ca_certificates: Option<Vec<Uuid>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Entity for Service {
    const KIND: &'static str = "services";
    const SINGULAR: &'static str = "service";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "protocol",
        "host",
        "port",
        "path",
        "retries",
        "connect_timeout",
        "write_timeout",
        "read_timeout",
        "tags",
        "enabled",
        "client_certificate",
        "tls_verify",
        "tls_verify_depth",
        "ca_certificates",
        "created_at",
        "updated_at",
        "url",
    ];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "name": null, "protocol": "http", "port": 80, "path": null, "retries": 5,
            "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
            "tags": [], "enabled": true, "client_certificate": null, "tls_verify": null,
            "tls_verify_depth": null, "ca_certificates": null,
        }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn expand_input(input: &mut Map<String, Value>, errors: &mut ValidationError) {
        let Some(url) = input.remove("url") else {
            return;
        };
        let Some(url) = url.as_str() else {
            errors.add("url", "expected a string");
            return;
        };
        if ["protocol", "host", "port", "path"]
            .iter()
            .any(|k| input.contains_key(*k))
        {
            errors.add(
                "url",
                "cannot be combined with protocol, host, port or path",
            );
            return;
        }
        match parse_service_url(url) {
            Ok(parts) => {
                input.insert("protocol".into(), parts.protocol.into());
                input.insert("host".into(), parts.host.into());
                input.insert("port".into(), parts.port.into());
                input.insert("path".into(), parts.path.map_or(Value::Null, Value::from));
            }
            Err(message) => errors.add("url", message),
        }
    }

    fn check(&self, errors: &mut ValidationError) {
        check_name(self.name.as_deref(), errors);
        if !SERVICE_PROTOCOLS.contains(&self.protocol.as_str()) {
            errors.add(
                "protocol",
                format!("expected one of: {}", SERVICE_PROTOCOLS.join(", ")),
            );
        }
        if let Err(message) = validate_host(&self.host, false) {
            errors.add("host", message);
        }
        check_range("port", self.port, 0, 65535, errors);
        if let Some(path) = &self.path {
            if !path.starts_with('/') {
                errors.add("path", "should start with: /");
            } else if path.contains("//") || path.contains(char::is_whitespace) {
                errors.add("path", "must not contain '//' or whitespace");
            }
        }
        check_range("retries", self.retries, 0, 32767, errors);
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            check_range(field, value, 1, 2_147_483_646, errors);
        }
        if let Some(depth) = self.tls_verify_depth {
            check_range("tls_verify_depth", depth, 0, 64, errors);
        }
        check_tags(&self.tags, errors);
    }

    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
}

struct UrlParts {
    protocol: String,
    host: String,
    port: u16,
    path: Option<String>,
}

fn parse_service_url(raw: &str) -> Result<UrlParts, String> {
    // WHATWG parsing forgives `http:///path` by taking `path` as the host; we do not.
    let after_scheme = raw.split_once("://").map_or("", |(_, rest)| rest);
    if after_scheme.is_empty() || after_scheme.starts_with(['/', '?', '#', ':']) {
        return Err("missing host in url".into());
    }
    let parsed = url::Url::parse(raw).map_err(|e| format!("invalid url: {e}"))?;
    let protocol = parsed.scheme().to_string();
    if !SERVICE_PROTOCOLS.contains(&protocol.as_str()) {
        return Err(format!(
            "unsupported scheme '{protocol}': expected one of {}",
            SERVICE_PROTOCOLS.join(", ")
        ));
    }
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err("missing host in url".into()),
    };
    let port = parsed.port().unwrap_or(default_port(&protocol));
    // `Url` turns a missing path into "/"; Kong keeps it null, so look at the raw text.
    let has_path = after_scheme.contains('/');
    let path = has_path.then(|| parsed.path().to_string());
    Ok(UrlParts {
        protocol,
        host,
        port,
        path,
    })
}

impl Service {
    /// Whether requests go to the upstream over TLS.
    pub fn uses_tls(&self) -> bool {
        is_tls_protocol(&self.protocol)
    }

    /// The upstream's authority as it goes in the `Host` header: the port only when not the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == i64::from(default_port(&self.protocol)) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{build, Build};

    fn create(input: Value) -> Result<Service, ValidationError> {
        build::<Service>(Build::Create { id: Uuid::now_v7() }, &input, 100)
    }

    #[test]
    fn url_shorthand_fills_protocol_host_port_path() {
        let s = create(json!({"name": "echo", "url": "https://example.com:8443/v1"})).unwrap();
        assert_eq!(
            (s.protocol.as_str(), s.host.as_str(), s.port),
            ("https", "example.com", 8443)
        );
        assert_eq!(s.path.as_deref(), Some("/v1"));
        let s = create(json!({"url": "http://example.com"})).unwrap();
        assert_eq!((s.port, s.path), (80, None));
        assert_eq!(s.retries, 5);
        assert_eq!(s.connect_timeout, 60000);
    }

    #[test]
    fn bad_input_names_the_field() {
        for url in [
            "http:///nohost",
            "http://",
            "example.com",
            "ftp://example.com",
        ] {
            let e = create(json!({ "url": url })).unwrap_err();
            assert!(e.fields.contains_key("url"), "{url}: {e:?}");
        }
        let e = create(json!({"host": "example.com", "port": 70000})).unwrap_err();
        assert_eq!(e.fields["port"], "value should be between 0 and 65535");
        let e = create(json!({"host": "example.com", "colour": "red"})).unwrap_err();
        assert_eq!(e.fields["colour"], "unknown field");
        let e = create(json!({"name": "x"})).unwrap_err();
        assert_eq!(e.fields["host"], "required field missing");
        let e = create(json!({"host": "example.com", "path": "v1"})).unwrap_err();
        assert!(e.fields.contains_key("path"));
        let e = create(json!({"host": "example.com", "port": "eighty"})).unwrap_err();
        assert!(e.fields.contains_key("port"), "{e:?}");
        let e = create(json!({"host": "example.com", "name": "has space"})).unwrap_err();
        assert!(e.fields.contains_key("name"));
    }

    #[test]
    fn patch_keeps_other_fields_and_id() {
        let s = create(json!({"name": "a", "host": "example.com", "retries": 2})).unwrap();
        let p = build(Build::Update { existing: &s }, &json!({"port": 8080}), 200).unwrap();
        assert_eq!(
            (p.id, p.retries, p.port, p.created_at),
            (s.id, 2, 8080, 100)
        );
        assert_eq!(p.updated_at, 200);
        let r = build(
            Build::Replace { existing: &s },
            &json!({"host": "b.com"}),
            300,
        )
        .unwrap();
        assert_eq!((r.id, r.retries, r.name), (s.id, 5, None));
        let e = build(
            Build::Update { existing: &s },
            &json!({"id": Uuid::now_v7()}),
            200,
        )
        .unwrap_err();
        assert!(e.fields.contains_key("id"));
    }
}
