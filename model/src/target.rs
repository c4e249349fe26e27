//! Targets: the `host:port` addresses an upstream balances over, each with a weight.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity::{check_range, check_tags, Entity, ForeignKey};
use crate::hostname::validate_host;
use crate::ValidationError;

/// Kong's port for a target given without one.
pub const DEFAULT_TARGET_PORT: u16 = 8000;

/// A Kong target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub id: Uuid,
    pub upstream: ForeignKey,
    /// `host:port` (`[v6]:port` for IPv6); a missing port becomes 8000.
    pub target: String,
    /// 0 to 65535, default 100; 0 takes the target out of rotation.
    pub weight: i64,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Target {
    /// The host and port the target names (IPv6 without brackets).
    pub fn host_port(&self) -> Option<(&str, u16)> {
        split_target(&self.target).ok()
    }
}

/// Splits `host[:port]` or `[v6][:port]`, with Kong's default port.
pub fn split_target(value: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid target '{value}': unclosed '['"))?;
        (v6, after.strip_prefix(':'))
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port number in '{value}'"))?,
        None => DEFAULT_TARGET_PORT,
    };
    if host.parse::<std::net::IpAddr>().is_err() {
        validate_host(host, false).map_err(|m| format!("invalid target '{value}': {m}"))?;
    }
    Ok((host, port))
}

impl Entity for Target {
    const KIND: &'static str = "targets";
    const SINGULAR: &'static str = "target";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "upstream",
        "target",
        "weight",
        "tags",
        "created_at",
        "updated_at",
    ];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({ "weight": 100, "tags": [] }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn expand_input(input: &mut Map<String, Value>, _errors: &mut ValidationError) {
        // Kong stores the port it defaulted, so `a.internal` and `a.internal:8000` are one target.
        if let Some(Value::String(target)) = input.get_mut("target") {
            if let Ok((host, port)) = split_target(target) {
                *target = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
            }
        }
    }

    fn check(&self, errors: &mut ValidationError) {
        if let Err(message) = split_target(&self.target) {
            errors.add("target", message);
        }
        check_range("weight", self.weight, 0, 65535, errors);
        check_tags(&self.tags, errors);
    }

    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> Option<&str> {
        None
    }
    fn tags(&self) -> &[String] {
        &self.tags
    }
    fn parent(&self) -> Option<Uuid> {
        Some(self.upstream.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{build, Build};

    fn create(input: Value) -> Result<Target, ValidationError> {
        let mut input = input;
        input["upstream"] = json!({"id": Uuid::nil()});
        build::<Target>(Build::Create { id: Uuid::now_v7() }, &input, 1)
    }

    #[test]
    fn the_port_defaults_to_8000_and_is_stored() {
        assert_eq!(
            create(json!({"target": "a.internal"})).unwrap().target,
            "a.internal:8000"
        );
        assert_eq!(
            create(json!({"target": "10.0.0.1:81"})).unwrap().target,
            "10.0.0.1:81"
        );
        let t = create(json!({"target": "[::1]"})).unwrap();
        assert_eq!(
            (t.target.as_str(), t.host_port()),
            ("[::1]:8000", Some(("::1", 8000)))
        );
        assert_eq!(create(json!({"target": "a:1"})).unwrap().weight, 100);
    }

    #[test]
    fn bad_targets_and_weights_name_the_field() {
        for bad in ["a:99999", "bad host:80", "[::1", ""] {
            let e = create(json!({ "target": bad })).unwrap_err();
            assert!(e.fields.contains_key("target"), "{bad}: {e:?}");
        }
        let e = create(json!({"target": "a:1", "weight": 70000})).unwrap_err();
        assert!(e.fields.contains_key("weight"));
    }
}
