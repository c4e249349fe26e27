//! Target health as Kong's healthchecker keeps it: counters of successes and of each kind of
//! failure that flip a target between healthy and unhealthy when they reach the upstream's
//! thresholds. Active probes ([`active`]) and proxied traffic (passive) feed the same counters,
//! each with its own thresholds and status lists.

pub mod active;

use tollgate_model::upstream::{ActiveHealthcheck, PassiveHealthcheck};

/// What one probe or one proxied attempt says about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
}

impl Outcome {
    /// The outcome of a response status: healthy statuses first, as Kong checks them; a status in
    /// neither list says nothing.
    pub fn of_status(status: u16, statuses: &StatusLists) -> Option<Outcome> {
        if statuses.healthy.contains(&status) {
            Some(Outcome::Success)
        } else if statuses.unhealthy.contains(&status) {
            Some(Outcome::HttpFailure)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpFailure => "http failure",
            Outcome::TcpFailure => "tcp failure",
            Outcome::Timeout => "timeout",
        }
    }
}

/// How many outcomes of a kind in a row flip a target; 0 turns that kind off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub successes: u32,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

impl Thresholds {
    pub fn active(check: &ActiveHealthcheck) -> Thresholds {
        Thresholds {
            successes: count(check.healthy.successes),
            http_failures: count(check.unhealthy.http_failures),
            tcp_failures: count(check.unhealthy.tcp_failures),
            timeouts: count(check.unhealthy.timeouts),
        }
    }

    pub fn passive(check: &PassiveHealthcheck) -> Thresholds {
        Thresholds {
            successes: count(check.healthy.successes),
            http_failures: count(check.unhealthy.http_failures),
            tcp_failures: count(check.unhealthy.tcp_failures),
            timeouts: count(check.unhealthy.timeouts),
        }
    }

    fn of(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Success => self.successes,
            Outcome::HttpFailure => self.http_failures,
            Outcome::TcpFailure => self.tcp_failures,
            Outcome::Timeout => self.timeouts,
        }
    }
}

fn count(value: i64) -> u32 {
    u32::try_from(value.clamp(0, 255)).unwrap_or(0)
}

/// The statuses that count as a success or an HTTP failure.
#[derive(Debug, Clone, Default)]
pub struct StatusLists {
    pub healthy: Vec<u16>,
    pub unhealthy: Vec<u16>,
}

impl StatusLists {
    pub fn new(healthy: &[i64], unhealthy: &[i64]) -> StatusLists {
        let statuses = |list: &[i64]| list.iter().filter_map(|s| u16::try_from(*s).ok()).collect();
        StatusLists {
            healthy: statuses(healthy),
            unhealthy: statuses(unhealthy),
        }
    }
}

/// One target's health and its counters, kept across config swaps.
#[derive(Debug, Default)]
pub struct HealthCounters {
    unhealthy: bool,
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

impl HealthCounters {
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy
    }

    /// Counts `outcome` against `limits`; returns the new state (`true` = healthy) when the
    /// target flips. As in Kong, successes are not counted while healthy nor failures while
    /// unhealthy, the first of one side resets the other side's counters, and a flip resets all.
    pub fn record(&mut self, outcome: Outcome, limits: &Thresholds) -> Option<bool> {
        let limit = limits.of(outcome);
        if limit == 0 {
            return None;
        }
        let towards_healthy = outcome == Outcome::Success;
        if towards_healthy != self.unhealthy {
            return None;
        }
        let counter = match outcome {
            Outcome::Success => &mut self.successes,
            Outcome::HttpFailure => &mut self.http_failures,
            Outcome::TcpFailure => &mut self.tcp_failures,
            Outcome::Timeout => &mut self.timeouts,
        };
        *counter += 1;
        let reached = *counter >= limit;
        if *counter == 1 {
            if towards_healthy {
                self.http_failures = 0;
                self.tcp_failures = 0;
                self.timeouts = 0;
            } else {
                self.successes = 0;
            }
        }
        if !reached {
            return None;
        }
        *self = HealthCounters {
            unhealthy: !towards_healthy,
            ..HealthCounters::default()
        };
        Some(towards_healthy)
    }
}

/// Logs a health change the way operators grep for it.
pub fn log_transition(
    control_plane: uuid::Uuid,
    upstream: &str,
    target: &str,
    healthy: bool,
    outcome: Outcome,
    source: &'static str,
) {
    if healthy {
        tracing::info!(%control_plane, upstream, target, source, last = outcome.name(), "target is healthy again");
    } else {
        tracing::warn!(%control_plane, upstream, target, source, last = outcome.name(), "target marked unhealthy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        successes: 2,
        http_failures: 3,
        tcp_failures: 1,
        timeouts: 0,
    };

    #[test]
    fn failures_in_a_row_flip_and_successes_bring_back() {
        let mut h = HealthCounters::default();
        assert_eq!(h.record(Outcome::HttpFailure, &LIMITS), None);
        // Successes are not counted while healthy, so they do not reset the failures (Kong).
        assert_eq!(h.record(Outcome::Success, &LIMITS), None);
        assert_eq!(h.record(Outcome::HttpFailure, &LIMITS), None);
        assert_eq!(h.record(Outcome::HttpFailure, &LIMITS), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(Outcome::Success, &LIMITS), None);
        // A failure while unhealthy is not counted either.
        assert_eq!(h.record(Outcome::TcpFailure, &LIMITS), None);
        assert_eq!(h.record(Outcome::Success, &LIMITS), Some(true));
        assert!(h.is_healthy());
    }

    #[test]
    fn a_zero_threshold_turns_that_kind_off() {
        let mut h = HealthCounters::default();
        for _ in 0..10 {
            assert_eq!(h.record(Outcome::Timeout, &LIMITS), None);
        }
        assert_eq!(h.record(Outcome::TcpFailure, &LIMITS), Some(false));
    }

    #[test]
    fn statuses_classify_healthy_list_first() {
        let lists = StatusLists::new(&[200, 302], &[500, 302]);
        assert_eq!(Outcome::of_status(302, &lists), Some(Outcome::Success));
        assert_eq!(Outcome::of_status(500, &lists), Some(Outcome::HttpFailure));
        assert_eq!(Outcome::of_status(404, &lists), None);
    }
}
