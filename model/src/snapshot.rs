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

    /// Checks a snapshot's JSON, as [`Snapshot`] serializes it, against the hash it carries,
    /// without decoding or encoding anything: the content is the tail of that JSON from
    /// `"hostnames"` on, the fields [`Content`] hashes in the same order. So it can run beside
    /// decoding. Returns the hash when it matches; the snapshot decoded from `body` then verifies
    /// if its `hash` is that one and its `format` is [`SNAPSHOT_FORMAT`]. `None` proves nothing
    /// (another layout, another serializer): decode and call [`Snapshot::verify`].
    pub fn hash_of_encoded(body: &[u8]) -> Option<&str> {
        // The fields before the content (a number, two ids, a number, the hash) take about
        // 200 bytes and cannot hold the marker, so its first match is the split.
        const MARKER: &[u8] = b",\"hostnames\":";
        const HASH_FIELD: &[u8] = b"\"hash\":\"";
        let front = &body[..body.len().min(1024)];
        let split = front.windows(MARKER.len()).position(|w| w == MARKER)?;
        let fields = front[..split].strip_suffix(b"\"")?;
        let start = fields
            .windows(HASH_FIELD.len())
            .rposition(|w| w == HASH_FIELD)?
            + HASH_FIELD.len();
        let stated = std::str::from_utf8(&fields[start..]).ok()?;
        let mut hasher = Sha256::new();
        hasher.update(b"{");
        hasher.update(&body[split + 1..]);
        let digest = hasher.finalize();
        let matches = stated
            .strip_prefix("sha256:")
            .is_some_and(|hex_digest| hex_digest == hex::encode(digest));
        matches.then_some(stated)
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
    // Streamed into the hasher (sha2's hashers are `io::Write`) through a buffer: a big
    // snapshot's JSON is MiBs, not worth holding whole just to hash it.
    let mut hashing = std::io::BufWriter::with_capacity(64 * 1024, Sha256::new());
    // Serializing plain structs and vectors into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut hashing, content);
    let digest = match hashing.into_inner() {
        Ok(hasher) => hasher.finalize(),
        Err(_) => Sha256::digest(b""),
    };
    format!("sha256:{}", hex::encode(digest))
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

    #[test]
    fn the_hash_of_an_encoded_snapshot_is_checked_without_decoding() {
        let route: Route = crate::entity::build(
            crate::entity::Build::Create { id: Uuid::now_v7() },
            &serde_json::json!({"paths": ["/a"], "tags": ["\"hostnames\":"]}),
            1,
        )
        .unwrap();
        let snapshot = Snapshot::compile(
            Uuid::now_v7(),
            Uuid::now_v7(),
            3,
            vec!["a.test".into()],
            vec![],
            vec![route],
        );
        let body = serde_json::to_vec(&snapshot).unwrap();
        assert_eq!(
            Snapshot::hash_of_encoded(&body),
            Some(snapshot.hash.as_str())
        );

        // Any change to the content, or another layout, is not confirmed.
        let edited = String::from_utf8(body.clone())
            .unwrap()
            .replace("a.test", "b.test");
        assert_eq!(Snapshot::hash_of_encoded(edited.as_bytes()), None);
        let pretty = serde_json::to_vec_pretty(&snapshot).unwrap();
        assert_eq!(Snapshot::hash_of_encoded(&pretty), None);
        let torn = &body[..body.len() - 2];
        assert_eq!(Snapshot::hash_of_encoded(torn), None);
        assert_eq!(Snapshot::hash_of_encoded(b""), None);
    }
}
