//! The compiled configuration of one control plane: what an edge loads, stores as last-known-good
//! and reports back by version and hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Route, Service};

/// Bumped when the snapshot layout changes incompatibly.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub control_plane_id: Uuid,
    pub organization_id: Uuid,
    pub version: i64,
    /// `sha256:` and the hex digest of the content (hostnames, services, routes): equal content
    /// gives an equal hash whatever the version number.
    pub hash: String,
    /// The Host names a shared edge selects this control plane by.
    pub hostnames: Vec<String>,
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
}

#[derive(Serialize)]
struct Content<'a> {
    hostnames: &'a [String],
    services: &'a [Service],
    routes: &'a [Route],
}

impl Snapshot {
    /// Builds a snapshot in canonical order (entities by id) and computes its hash.
    pub fn compile(
        control_plane_id: Uuid,
        organization_id: Uuid,
        version: i64,
        mut hostnames: Vec<String>,
        mut services: Vec<Service>,
        mut routes: Vec<Route>,
    ) -> Self {
        hostnames.sort();
        hostnames.dedup();
        services.sort_by_key(|s| s.id);
        routes.sort_by_key(|r| r.id);
        let hash = content_hash(&hostnames, &services, &routes);
        Snapshot {
            format: SNAPSHOT_FORMAT,
            control_plane_id,
            organization_id,
            version,
            hash,
            hostnames,
            services,
            routes,
        }
    }

    /// Whether the stored hash matches the content (a torn or edited file does not).
    pub fn verify(&self) -> bool {
        self.format == SNAPSHOT_FORMAT
            && content_hash(&self.hostnames, &self.services, &self.routes) == self.hash
    }
}

fn content_hash(hostnames: &[String], services: &[Service], routes: &[Route]) -> String {
    let content = Content {
        hostnames,
        services,
        routes,
    };
    // Serializing plain structs and vectors cannot fail.
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_not_version_or_order() {
        let cp = Uuid::now_v7();
        let org = Uuid::now_v7();
        let a = Snapshot::compile(cp, org, 1, vec!["b".into(), "a".into()], vec![], vec![]);
        let b = Snapshot::compile(cp, org, 7, vec!["a".into(), "b".into()], vec![], vec![]);
        let c = Snapshot::compile(cp, org, 1, vec!["a".into()], vec![], vec![]);
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert!(a.verify());
        let mut torn = a.clone();
        torn.hostnames.push("x".into());
        assert!(!torn.verify());
    }
}
