//! Upstreams: a virtual host name a service's `host` can point at, balanced over its targets, with
//! Kong's fields, defaults (nested health-check defaults included) and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity::{check_name, check_range, check_tags, Entity, ForeignKey};
use crate::hostname::validate_host;
use crate::ValidationError;

pub const ALGORITHMS: &[&str] = &[
    "round-robin",
    "consistent-hashing",
    "least-connections",
    "latency",
];
pub const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];
const CHECK_TYPES: &[&str] = &["http", "https", "tcp", "grpc", "grpcs"];

/// A Kong upstream. `name` is the host a service sets to be balanced over this upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub id: Uuid,
    pub name: String,
    /// `round-robin` (default), `consistent-hashing`, `least-connections` or `latency`.
    pub algorithm: String,
    /// What consistent hashing hashes: `none` (default), `consumer`, `ip`, `header`, `cookie`,
    /// `path`, `query_arg`, `uri_capture`.
    pub hash_on: String,
    /// Used when `hash_on` yields nothing; same choices except `cookie`.
    pub hash_fallback: String,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    /// Default `/`.
    pub hash_on_cookie_path: String,
    pub hash_on_query_arg: Option<String>,
    pub hash_fallback_query_arg: Option<String>,
    pub hash_on_uri_capture: Option<String>,
    pub hash_fallback_uri_capture: Option<String>,
    /// Size of the consistent-hashing ring; default 10000.
    pub slots: i64,
    pub healthchecks: Healthchecks,
    /// The `Host` header sent to targets instead of the upstream's name.
    pub host_header: Option<String>,
    pub client_certificate: Option<ForeignKey>,
    pub use_srv_name: bool,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Active probes and passive observation of targets. Every part has Kong's defaults, so `{}` (or
/// a partial object) is filled in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Healthchecks {
    pub active: ActiveHealthcheck,
    pub passive: PassiveHealthcheck,
    /// Minimum percentage of healthy weight for the upstream to be used at all; 0 to 100.
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveHealthcheck {
    /// `http` (default), `https`, `tcp`, `grpc`, `grpcs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds a probe may take; default 1.
    pub timeout: f64,
    /// Probes in flight at once; default 10.
    pub concurrency: i64,
    /// Default `/`.
    pub http_path: String,
    pub https_verify_certificate: bool,
    pub https_sni: Option<String>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Seconds between probes of a healthy target; 0 (default) disables them.
    pub interval: f64,
    pub http_statuses: Vec<i64>,
    /// Successful probes that make an unhealthy target healthy; 0 disables.
    pub successes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// Seconds between probes of an unhealthy target; 0 (default) disables them.
    pub interval: f64,
    pub http_statuses: Vec<i64>,
    pub tcp_failures: i64,
    pub timeouts: i64,
    pub http_failures: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveHealthcheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveHealthy {
    pub http_statuses: Vec<i64>,
    /// Proxied successes that make an unhealthy target healthy again; 0 disables.
    pub successes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveUnhealthy {
    pub http_statuses: Vec<i64>,
    /// Connection failures (refused, reset) that make a target unhealthy; 0 disables.
    pub tcp_failures: i64,
    pub timeouts: i64,
    pub http_failures: i64,
}

impl Default for ActiveHealthcheck {
    fn default() -> Self {
        ActiveHealthcheck {
            kind: "http".into(),
            timeout: 1.0,
            concurrency: 10,
            http_path: "/".into(),
            https_verify_certificate: true,
            https_sni: None,
            headers: None,
            healthy: ActiveHealthy::default(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        ActiveHealthy {
            interval: 0.0,
            http_statuses: vec![200, 302],
            successes: 0,
        }
    }
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        ActiveUnhealthy {
            interval: 0.0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
        }
    }
}

impl Default for PassiveHealthcheck {
    fn default() -> Self {
        PassiveHealthcheck {
            kind: "http".into(),
            healthy: PassiveHealthy::default(),
            unhealthy: PassiveUnhealthy::default(),
        }
    }
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        PassiveHealthy {
            http_statuses: vec![
                200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                306, 307, 308,
            ],
            successes: 0,
        }
    }
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        PassiveUnhealthy {
            http_statuses: vec![429, 500, 503],
            tcp_failures: 0,
            timeouts: 0,
            http_failures: 0,
        }
    }
}

impl Healthchecks {
    /// Whether active probing runs at all (Kong: either interval above 0).
    pub fn active_enabled(&self) -> bool {
        self.active.healthy.interval > 0.0 || self.active.unhealthy.interval > 0.0
    }

    /// Whether proxied traffic can mark targets unhealthy.
    pub fn passive_enabled(&self) -> bool {
        let u = &self.passive.unhealthy;
        u.tcp_failures > 0 || u.timeouts > 0 || u.http_failures > 0
    }
}

impl Entity for Upstream {
    const KIND: &'static str = "upstreams";
    const SINGULAR: &'static str = "upstream";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "algorithm",
        "hash_on",
        "hash_fallback",
        "hash_on_header",
        "hash_fallback_header",
        "hash_on_cookie",
        "hash_on_cookie_path",
        "hash_on_query_arg",
        "hash_fallback_query_arg",
        "hash_on_uri_capture",
        "hash_fallback_uri_capture",
        "slots",
        "healthchecks",
        "host_header",
        "client_certificate",
        "use_srv_name",
        "tags",
        "created_at",
        "updated_at",
    ];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
            "hash_on_header": null, "hash_fallback_header": null, "hash_on_cookie": null,
            "hash_on_cookie_path": "/", "hash_on_query_arg": null, "hash_fallback_query_arg": null,
            "hash_on_uri_capture": null, "hash_fallback_uri_capture": null, "slots": 10000,
            "healthchecks": {}, "host_header": null, "client_certificate": null,
            "use_srv_name": false, "tags": [],
        }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn check(&self, errors: &mut ValidationError) {
        check_name(Some(&self.name), errors);
        // The name is what services put in `host`, so it must also be a host name.
        if !errors.fields.contains_key("name") {
            if let Err(message) = validate_host(&self.name, false) {
                errors.add("name", message);
            }
        }
        one_of("algorithm", &self.algorithm, ALGORITHMS, errors);
        one_of("hash_on", &self.hash_on, HASH_ON, errors);
        one_of("hash_fallback", &self.hash_fallback, HASH_ON, errors);
        let needs = [
            (
                "hash_on",
                &self.hash_on,
                "header",
                "hash_on_header",
                &self.hash_on_header,
            ),
            (
                "hash_on",
                &self.hash_on,
                "cookie",
                "hash_on_cookie",
                &self.hash_on_cookie,
            ),
            (
                "hash_on",
                &self.hash_on,
                "query_arg",
                "hash_on_query_arg",
                &self.hash_on_query_arg,
            ),
            (
                "hash_on",
                &self.hash_on,
                "uri_capture",
                "hash_on_uri_capture",
                &self.hash_on_uri_capture,
            ),
            (
                "hash_fallback",
                &self.hash_fallback,
                "header",
                "hash_fallback_header",
                &self.hash_fallback_header,
            ),
            (
                "hash_fallback",
                &self.hash_fallback,
                "query_arg",
                "hash_fallback_query_arg",
                &self.hash_fallback_query_arg,
            ),
            (
                "hash_fallback",
                &self.hash_fallback,
                "uri_capture",
                "hash_fallback_uri_capture",
                &self.hash_fallback_uri_capture,
            ),
        ];
        for (field, value, choice, needed, given) in needs {
            if value == choice && given.as_deref().is_none_or(str::is_empty) {
                errors.add(needed, format!("required when '{field}' is '{choice}'"));
            }
        }
        if self.hash_fallback != "none" {
            if self.hash_on == "none" || self.hash_on == "cookie" {
                errors.add(
                    "hash_fallback",
                    "must be 'none' when 'hash_on' is 'none' or 'cookie'",
                );
            } else if self.hash_fallback == "cookie" {
                errors.add("hash_fallback", "cannot be 'cookie'");
            } else if self.hash_fallback == self.hash_on && self.hash_on != "header" {
                errors.add("hash_fallback", "must differ from 'hash_on'");
            }
        }
        if !self.hash_on_cookie_path.starts_with('/') {
            errors.add("hash_on_cookie_path", "should start with: /");
        }
        check_range("slots", self.slots, 10, 65536, errors);
        if let Some(host) = &self.host_header {
            if let Err(message) = validate_host(host, false) {
                errors.add("host_header", message);
            }
        }
        check_healthchecks(&self.healthchecks, errors);
        check_tags(&self.tags, errors);
    }

    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
}

fn one_of(field: &str, value: &str, choices: &[&str], errors: &mut ValidationError) {
    if !choices.contains(&value) {
        errors.add(field, format!("expected one of: {}", choices.join(", ")));
    }
}

fn check_healthchecks(h: &Healthchecks, errors: &mut ValidationError) {
    let a = &h.active;
    one_of("healthchecks.active.type", &a.kind, CHECK_TYPES, errors);
    one_of(
        "healthchecks.passive.type",
        &h.passive.kind,
        CHECK_TYPES,
        errors,
    );
    for (field, seconds) in [
        ("healthchecks.active.timeout", a.timeout),
        ("healthchecks.active.healthy.interval", a.healthy.interval),
        (
            "healthchecks.active.unhealthy.interval",
            a.unhealthy.interval,
        ),
    ] {
        if !(0.0..=65535.0).contains(&seconds) {
            errors.add(field, "value should be between 0 and 65535");
        }
    }
    if !(0.0..=100.0).contains(&h.threshold) {
        errors.add(
            "healthchecks.threshold",
            "value should be between 0 and 100",
        );
    }
    check_range(
        "healthchecks.active.concurrency",
        a.concurrency,
        1,
        2_147_483_648,
        errors,
    );
    if !a.http_path.starts_with('/') {
        errors.add("healthchecks.active.http_path", "should start with: /");
    }
    let counters = [
        ("healthchecks.active.healthy.successes", a.healthy.successes),
        (
            "healthchecks.active.unhealthy.tcp_failures",
            a.unhealthy.tcp_failures,
        ),
        (
            "healthchecks.active.unhealthy.timeouts",
            a.unhealthy.timeouts,
        ),
        (
            "healthchecks.active.unhealthy.http_failures",
            a.unhealthy.http_failures,
        ),
        (
            "healthchecks.passive.healthy.successes",
            h.passive.healthy.successes,
        ),
        (
            "healthchecks.passive.unhealthy.tcp_failures",
            h.passive.unhealthy.tcp_failures,
        ),
        (
            "healthchecks.passive.unhealthy.timeouts",
            h.passive.unhealthy.timeouts,
        ),
        (
            "healthchecks.passive.unhealthy.http_failures",
            h.passive.unhealthy.http_failures,
        ),
    ];
    for (field, value) in counters {
        check_range(field, value, 0, 255, errors);
    }
    let statuses = [
        (
            "healthchecks.active.healthy.http_statuses",
            &a.healthy.http_statuses,
        ),
        (
            "healthchecks.active.unhealthy.http_statuses",
            &a.unhealthy.http_statuses,
        ),
        (
            "healthchecks.passive.healthy.http_statuses",
            &h.passive.healthy.http_statuses,
        ),
        (
            "healthchecks.passive.unhealthy.http_statuses",
            &h.passive.unhealthy.http_statuses,
        ),
    ];
    for (field, list) in statuses {
        for (i, status) in list.iter().enumerate() {
            check_range(&format!("{field}[{i}]"), *status, 100, 999, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{build, Build};

    fn create(input: Value) -> Result<Upstream, ValidationError> {
        build::<Upstream>(Build::Create { id: Uuid::now_v7() }, &input, 1)
    }

    #[test]
    fn defaults_follow_kong_down_to_nested_healthchecks() {
        let u = create(json!({"name": "backend.internal"})).unwrap();
        assert_eq!((u.algorithm.as_str(), u.slots), ("round-robin", 10000));
        assert_eq!(u.healthchecks.active.http_path, "/");
        assert_eq!(
            u.healthchecks.passive.unhealthy.http_statuses,
            [429, 500, 503]
        );
        assert!(!u.healthchecks.active_enabled() && !u.healthchecks.passive_enabled());
        let u =
            create(json!({"name": "b", "healthchecks": {"active": {"healthy": {"interval": 5}}}}))
                .unwrap();
        assert_eq!(u.healthchecks.active.healthy.interval, 5.0);
        assert_eq!(u.healthchecks.active.healthy.http_statuses, [200, 302]);
        assert_eq!(u.healthchecks.active.timeout, 1.0);
        assert!(u.healthchecks.active_enabled());
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = create(json!({"name": "b", "algorithm": "random"})).unwrap_err();
        assert!(e.fields.contains_key("algorithm"));
        let e =
            create(json!({"name": "b", "algorithm": "consistent-hashing", "hash_on": "header"}))
                .unwrap_err();
        assert_eq!(
            e.fields["hash_on_header"],
            "required when 'hash_on' is 'header'"
        );
        let e = create(json!({"name": "b", "hash_fallback": "ip"})).unwrap_err();
        assert!(e.fields.contains_key("hash_fallback"));
        let e =
            create(json!({"name": "b", "healthchecks": {"active": {"timeout": -1}}})).unwrap_err();
        assert!(e.fields.contains_key("healthchecks.active.timeout"));
        let e =
            create(json!({"name": "b", "healthchecks": {"active": {"colour": 1}}})).unwrap_err();
        assert!(
            e.fields.keys().any(|k| k.starts_with("healthchecks")),
            "{e:?}"
        );
        let e = create(json!({"name": "not a host"})).unwrap_err();
        assert!(e.fields.contains_key("name"));
        let e = create(json!({"algorithm": "latency"})).unwrap_err();
        assert_eq!(e.fields["name"], "required field missing");
    }
}
