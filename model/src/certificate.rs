//! Certificates the edge terminates TLS with, and the SNIs that select them. Private keys are
//! secret fields: sealed at rest (see [`crate::secret`]) and never returned by the API.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::entity::{check_tags, Entity, ForeignKey};
use crate::hostname::validate_host;
use crate::secret::is_sealed;
use crate::ValidationError;

/// A Kong certificate: a PEM chain and its private key, optionally with an alternate pair (an
/// ECDSA one beside RSA, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub id: Uuid,
    /// PEM: the leaf first, then intermediates.
    pub cert: String,
    /// PEM private key. Write-only: the API never returns it.
    pub key: String,
    pub cert_alt: Option<String>,
    /// Write-only, like `key`.
    pub key_alt: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A Kong SNI: a server name (exact or `*.` wildcard) that selects a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sni {
    pub id: Uuid,
    pub name: String,
    pub certificate: ForeignKey,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Certificate {
    /// The leaf and chain of `cert`, DER-encoded.
    pub fn chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("invalid PEM certificate: {e}"))?;
        if chain.is_empty() {
            return Err("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)".into());
        }
        Ok(chain)
    }

    /// The private key of `key`, DER-encoded.
    pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("invalid PEM private key: {e}"))
    }
}

fn check_pair(
    cert_field: &str,
    cert: &str,
    key_field: &str,
    key: &str,
    errors: &mut ValidationError,
) {
    if let Err(message) = Certificate::chain(cert) {
        errors.add(cert_field, message);
    }
    // A sealed key was checked when it was written; it is opened by the API before a PATCH.
    if !is_sealed(key) {
        if let Err(message) = Certificate::private_key(key) {
            errors.add(key_field, message);
        }
    }
}

impl Entity for Certificate {
    const KIND: &'static str = "certificates";
    const SINGULAR: &'static str = "certificate";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "cert",
        "key",
        "cert_alt",
        "key_alt",
        "tags",
        "created_at",
        "updated_at",
    ];
    const SECRET_FIELDS: &'static [&'static str] = &["key", "key_alt"];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({ "cert_alt": null, "key_alt": null, "tags": [] }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn check(&self, errors: &mut ValidationError) {
        check_pair("cert", &self.cert, "key", &self.key, errors);
        match (&self.cert_alt, &self.key_alt) {
            (Some(cert), Some(key)) => check_pair("cert_alt", cert, "key_alt", key, errors),
            (Some(_), None) => errors.add("key_alt", "required when 'cert_alt' is set"),
            (None, Some(_)) => errors.add("cert_alt", "required when 'key_alt' is set"),
            (None, None) => {}
        }
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
}

impl Entity for Sni {
    const KIND: &'static str = "snis";
    const SINGULAR: &'static str = "sni";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "certificate",
        "tags",
        "created_at",
        "updated_at",
    ];

    fn defaults() -> Map<String, Value> {
        let Value::Object(map) = json!({ "tags": [] }) else {
            unreachable!("a json! object literal is an object")
        };
        map
    }

    fn expand_input(input: &mut Map<String, Value>, _errors: &mut ValidationError) {
        if let Some(Value::String(name)) = input.get_mut("name") {
            *name = name.to_ascii_lowercase();
        }
    }

    fn check(&self, errors: &mut ValidationError) {
        if let Err(message) = validate_host(&self.name, true) {
            errors.add("name", message);
        } else if self.name.ends_with(".*") {
            errors.add(
                "name",
                "only a leading wildcard ('*.example.com') is allowed in an SNI",
            );
        }
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
    fn parent(&self) -> Option<Uuid> {
        Some(self.certificate.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::{build, Build};

    #[test]
    fn certificates_must_be_pem() {
        let e = build::<Certificate>(
            Build::Create { id: Uuid::now_v7() },
            &json!({"cert": "nope", "key": "nope"}),
            1,
        )
        .unwrap_err();
        assert!(
            e.fields.contains_key("cert") && e.fields.contains_key("key"),
            "{e:?}"
        );
        let e = build::<Certificate>(
            Build::Create { id: Uuid::now_v7() },
            &json!({"cert": "x"}),
            1,
        )
        .unwrap_err();
        assert_eq!(e.fields["key"], "required field missing");
    }

    #[test]
    fn snis_are_lowercase_hosts_with_leading_wildcards_only() {
        let sni = |name: &str| {
            build::<Sni>(
                Build::Create { id: Uuid::now_v7() },
                &json!({"name": name, "certificate": {"id": Uuid::nil()}}),
                1,
            )
        };
        assert_eq!(sni("API.Example.com").unwrap().name, "api.example.com");
        assert!(sni("*.example.com").is_ok());
        assert!(sni("example.*").unwrap_err().fields.contains_key("name"));
        assert!(sni("bad name").unwrap_err().fields.contains_key("name"));
    }
}
