//! The set of control planes an edge serves, as one immutable value swapped atomically: each
//! control plane's compiled router plus the Host index a shared edge picks a control plane by.
//! Requests load the current value once and keep it until they finish.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tollgate_model::hostname::host_matches;
use tollgate_model::secret::MasterKey;
use tollgate_model::{AppliedConfig, Snapshot};
use uuid::Uuid;

use crate::router::Router;
use crate::tls::SniTable;

/// One control plane's config, compiled.
#[derive(Debug)]
pub struct LoadedControlPlane {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub version: i64,
    pub hash: String,
    pub hostnames: Vec<String>,
    pub router: Router,
    /// The certificates the TLS listener serves for this control plane's SNIs.
    pub certificates: SniTable,
}

impl LoadedControlPlane {
    /// Builds the router and indexes of a snapshot. Slow for big configs: call it off the request
    /// path.
    pub fn compile(snapshot: &Snapshot, master_key: Option<&MasterKey>) -> LoadedControlPlane {
        LoadedControlPlane {
            id: snapshot.control_plane_id,
            organization_id: snapshot.organization_id,
            version: snapshot.version,
            hash: snapshot.hash.clone(),
            hostnames: snapshot
                .hostnames
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            router: Router::compile(&snapshot.services, &snapshot.routes),
            certificates: SniTable::compile(snapshot, master_key),
        }
    }

    pub fn applied(&self) -> AppliedConfig {
        AppliedConfig {
            control_plane_id: self.id,
            version: self.version,
            hash: self.hash.clone(),
        }
    }
}

/// Every control plane served, and how a request's Host selects one.
#[derive(Debug, Default)]
pub struct ServedConfig {
    /// `Some` on an edge dedicated to one control plane: every request goes there.
    only: Option<Uuid>,
    by_id: BTreeMap<Uuid, Arc<LoadedControlPlane>>,
    exact_hosts: HashMap<String, Arc<LoadedControlPlane>>,
    /// Most specific (longest) first.
    wildcard_hosts: Vec<(String, Arc<LoadedControlPlane>)>,
}

impl ServedConfig {
    pub fn get(&self, id: Uuid) -> Option<&Arc<LoadedControlPlane>> {
        self.by_id.get(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The control plane for a request's host (lowercase, no port).
    pub fn select(&self, host: &str) -> Option<&Arc<LoadedControlPlane>> {
        if let Some(only) = self.only {
            return self.by_id.get(&only);
        }
        if let Some(cp) = self.exact_hosts.get(host) {
            return Some(cp);
        }
        self.wildcard_hosts
            .iter()
            .find(|(pattern, _)| host_matches(pattern, host))
            .map(|(_, cp)| cp)
    }

    /// A config holding `control_planes`.
    pub fn of(
        only: Option<Uuid>,
        control_planes: impl IntoIterator<Item = Arc<LoadedControlPlane>>,
    ) -> ServedConfig {
        let by_id = control_planes.into_iter().map(|cp| (cp.id, cp)).collect();
        ServedConfig::index(only, by_id)
    }

    /// A copy with `cp` added or replaced.
    pub fn with(&self, cp: Arc<LoadedControlPlane>) -> ServedConfig {
        let mut by_id = self.by_id.clone();
        by_id.insert(cp.id, cp);
        ServedConfig::index(self.only, by_id)
    }

    /// A copy without the control plane `id`.
    pub fn without(&self, id: Uuid) -> ServedConfig {
        let mut by_id = self.by_id.clone();
        by_id.remove(&id);
        ServedConfig::index(self.only, by_id)
    }

    /// What is applied, by control plane id.
    pub fn applied(&self) -> Vec<AppliedConfig> {
        self.by_id.values().map(|cp| cp.applied()).collect()
    }

    fn index(only: Option<Uuid>, by_id: BTreeMap<Uuid, Arc<LoadedControlPlane>>) -> ServedConfig {
        let mut exact_hosts = HashMap::new();
        let mut wildcard_hosts = Vec::new();
        if only.is_none() {
            // Walking in id order makes the winner of a hostname claimed twice deterministic.
            for cp in by_id.values() {
                for host in &cp.hostnames {
                    if host.contains('*') {
                        wildcard_hosts.push((host.clone(), cp.clone()));
                    } else if let Some(first) = exact_hosts.get(host) {
                        let first: &Arc<LoadedControlPlane> = first;
                        tracing::warn!(%host, kept = %first.id, ignored = %cp.id, "hostname claimed by two control planes");
                    } else {
                        exact_hosts.insert(host.clone(), cp.clone());
                    }
                }
            }
            wildcard_hosts.sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.len()));
        }
        ServedConfig {
            only,
            by_id,
            exact_hosts,
            wildcard_hosts,
        }
    }
}
