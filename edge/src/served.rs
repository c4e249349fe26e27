//! The set of control planes an edge serves, as one immutable value swapped atomically: each
//! control plane's compiled router and upstream balancers, plus the Host index a shared edge picks
//! a control plane by. Requests load the current value once and keep it until they finish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tollgate_model::hostname::host_matches;
use tollgate_model::secret::MasterKey;
use tollgate_model::{AppliedConfig, Snapshot, TargetHealthReport};
use uuid::Uuid;

use crate::balancer::targets::TargetRegistry;
use crate::balancer::UpstreamBalancer;
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
    /// Every upstream's balancer, by upstream name.
    pub balancers: BTreeMap<String, Arc<UpstreamBalancer>>,
    /// The balancer of each service whose host names an upstream.
    balanced_services: HashMap<Uuid, Arc<UpstreamBalancer>>,
    /// Routes with `request_buffering: false`.
    unbuffered_routes: HashSet<Uuid>,
}

impl LoadedControlPlane {
    /// Builds the router, balancers and indexes of a snapshot, attaching its targets to the state
    /// `targets` keeps across swaps. Slow for big configs: call it off the request path.
    pub fn compile(
        snapshot: &Snapshot,
        master_key: Option<&MasterKey>,
        targets: &TargetRegistry,
    ) -> LoadedControlPlane {
        LoadedControlPlane::compile_after(snapshot, master_key, targets, None)
    }

    /// Like [`LoadedControlPlane::compile`], reusing what `previous` (the version this one
    /// replaces) compiled where it is unchanged: the router's regexes.
    pub fn compile_after(
        snapshot: &Snapshot,
        master_key: Option<&MasterKey>,
        targets: &TargetRegistry,
        previous: Option<&LoadedControlPlane>,
    ) -> LoadedControlPlane {
        let balancers: BTreeMap<String, Arc<UpstreamBalancer>> = snapshot
            .upstreams
            .iter()
            .map(|upstream| {
                let balancer = UpstreamBalancer::compile(
                    snapshot.control_plane_id,
                    upstream,
                    &snapshot.targets,
                    targets,
                );
                (upstream.name.to_ascii_lowercase(), Arc::new(balancer))
            })
            .collect();
        targets.forget_unused();
        let balanced_services = snapshot
            .services
            .iter()
            .filter_map(|service| {
                let balancer = balancers.get(&service.host.to_ascii_lowercase())?;
                Some((service.id, balancer.clone()))
            })
            .collect();
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
            router: Router::compile_after(
                &snapshot.services,
                &snapshot.routes,
                previous.map(|p| &p.router),
            ),
            certificates: SniTable::compile(snapshot, master_key),
            balancers,
            balanced_services,
            unbuffered_routes: snapshot
                .routes
                .iter()
                .filter(|r| !r.request_buffering)
                .map(|r| r.id)
                .collect(),
        }
    }

    /// The upstream a service is balanced over, when its host names one.
    pub fn balancer_for(&self, service: Uuid) -> Option<&Arc<UpstreamBalancer>> {
        self.balanced_services.get(&service)
    }

    /// Whether a route lets the edge buffer request bodies (Kong's `request_buffering`).
    pub fn buffers_requests(&self, route: Uuid) -> bool {
        !self.unbuffered_routes.contains(&route)
    }

    /// The health of every balanced target, as heartbeats report it.
    pub fn target_health(&self) -> impl Iterator<Item = TargetHealthReport> + '_ {
        self.balancers.values().flat_map(move |balancer| {
            balancer
                .targets()
                .iter()
                .enumerate()
                .map(move |(index, target)| TargetHealthReport {
                    control_plane_id: self.id,
                    upstream_id: balancer.upstream.id,
                    target: target.name.clone(),
                    health: balancer.health(index),
                })
        })
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

    pub fn control_planes(&self) -> impl Iterator<Item = &Arc<LoadedControlPlane>> {
        self.by_id.values()
    }

    /// The health of every balanced target of every control plane.
    pub fn target_health(&self) -> Vec<TargetHealthReport> {
        self.by_id
            .values()
            .flat_map(|cp| cp.target_health())
            .collect()
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
