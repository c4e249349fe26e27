//! Routes: the rules that match requests and send them to a service, with Kong's fields, defaults
//! and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity::{check_name, check_range, check_tags, Entity, ForeignKey};
use crate::hostname::{split_host_port, validate_host};
use crate::ValidationError;

/// Protocols a route may accept from clients.
pub const ROUTE_PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs", "ws", "wss"];

/// A Kong route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: Uuid,
    pub name: Option<String>,
    /// Default `["http", "https"]`.
    pub protocols: Vec<String>,
    pub methods: Option<Vec<String>>,
    /// Exact or wildcard host names, optionally with a port.
    pub hosts: Option<Vec<String>>,
    /// Prefixes starting with `/`, or regexes starting with `~`.
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Default 426.
    pub https_redirect_status_code: i64,
    pub regex_priority: i64,
    /// Default true.
    pub strip_path: bool,
    /// `v0` (default) or `v1`.
    pub path_handling: String,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<Value>>,
    pub destinations: Option<Vec<Value>>,
    pub tags: Vec<String>,
    pub service: Option<ForeignKey>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Entity for Route {
    const KIND: &'static str = "routes";
    const SINGULAR: &'static str = "route";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "protocols",
        "methods",
        "hosts",
        "paths",
        "headers",
        "https_redirect_status_code",
        "regex_priority",
        "strip_path",
        "path_handling",
        "preserve_host",
        "request_buffering",
        "response_buffering",
        "snis",
        "sources",
        "destinations",
        "tags",
        "service",
        "created_at",
        "updated_at",
    ];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "name": null, "protocols": ["http", "https"], "methods": null, "hosts": null,
            "paths": null, "headers": null, "https_redirect_status_code": 426,
            "regex_priority": 0, "strip_path": true, "path_handling": "v0",
            "preserve_host": false, "request_buffering": true, "response_buffering": true,
            "snis": null, "sources": null, "destinations": null, "tags": [], "service": null,
        }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn check(&self, errors: &mut ValidationError) {
        check_name(self.name.as_deref(), errors);
        if self.protocols.is_empty() {
            errors.add("protocols", "must not be empty");
        }
        for (i, p) in self.protocols.iter().enumerate() {
            if !ROUTE_PROTOCOLS.contains(&p.as_str()) {
                errors.add(
                    format!("protocols[{i}]"),
                    format!("expected one of: {}", ROUTE_PROTOCOLS.join(", ")),
                );
            }
        }
        let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        let headers_set = self.headers.as_ref().is_some_and(|h| !h.is_empty());
        if !set(&self.methods) && !set(&self.hosts) && !set(&self.paths) && !headers_set {
            let https_only = self.protocols.iter().all(|p| p == "https");
            if !(https_only && set(&self.snis)) {
                errors.add(
                    "@entity",
                    "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http' or 'https'",
                );
            }
        }
        for (i, m) in self.methods.iter().flatten().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                errors.add(
                    format!("methods[{i}]"),
                    format!("invalid value: {m} (methods are upper-case letters)"),
                );
            }
        }
        for (i, h) in self.hosts.iter().flatten().enumerate() {
            let checked = split_host_port(h).and_then(|(host, _)| validate_host(host, true));
            if let Err(message) = checked {
                errors.add(format!("hosts[{i}]"), message);
            }
        }
        for (i, p) in self.paths.iter().flatten().enumerate() {
            if let Some(pattern) = p.strip_prefix('~') {
                if let Err(e) = regex::Regex::new(pattern) {
                    errors.add(format!("paths[{i}]"), format!("invalid regex: {e}"));
                }
            } else if !p.starts_with('/') {
                errors.add(
                    format!("paths[{i}]"),
                    "should start with: / (fixed path) or ~/ (regex path)",
                );
            } else if p.contains("//") {
                errors.add(format!("paths[{i}]"), "must not have empty segments");
            }
        }
        for (name, values) in self.headers.iter().flatten() {
            if name.eq_ignore_ascii_case("host") {
                errors.add(
                    format!("headers.{name}"),
                    "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
                );
            } else if values.is_empty() {
                errors.add(format!("headers.{name}"), "must have at least one value");
            }
            // Kong 3.x: a value starting with `~*` is a case-insensitive regex.
            for (i, value) in values.iter().enumerate() {
                let Some(pattern) = value.strip_prefix("~*") else {
                    continue;
                };
                let compiled = regex::RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .build();
                if let Err(e) = compiled {
                    errors.add(
                        format!("headers.{name}[{i}]"),
                        format!("invalid regex: {e}"),
                    );
                }
            }
        }
        if ![426, 301, 302, 307, 308].contains(&self.https_redirect_status_code) {
            errors.add(
                "https_redirect_status_code",
                "expected one of: 426, 301, 302, 307, 308",
            );
        }
        check_range(
            "regex_priority",
            self.regex_priority,
            -2_147_483_648,
            2_147_483_647,
            errors,
        );
        if !["v0", "v1"].contains(&self.path_handling.as_str()) {
            errors.add("path_handling", "expected one of: v0, v1");
        }
        for (i, s) in self.snis.iter().flatten().enumerate() {
            // Wildcards as in hosts; a trailing dot is the same name.
            if let Err(message) = validate_host(s.strip_suffix('.').unwrap_or(s), true) {
                errors.add(format!("snis[{i}]"), message);
            }
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
    fn parent(&self) -> Option<Uuid> {
        self.service.map(|s| s.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{build, Build};

    fn create(input: Value) -> Result<Route, ValidationError> {
        build::<Route>(Build::Create { id: Uuid::now_v7() }, &input, 1)
    }

    #[test]
    fn defaults_follow_kong() {
        let r = create(json!({"paths": ["/echo"]})).unwrap();
        assert_eq!(r.protocols, ["http", "https"]);
        assert!(r.strip_path && !r.preserve_host);
        assert_eq!(
            (r.https_redirect_status_code, r.path_handling.as_str()),
            (426, "v0")
        );
    }

    #[test]
    fn a_route_needs_something_to_match() {
        let e = create(json!({"name": "r"})).unwrap_err();
        assert!(e.fields.contains_key("@entity"));
        let e = create(json!({"paths": []})).unwrap_err();
        assert!(e.fields.contains_key("@entity"));
        assert!(create(json!({"methods": ["GET"]})).is_ok());
    }

    #[test]
    fn paths_hosts_methods_are_checked() {
        let e = create(json!({"paths": ["/ok", "nope"]})).unwrap_err();
        assert_eq!(
            e.fields["paths[1]"],
            "should start with: / (fixed path) or ~/ (regex path)"
        );
        let e = create(json!({"paths": ["~/(unclosed"]})).unwrap_err();
        assert!(e.fields.contains_key("paths[0]"));
        let e = create(json!({"hosts": ["ok.com", "bad host"]})).unwrap_err();
        assert!(e.fields.contains_key("hosts[1]"));
        assert!(create(json!({"hosts": ["*.example.com:8000"]})).is_ok());
        let e = create(json!({"methods": ["get"]})).unwrap_err();
        assert!(e.fields.contains_key("methods[0]"));
        let e = create(json!({"paths": ["/"], "protocols": ["ftp"]})).unwrap_err();
        assert!(e.fields.contains_key("protocols[0]"));
        let e = create(json!({"paths": ["/"], "https_redirect_status_code": 200})).unwrap_err();
        assert!(e.fields.contains_key("https_redirect_status_code"));
    }

    #[test]
    fn header_regex_values_are_checked() {
        let ok = create(json!({"headers": {"x-version": ["v1", "~*^v[23]$"]}}));
        assert!(ok.is_ok());
        let e = create(json!({"headers": {"x-version": ["~*(unclosed", "v1"]}})).unwrap_err();
        assert!(e.fields["headers.x-version[0]"].starts_with("invalid regex"));
    }
}
