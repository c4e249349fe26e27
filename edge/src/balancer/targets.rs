//! What an edge remembers about each balanced target across config swaps: requests in flight,
//! the response-latency average and health. Compiling a snapshot attaches each target to its
//! state by (control plane, upstream, target), so a swap keeps them; a target that no loaded
//! snapshot holds any more is forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::health::{HealthCounters, Outcome, Thresholds};

/// Kong's latency balancer lets an average decay with this time constant, so a target that was
/// slow a while ago gets tried again.
const LATENCY_DECAY: Duration = Duration::from_secs(10);

/// How long a target whose name did not resolve is left out before it is tried again: Kong's
/// `dns_not_found_ttl` default.
pub const DNS_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub control_plane: Uuid,
    pub upstream: Uuid,
    /// As configured, `host:port`.
    pub target: String,
}

#[derive(Debug)]
pub struct TargetState {
    in_flight: AtomicUsize,
    latency: Mutex<Option<LatencyAverage>>,
    health: Mutex<HealthCounters>,
    /// Mirrors `health`, so picking a target takes no lock.
    healthy: AtomicBool,
    /// When the target's name last failed to resolve, while it has not resolved since.
    dns_failed: Mutex<Option<Instant>>,
    /// Mirrors `dns_failed.is_some()`, so a request to a target that resolves takes no lock.
    dns_error: AtomicBool,
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            in_flight: AtomicUsize::new(0),
            latency: Mutex::new(None),
            health: Mutex::new(HealthCounters::default()),
            healthy: AtomicBool::new(true),
            dns_failed: Mutex::new(None),
            dns_error: AtomicBool::new(false),
        }
    }
}

/// An exponentially weighted moving average of response latency whose weight decays with time.
#[derive(Debug, Clone, Copy)]
struct LatencyAverage {
    seconds: f64,
    at: Instant,
}

impl LatencyAverage {
    fn blended(&self, sample: f64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let kept = (-elapsed / LATENCY_DECAY.as_secs_f64()).exp();
        self.seconds * kept + sample * (1.0 - kept)
    }
}

impl TargetState {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped or released.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Some(self.clone()))
    }

    pub fn record_latency(&self, latency: Duration) {
        let now = Instant::now();
        let sample = latency.as_secs_f64();
        let mut average = lock(&self.latency);
        let seconds = match *average {
            Some(previous) => previous.blended(sample, now),
            None => sample,
        };
        *average = Some(LatencyAverage { seconds, at: now });
    }

    /// The decayed latency average in seconds; `None` before the first response.
    pub fn latency(&self, now: Instant) -> Option<f64> {
        lock(&self.latency).map(|average| average.blended(0.0, now))
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the target's name failed to resolve the last time it was tried (Kong's
    /// `DNS_ERROR`).
    pub fn dns_error(&self) -> bool {
        self.dns_error.load(Ordering::Relaxed)
    }

    /// Whether the target is left out for now because its name did not resolve: for
    /// [`DNS_RETRY_AFTER`] after each failure.
    pub fn resolving_failed_recently(&self, now: Instant) -> bool {
        self.dns_error()
            && lock(&self.dns_failed)
                .is_some_and(|at| now.saturating_duration_since(at) < DNS_RETRY_AFTER)
    }

    /// Counts whether the target's name resolved on an attempt to reach it.
    pub fn record_resolution(&self, resolved: bool) {
        if resolved && !self.dns_error() {
            return;
        }
        let mut failed = lock(&self.dns_failed);
        *failed = (!resolved).then(Instant::now);
        self.dns_error.store(!resolved, Ordering::Relaxed);
    }

    /// Counts a probe's or a request's outcome; returns the new health when it changed.
    pub fn record(&self, outcome: Outcome, limits: &Thresholds) -> Option<bool> {
        let mut health = lock(&self.health);
        let changed = health.record(outcome, limits);
        self.healthy.store(health.is_healthy(), Ordering::Relaxed);
        changed
    }
}

/// One request in flight to a target.
#[derive(Debug)]
pub struct InFlight(Option<Arc<TargetState>>);

impl InFlight {
    /// Ends the request now (its response is complete) rather than when the guard is dropped.
    pub fn release(&mut self) {
        if let Some(state) = self.0.take() {
            state.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Every target state of one edge.
#[derive(Debug, Default)]
pub struct TargetRegistry {
    states: Mutex<HashMap<TargetKey, Weak<TargetState>>>,
}

impl TargetRegistry {
    /// The state of `key`, created when no loaded snapshot holds it.
    pub fn attach(&self, key: TargetKey) -> Arc<TargetState> {
        let mut states = lock(&self.states);
        if let Some(state) = states.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        let state = Arc::new(TargetState::default());
        states.insert(key, Arc::downgrade(&state));
        state
    }

    /// Drops the entries of targets no compiled snapshot holds any more.
    pub fn forget_unused(&self) {
        lock(&self.states).retain(|_, state| state.strong_count() > 0);
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain counters: keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(target: &str) -> TargetKey {
        TargetKey {
            control_plane: Uuid::nil(),
            upstream: Uuid::nil(),
            target: target.into(),
        }
    }

    #[test]
    fn a_name_that_did_not_resolve_is_left_out_for_a_while_then_tried_again() {
        let state = TargetState::default();
        let now = Instant::now();
        assert!(!state.dns_error() && !state.resolving_failed_recently(now));
        state.record_resolution(false);
        assert!(state.dns_error());
        assert!(state.resolving_failed_recently(Instant::now()));
        // Once the wait is over it may be tried again, and stays DNS_ERROR until it resolves.
        let later = Instant::now() + DNS_RETRY_AFTER;
        assert!(!state.resolving_failed_recently(later));
        assert!(state.dns_error());
        state.record_resolution(true);
        assert!(!state.dns_error() && !state.resolving_failed_recently(Instant::now()));
    }

    #[test]
    fn state_is_shared_while_held_and_forgotten_after() {
        let registry = TargetRegistry::default();
        let a = registry.attach(key("a:1"));
        let _guard = a.start_request();
        assert_eq!(registry.attach(key("a:1")).in_flight(), 1);
        drop(_guard);
        drop(a);
        registry.forget_unused();
        assert_eq!(lock(&registry.states).len(), 0);
        assert_eq!(registry.attach(key("a:1")).in_flight(), 0);
    }

    #[test]
    fn latency_average_starts_at_the_first_sample_and_blends() {
        let state = TargetState::default();
        assert_eq!(state.latency(Instant::now()), None);
        state.record_latency(Duration::from_millis(100));
        let first = state.latency(Instant::now()).unwrap_or_default();
        assert!(first > 0.09 && first <= 0.1, "{first}");
    }
}
