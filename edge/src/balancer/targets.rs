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
}

impl Default for TargetState {
    fn default() -> Self {
        TargetState {
            in_flight: AtomicUsize::new(0),
            latency: Mutex::new(None),
            health: Mutex::new(HealthCounters::default()),
            healthy: AtomicBool::new(true),
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
