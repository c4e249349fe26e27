//! The compiled configuration of one control plane: what an edge loads, stores as last-known-good
//! and reports back by version and hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Certificate, Route, Service, Sni, Target, Upstream};

/// Bumped when the snapshot layout changes incompatibly.
pub const SNAPSHOT_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub control_plane_id: Uuid,
    pub organization_id: Uuid,
    pub version: i64,
    /// `sha256:` and the hex digest of the content (hostnames and entities): equal content gives
    /// an equal hash whatever the version number.
    pub hash: String,
    /// The Host names a shared edge selects this control plane by.
    pub hostnames: Vec<String>,
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub targets: Vec<Target>,
    /// Private keys are sealed for this control plane (see [`crate::secret`]).
    pub certificates: Vec<Certificate>,
    pub snis: Vec<Sni>,
}

/// The gateway entities of one control plane, in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entities {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub targets: Vec<Target>,
    pub certificates: Vec<Certificate>,
    pub snis: Vec<Sni>,
}

#[derive(Serialize)]
struct Content<'a> {
    hostnames: &'a [String],
    services: &'a [Service],
    routes: &'a [Route],
    upstreams: &'a [Upstream],
    targets: &'a [Target],
    certificates: &'a [Certificate],
    snis: &'a [Sni],
}

impl Snapshot {
    /// A snapshot of services and routes only.
    pub fn compile(
        control_plane_id: Uuid,
        organization_id: Uuid,
        version: i64,
        hostnames: Vec<String>,
        services: Vec<Service>,
        routes: Vec<Route>,
    ) -> Self {
        let entities = Entities {
            services,
            routes,
            ..Entities::default()
        };
        Snapshot::of(
            control_plane_id,
            organization_id,
            version,
            hostnames,
            entities,
        )
    }

    /// Builds a snapshot in canonical order (entities by id) and computes its hash.
    pub fn of(
        control_plane_id: Uuid,
        organization_id: Uuid,
        version: i64,
        mut hostnames: Vec<String>,
        entities: Entities,
    ) -> Self {
        let Entities {
            mut services,
            mut routes,
            mut upstreams,
            mut targets,
            mut certificates,
            mut snis,
        } = entities;
        hostnames.sort();
        hostnames.dedup();
        services.sort_by_key(|s| s.id);
        routes.sort_by_key(|r| r.id);
        upstreams.sort_by_key(|u| u.id);
        targets.sort_by_key(|t| t.id);
        certificates.sort_by_key(|c| c.id);
        snis.sort_by_key(|s| s.id);
        let mut snapshot = Snapshot {
            format: SNAPSHOT_FORMAT,
            control_plane_id,
            organization_id,
            version,
            hash: String::new(),
            hostnames,
            services,
            routes,
            upstreams,
            targets,
            certificates,
            snis,
        };
        snapshot.hash = snapshot.content_hash();
        snapshot
    }

    /// Whether the stored hash matches the content (a torn or edited file does not).
    pub fn verify(&self) -> bool {
        self.format == SNAPSHOT_FORMAT && self.content_hash() == self.hash
    }

    fn content_hash(&self) -> String {
        content_hash(&Content {
            hostnames: &self.hostnames,
            services: &self.services,
            routes: &self.routes,
            upstreams: &self.upstreams,
            targets: &self.targets,
            certificates: &self.certificates,
            snis: &self.snis,
        })
    }
}

fn content_hash(content: &Content<'_>) -> String {
    // Serializing plain structs and vectors cannot fail.
    let bytes = serde_json::to_vec(content).unwrap_or_default();
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
