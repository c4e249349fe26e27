//! Active health checks. One task per edge follows the served config and keeps a prober per
//! upstream with active checks on (restarted only when that upstream's config changes). A prober
//! probes its healthy targets every `healthy.interval` seconds and its unhealthy ones every
//! `unhealthy.interval`, at most `concurrency` at a time, and counts what it sees against the
//! active thresholds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Request};
use http_body_util::Empty;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tollgate_model::upstream::ActiveHealthcheck;
use tracing::Instrument;
use uuid::Uuid;

use super::Outcome;
use crate::balancer::UpstreamBalancer;
use crate::served::ServedConfig;
use crate::shutdown::wait_for_shutdown;
use crate::state::EdgeState;
use crate::upstream::forward::{error_chain, timed_out};
use crate::upstream::{probe_client, ProbeClient};

/// How often the served config is looked at for upstreams to start or stop probing.
const CONFIG_POLL: Duration = Duration::from_millis(200);

/// Runs until shutdown.
pub async fn run(state: Arc<EdgeState>, mut shutdown: watch::Receiver<bool>) {
    let mut probers: HashMap<(Uuid, Uuid), Prober> = HashMap::new();
    let mut seen: Option<Arc<ServedConfig>> = None;
    let mut ticks = tokio::time::interval(CONFIG_POLL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
        let served = state.served.load_full();
        if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &served)) {
            continue;
        }
        reconcile(&mut probers, &served);
        seen = Some(served);
    }
}

/// The probing task of one upstream; dropping it stops the task.
struct Prober {
    balancer: Arc<UpstreamBalancer>,
    task: JoinHandle<()>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reconcile(probers: &mut HashMap<(Uuid, Uuid), Prober>, served: &ServedConfig) {
    let mut wanted = HashSet::new();
    for cp in served.control_planes() {
        for balancer in cp.balancers.values() {
            if !balancer.upstream.healthchecks.active_enabled() || balancer.targets().is_empty() {
                continue;
            }
            let key = (cp.id, balancer.upstream.id);
            wanted.insert(key);
            if probers
                .get(&key)
                .is_some_and(|p| p.balancer.same_config(balancer))
            {
                continue;
            }
            let span = tracing::info_span!("upstream_checks", control_plane = %cp.id, upstream = %balancer.name());
            let task = tokio::spawn(check_upstream(balancer.clone()).instrument(span));
            probers.insert(
                key,
                Prober {
                    balancer: balancer.clone(),
                    task,
                },
            );
        }
    }
    probers.retain(|key, _| wanted.contains(key));
}

async fn check_upstream(balancer: Arc<UpstreamBalancer>) {
    let check = &balancer.upstream.healthchecks.active;
    let probe = match Probe::new(check) {
        Ok(probe) => probe,
        Err(e) => {
            tracing::warn!(error = %e, "active health checks cannot run");
            return;
        }
    };
    tracing::debug!(kind = %check.kind, "active health checks started");
    tokio::join!(
        probe_rounds(&balancer, &probe, true, check.healthy.interval),
        probe_rounds(&balancer, &probe, false, check.unhealthy.interval),
    );
}

/// Probes the targets that are `healthy` (or not) every `interval` seconds; 0 never does.
async fn probe_rounds(balancer: &UpstreamBalancer, probe: &Probe, healthy: bool, interval: f64) {
    if !(interval > 0.0 && interval.is_finite()) {
        return;
    }
    let period = Duration::from_secs_f64(interval);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let concurrency =
        usize::try_from(balancer.upstream.healthchecks.active.concurrency.max(1)).unwrap_or(1);
    loop {
        ticks.tick().await;
        let due: Vec<usize> = (0..balancer.targets().len())
            .filter(|i| balancer.targets()[*i].state.is_healthy() == healthy)
            .collect();
        futures::stream::iter(due)
            .for_each_concurrent(concurrency, |index| async move {
                let outcome = probe.run(balancer, index).await;
                tracing::trace!(target = %balancer.targets()[index].name, ?outcome, "probed");
                if let Some(outcome) = outcome {
                    balancer.record_active(index, outcome);
                }
            })
            .await;
    }
}

/// How a target is probed.
struct Probe {
    timeout: Duration,
    /// `None` for `tcp` (and for now `grpc`/`grpcs`): a connection is a success.
    http: Option<HttpProbe>,
}

/// A `GET` of `http_path`; the status decides.
struct HttpProbe {
    client: ProbeClient,
    scheme: &'static str,
    path: String,
    headers: HeaderMap,
}

impl Probe {
    fn new(check: &ActiveHealthcheck) -> Result<Probe, rustls::Error> {
        let timeout = Duration::try_from_secs_f64(check.timeout)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        let scheme = match check.kind.as_str() {
            "http" => "http",
            "https" => "https",
            _ => {
                return Ok(Probe {
                    timeout,
                    http: None,
                })
            }
        };
        let mut headers = HeaderMap::new();
        for (name, values) in check.headers.iter().flatten() {
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                continue;
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(name.clone(), value);
                }
            }
        }
        let client = probe_client(
            check.https_verify_certificate,
            check.https_sni.as_deref().filter(|_| scheme == "https"),
            timeout,
        )?;
        Ok(Probe {
            timeout,
            http: Some(HttpProbe {
                client,
                scheme,
                path: check.http_path.clone(),
                headers,
            }),
        })
    }

    /// What probing target `index` says; `None` when its status is in neither list.
    async fn run(&self, balancer: &UpstreamBalancer, index: usize) -> Option<Outcome> {
        let target = balancer.targets().get(index)?;
        let resolved = |resolved: bool| target.state.record_resolution(resolved);
        let Some(http) = &self.http else {
            let connect = TcpStream::connect((target.host.as_str(), target.port));
            return match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(_)) => {
                    resolved(true);
                    Some(Outcome::Success)
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => Some(Outcome::Timeout),
                Ok(Err(e)) => {
                    // What tokio's resolver says when the name does not resolve.
                    resolved(!e.to_string().contains("failed to lookup address"));
                    Some(Outcome::TcpFailure)
                }
                Err(_) => Some(Outcome::Timeout),
            };
        };
        let uri = format!("{}://{}{}", http.scheme, target.authority(), http.path);
        let mut request = Request::get(uri).body(Empty::<Bytes>::new()).ok()?;
        *request.headers_mut() = http.headers.clone();
        if let Some(host) = balancer.host_header(index, http.scheme) {
            request.headers_mut().insert(HOST, host);
        }
        match tokio::time::timeout(self.timeout, http.client.request(request)).await {
            Ok(Ok(response)) => {
                resolved(true);
                balancer.active_outcome(response.status().as_u16())
            }
            Ok(Err(e)) => {
                let cause = error_chain(&e);
                tracing::trace!(target = %target.name, %cause, "probe failed");
                if !timed_out(&e) {
                    resolved(!cause.contains("dns error"));
                }
                Some(if timed_out(&e) {
                    Outcome::Timeout
                } else {
                    Outcome::TcpFailure
                })
            }
            Err(_) => Some(Outcome::Timeout),
        }
    }
}
