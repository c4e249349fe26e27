//! Balancing a service over an upstream's targets. A snapshot's upstreams are compiled into
//! [`UpstreamBalancer`]s when it loads; each picks a target per attempt with the upstream's
//! algorithm (smooth weighted round-robin, least-connections, consistent hashing, latency),
//! skipping unhealthy targets and those already tried by the request.

pub mod hash_on;
pub mod ring;
pub mod targets;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::HeaderValue;
use tollgate_model::service::default_port;
use tollgate_model::{Target, TargetHealth, Upstream};
use uuid::Uuid;

use crate::health::{log_transition, Outcome, StatusLists, Thresholds};
use hash_on::{HashOn, RequestKeys};
use ring::Ring;
use targets::{TargetKey, TargetRegistry, TargetState};

/// One target in rotation (weight above 0).
#[derive(Debug)]
pub struct BalancedTarget {
    /// As configured, `host:port`.
    pub name: String,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub state: Arc<TargetState>,
}

impl BalancedTarget {
    /// `host:port` for a URI, with brackets for IPv6.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug)]
enum Algorithm {
    /// nginx's smooth weighted round-robin: the current weight of each target.
    RoundRobin(Mutex<Vec<i64>>),
    LeastConnections,
    ConsistentHashing {
        ring: Ring,
        hash_on: HashOn,
    },
    Latency,
}

/// What the health checks of an upstream count, compiled.
#[derive(Debug)]
struct Checks {
    active: Thresholds,
    active_statuses: StatusLists,
    passive: Thresholds,
    passive_statuses: StatusLists,
    /// Minimum share of healthy weight, in percent, for the upstream to be used.
    threshold: f64,
}

/// Where a request's hash falls on the ring, and the cookie to set when it was made up.
pub struct HashPoint {
    position: usize,
    pub set_cookie: Option<HeaderValue>,
}

#[derive(Debug)]
pub struct UpstreamBalancer {
    pub control_plane: Uuid,
    /// The upstream as configured.
    pub upstream: Upstream,
    targets: Vec<BalancedTarget>,
    algorithm: Algorithm,
    /// `None` when neither active nor passive checks are configured: every target is used.
    checks: Option<Checks>,
    /// Rotates where ties are broken, so equal targets take turns.
    cursor: AtomicUsize,
}

impl UpstreamBalancer {
    /// Builds the balancer of `upstream` over `targets` (all of the snapshot's targets may be
    /// given; others' are ignored), attached to the states kept in `registry`.
    pub fn compile(
        control_plane: Uuid,
        upstream: &Upstream,
        targets: &[Target],
        registry: &TargetRegistry,
    ) -> UpstreamBalancer {
        let mut balanced: Vec<BalancedTarget> = Vec::new();
        for target in targets.iter().filter(|t| t.upstream.id == upstream.id) {
            let Some((host, port)) = target.host_port() else {
                tracing::warn!(%control_plane, upstream = %upstream.name, target = %target.target, "skipping a target that does not parse");
                continue;
            };
            let weight = u32::try_from(target.weight.clamp(0, 65535)).unwrap_or(0);
            // The same address twice: the newer (later id) entry wins, as a Kong upsert would.
            balanced.retain(|t| t.name != target.target);
            if weight == 0 {
                continue;
            }
            balanced.push(BalancedTarget {
                name: target.target.clone(),
                host: host.to_string(),
                port,
                weight,
                state: registry.attach(TargetKey {
                    control_plane,
                    upstream: upstream.id,
                    target: target.target.clone(),
                }),
            });
        }
        let algorithm = match upstream.algorithm.as_str() {
            "least-connections" => Algorithm::LeastConnections,
            "latency" => Algorithm::Latency,
            "consistent-hashing" => {
                let points: Vec<(&str, u32)> = balanced
                    .iter()
                    .map(|t| (t.name.as_str(), t.weight))
                    .collect();
                let slots = usize::try_from(upstream.slots).unwrap_or(10000);
                Algorithm::ConsistentHashing {
                    ring: Ring::build(&points, slots),
                    hash_on: HashOn::compile(upstream),
                }
            }
            _ => Algorithm::RoundRobin(Mutex::new(vec![0; balanced.len()])),
        };
        let h = &upstream.healthchecks;
        let checks = (h.active_enabled() || h.passive_enabled()).then(|| Checks {
            active: Thresholds::active(&h.active),
            active_statuses: StatusLists::new(
                &h.active.healthy.http_statuses,
                &h.active.unhealthy.http_statuses,
            ),
            passive: Thresholds::passive(&h.passive),
            passive_statuses: StatusLists::new(
                &h.passive.healthy.http_statuses,
                &h.passive.unhealthy.http_statuses,
            ),
            threshold: h.threshold,
        });
        UpstreamBalancer {
            control_plane,
            upstream: upstream.clone(),
            targets: balanced,
            algorithm,
            checks,
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.upstream.name
    }

    pub fn targets(&self) -> &[BalancedTarget] {
        &self.targets
    }

    /// Whether `other` balances the same targets with the same settings.
    pub fn same_config(&self, other: &UpstreamBalancer) -> bool {
        self.upstream == other.upstream
            && self.targets.len() == other.targets.len()
            && self
                .targets
                .iter()
                .zip(&other.targets)
                .all(|(a, b)| a.name == b.name && a.weight == b.weight)
    }

    /// A target's health as Kong reports it.
    pub fn health(&self, index: usize) -> TargetHealth {
        match (&self.checks, self.targets.get(index)) {
            (_, Some(target)) if target.state.dns_error() => TargetHealth::DnsError,
            (None, _) => TargetHealth::HealthchecksOff,
            (Some(_), Some(target)) if target.state.is_healthy() => TargetHealth::Healthy,
            (Some(_), _) => TargetHealth::Unhealthy,
        }
    }

    /// For consistent hashing, where the request falls on the ring.
    pub fn hash_point(&self, keys: &RequestKeys<'_>) -> Option<HashPoint> {
        let Algorithm::ConsistentHashing { ring, hash_on } = &self.algorithm else {
            return None;
        };
        let hashed = hash_on.value(keys);
        Some(HashPoint {
            position: ring.position_of(hashed.value.as_bytes()),
            set_cookie: hashed.set_cookie,
        })
    }

    /// The target for the next attempt: healthy, and not one of `tried` unless all healthy ones
    /// were. `None` when no target may be used. A target whose name did not resolve counts as
    /// unhealthy until it is due to be tried again.
    pub fn pick(&self, hash: Option<&HashPoint>, tried: &[usize]) -> Option<usize> {
        // The clock is read only when a target's name has failed to resolve.
        let now = std::cell::OnceCell::new();
        let healthy: Vec<bool> = self
            .targets
            .iter()
            .map(|t| {
                (self.checks.is_none() || t.state.is_healthy())
                    && !(t.state.dns_error()
                        && t.state
                            .resolving_failed_recently(*now.get_or_init(Instant::now)))
            })
            .collect();
        if let Some(checks) = &self.checks {
            let weight = |only_healthy: bool| -> f64 {
                self.targets
                    .iter()
                    .zip(&healthy)
                    .filter(|(_, h)| **h || !only_healthy)
                    .map(|(t, _)| f64::from(t.weight))
                    .sum()
            };
            if weight(true) * 100.0 < checks.threshold * weight(false) {
                return None;
            }
        }
        let fresh = |i: usize| healthy[i] && !tried.contains(&i);
        self.pick_among(hash, &fresh).or_else(|| {
            if tried.is_empty() {
                None
            } else {
                self.pick_among(hash, &|i: usize| healthy[i])
            }
        })
    }

    fn pick_among(
        &self,
        hash: Option<&HashPoint>,
        candidate: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if !(0..self.targets.len()).any(candidate) {
            return None;
        }
        match &self.algorithm {
            Algorithm::RoundRobin(current) => {
                let mut current = current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, target) in self.targets.iter().enumerate() {
                    if !candidate(i) {
                        continue;
                    }
                    current[i] += i64::from(target.weight);
                    total += i64::from(target.weight);
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let best = best?;
                current[best] -= total;
                Some(best)
            }
            Algorithm::LeastConnections => self.lowest(candidate, |t| {
                Some((t.state.in_flight() as f64 + 1.0) / f64::from(t.weight))
            }),
            Algorithm::Latency => {
                let now = Instant::now();
                // Targets without a measurement yet go first, so every one gets measured.
                self.lowest(candidate, |t| {
                    let latency = t.state.latency(now)?;
                    Some(latency * (t.state.in_flight() as f64 + 1.0) / f64::from(t.weight))
                })
            }
            Algorithm::ConsistentHashing { ring, .. } => {
                let position = hash.map_or(0, |h| h.position);
                ring.walk(position).find(|i| candidate(*i))
            }
        }
    }

    /// The candidate with the lowest score (`None` scores lowest of all); ties taken in turn.
    fn lowest(
        &self,
        candidate: &dyn Fn(usize) -> bool,
        score: impl Fn(&BalancedTarget) -> Option<f64>,
    ) -> Option<usize> {
        let count = self.targets.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, Option<f64>)> = None;
        for step in 0..count {
            let i = (start + step) % count;
            if !candidate(i) {
                continue;
            }
            let s = score(&self.targets[i]);
            let better = match (best, s) {
                (None, _) => true,
                // An unmeasured best stays: nothing scores lower, and ties keep the first.
                (Some((_, None)), _) => false,
                (Some((_, Some(_))), None) => true,
                (Some((_, Some(b))), Some(s)) => s < b,
            };
            if better {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The `Host` a target is sent (unless the route preserves the client's): the upstream's
    /// `host_header` or the target's host, with the port when it is not the scheme's default.
    pub fn host_header(&self, index: usize, protocol: &str) -> Option<HeaderValue> {
        let target = self.targets.get(index)?;
        let host = match &self.upstream.host_header {
            Some(host) => host.clone(),
            None if target.host.contains(':') => format!("[{}]", target.host),
            None => target.host.clone(),
        };
        let value = if target.port == default_port(protocol) {
            host
        } else {
            format!("{host}:{}", target.port)
        };
        HeaderValue::from_str(&value).ok()
    }

    /// Counts a proxied attempt's outcome (passive checks).
    pub fn record_passive(&self, index: usize, outcome: Outcome) {
        if let Some(checks) = &self.checks {
            self.record(index, outcome, &checks.passive, "passive");
        }
    }

    /// Counts a probe's outcome (active checks).
    pub fn record_active(&self, index: usize, outcome: Outcome) {
        if let Some(checks) = &self.checks {
            self.record(index, outcome, &checks.active, "active");
        }
    }

    /// What a proxied response's status says about its target.
    pub fn passive_outcome(&self, status: u16) -> Option<Outcome> {
        Outcome::of_status(status, &self.checks.as_ref()?.passive_statuses)
    }

    /// What a probe's status says about its target.
    pub fn active_outcome(&self, status: u16) -> Option<Outcome> {
        Outcome::of_status(status, &self.checks.as_ref()?.active_statuses)
    }

    fn record(&self, index: usize, outcome: Outcome, limits: &Thresholds, source: &'static str) {
        let Some(target) = self.targets.get(index) else {
            return;
        };
        if let Some(healthy) = target.state.record(outcome, limits) {
            log_transition(
                self.control_plane,
                self.name(),
                &target.name,
                healthy,
                outcome,
                source,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use tollgate_model::entity::{build, Build};

    fn balancer(upstream: serde_json::Value, targets: &[(&str, i64)]) -> UpstreamBalancer {
        let upstream: Upstream = build(Build::Create { id: Uuid::now_v7() }, &upstream, 1).unwrap();
        let targets: Vec<Target> = targets
            .iter()
            .map(|(target, weight)| {
                let input =
                    json!({"target": target, "weight": weight, "upstream": {"id": upstream.id}});
                build(Build::Create { id: Uuid::now_v7() }, &input, 1).unwrap()
            })
            .collect();
        UpstreamBalancer::compile(Uuid::nil(), &upstream, &targets, &TargetRegistry::default())
    }

    fn picks(b: &UpstreamBalancer, n: usize) -> Vec<usize> {
        (0..n).map(|_| b.pick(None, &[]).unwrap()).collect()
    }

    #[test]
    fn smooth_round_robin_interleaves_by_weight() {
        let b = balancer(json!({"name": "u"}), &[("a:1", 3), ("b:1", 1), ("c:1", 0)]);
        assert_eq!(b.targets().len(), 2);
        assert_eq!(picks(&b, 8), [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn retries_avoid_tried_targets_until_all_were_tried() {
        let b = balancer(json!({"name": "u"}), &[("a:1", 1), ("b:1", 1)]);
        let first = b.pick(None, &[]).unwrap();
        let second = b.pick(None, &[first]).unwrap();
        assert_ne!(first, second);
        assert!(b.pick(None, &[first, second]).is_some());
    }

    #[test]
    fn least_connections_weighs_in_flight_by_weight() {
        let b = balancer(
            json!({"name": "u", "algorithm": "least-connections"}),
            &[("a:1", 100), ("b:1", 200)],
        );
        let _a = b.targets()[0].state.start_request();
        let _b = b.targets()[1].state.start_request();
        // a: 2/100, b: 2/200.
        assert_eq!(picks(&b, 3), [1, 1, 1]);
        let _b2 = b.targets()[1].state.start_request();
        let _b3 = b.targets()[1].state.start_request();
        // a: 2/100, b: 4/200: a tie, taken in turn.
        let mut tie = picks(&b, 2);
        tie.sort_unstable();
        assert_eq!(tie, [0, 1]);
    }

    #[test]
    fn latency_tries_unmeasured_targets_first_then_the_fastest() {
        let b = balancer(
            json!({"name": "u", "algorithm": "latency"}),
            &[("a:1", 1), ("b:1", 1)],
        );
        b.targets()[0]
            .state
            .record_latency(std::time::Duration::from_millis(5));
        assert_eq!(b.pick(None, &[]), Some(1));
        b.targets()[1]
            .state
            .record_latency(std::time::Duration::from_millis(50));
        assert_eq!(picks(&b, 4), [0, 0, 0, 0]);
    }

    #[test]
    fn unhealthy_targets_are_skipped_and_the_threshold_applies() {
        let b = balancer(
            json!({"name": "u", "healthchecks": {"threshold": 60, "passive": {"unhealthy": {"http_failures": 1}}}}),
            &[("a:1", 1), ("b:1", 1)],
        );
        assert_eq!(b.health(0), TargetHealth::Healthy);
        b.record_passive(0, b.passive_outcome(500).unwrap());
        assert_eq!(b.health(0), TargetHealth::Unhealthy);
        // Half the weight is healthy, under the 60 % threshold.
        assert_eq!(b.pick(None, &[]), None);
        let lenient = balancer(
            json!({"name": "u", "healthchecks": {"passive": {"unhealthy": {"http_failures": 1}}}}),
            &[("a:1", 1), ("b:1", 1)],
        );
        lenient.record_passive(0, Outcome::HttpFailure);
        assert_eq!(picks(&lenient, 3), [1, 1, 1]);
        lenient.record_passive(1, Outcome::HttpFailure);
        assert_eq!(lenient.pick(None, &[]), None);
        let off = balancer(json!({"name": "u"}), &[("a:1", 1)]);
        off.record_passive(0, Outcome::HttpFailure);
        assert_eq!(off.health(0), TargetHealth::HealthchecksOff);
    }

    #[test]
    fn host_header_carries_a_non_default_port() {
        let b = balancer(
            json!({"name": "u"}),
            &[("a.internal:80", 1), ("[::1]:8443", 1)],
        );
        assert_eq!(b.host_header(0, "http").unwrap(), "a.internal");
        assert_eq!(b.host_header(0, "https").unwrap(), "a.internal:80");
        assert_eq!(b.host_header(1, "https").unwrap(), "[::1]:8443");
        let named = balancer(
            json!({"name": "u", "host_header": "api.internal"}),
            &[("a:80", 1)],
        );
        assert_eq!(named.host_header(0, "http").unwrap(), "api.internal");
    }
}
