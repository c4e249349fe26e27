//! Keeps the served config in step with the bus: watches snapshot heads, fetches bodies it does
//! not have, compiles them off the request path, swaps them in and records them as
//! last-known-good. Everything retries with backoff, so a bus outage only delays updates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate_bus::{Bus, ConfigEvent, ConfigFilter};
use tollgate_model::secret::MasterKey;
use tollgate_model::{Snapshot, SnapshotHead};
use uuid::Uuid;

use crate::data_dir::LastKnownGood;
use crate::served::LoadedControlPlane;
use crate::shutdown::wait_for_shutdown;
use crate::state::EdgeState;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(15);

pub struct ConfigSync {
    pub bus: Arc<dyn Bus>,
    pub filter: ConfigFilter,
    pub state: Arc<EdgeState>,
    pub lkg: LastKnownGood,
    /// Opens the certificates' private keys while compiling.
    pub master_key: Option<MasterKey>,
}

/// A head whose body could not be applied yet.
struct Pending {
    head: SnapshotHead,
    attempts: u32,
    due: Instant,
}

impl ConfigSync {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut rewatch = Backoff::default();
        let mut pending: HashMap<Uuid, Pending> = HashMap::new();
        loop {
            let mut events = match self.bus.watch_config(self.filter.clone()).await {
                Ok(events) => {
                    tracing::debug!("watching config heads");
                    events
                }
                Err(e) => {
                    let delay = rewatch.next();
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot watch config heads");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = wait_for_shutdown(&mut shutdown) => return,
                    }
                }
            };
            loop {
                let next_due = pending.values().map(|p| p.due).min();
                tokio::select! {
                    _ = wait_for_shutdown(&mut shutdown) => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            rewatch = Backoff::default();
                            self.handle(event, &mut pending).await;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "config watch failed");
                            break;
                        }
                        None => {
                            tracing::warn!("config watch ended");
                            break;
                        }
                    },
                    _ = sleep_until(next_due), if next_due.is_some() => {
                        self.retry_due(&mut pending).await;
                    }
                }
            }
            let delay = rewatch.next();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_shutdown(&mut shutdown) => return,
            }
        }
    }

    async fn handle(&self, event: ConfigEvent, pending: &mut HashMap<Uuid, Pending>) {
        match event {
            ConfigEvent::Updated(head) => {
                if !self.filter.accepts(&head) {
                    return;
                }
                pending.remove(&head.control_plane_id);
                self.try_apply(head, 0, pending).await;
            }
            ConfigEvent::Removed { control_plane_id } => {
                if self
                    .filter
                    .control_plane
                    .is_some_and(|only| only != control_plane_id)
                {
                    return;
                }
                pending.remove(&control_plane_id);
                self.remove(control_plane_id).await;
            }
        }
    }

    async fn retry_due(&self, pending: &mut HashMap<Uuid, Pending>) {
        let now = Instant::now();
        let due: Vec<Uuid> = pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = pending.remove(&id) {
                self.try_apply(p.head, p.attempts, pending).await;
            }
        }
    }

    /// Applies the snapshot a head announces, or schedules another try.
    async fn try_apply(
        &self,
        head: SnapshotHead,
        attempts: u32,
        pending: &mut HashMap<Uuid, Pending>,
    ) {
        let id = head.control_plane_id;
        if let Some(applied) = self.state.served.load().get(id) {
            // Same content under a newer number (a no-op write, a restore) is still applied,
            // so the version this node reports matches the control plane's.
            if applied.hash == head.hash && head.version <= applied.version {
                return;
            }
            if head.version < applied.version {
                tracing::debug!(control_plane = %id, head = head.version, applied = applied.version, "ignoring an older head");
                return;
            }
        }
        match self.fetch(&head).await {
            Ok(snapshot) => self.apply(snapshot).await,
            Err(reason) => {
                let delay = retry_delay(attempts);
                tracing::warn!(control_plane = %id, version = head.version, %reason, retry_in = ?delay, "snapshot not applied yet");
                pending.insert(
                    id,
                    Pending {
                        head,
                        attempts: attempts + 1,
                        due: Instant::now() + delay,
                    },
                );
            }
        }
    }

    async fn fetch(&self, head: &SnapshotHead) -> Result<Snapshot, String> {
        let snapshot = self
            .bus
            .fetch_snapshot(head)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no body published")?;
        if snapshot.control_plane_id != head.control_plane_id {
            return Err(format!(
                "body is for control plane {}",
                snapshot.control_plane_id
            ));
        }
        if snapshot.version < head.version {
            return Err(format!(
                "body is version {}, older than the head",
                snapshot.version
            ));
        }
        // Hashing re-serializes the whole snapshot: off the request threads, like compiling.
        let (snapshot, verified) = tokio::task::spawn_blocking(move || {
            let verified = snapshot.verify();
            (snapshot, verified)
        })
        .await
        .map_err(|e| e.to_string())?;
        if !verified {
            return Err("body does not match its hash".into());
        }
        Ok(snapshot)
    }

    async fn apply(&self, snapshot: Snapshot) {
        let id = snapshot.control_plane_id;
        if let Some(applied) = self.state.served.load().get(id) {
            if snapshot.version < applied.version {
                tracing::debug!(control_plane = %id, "not applying an older snapshot");
                return;
            }
        }
        let snapshot = Arc::new(snapshot);
        let compiling = snapshot.clone();
        let master_key = self.master_key.clone();
        let targets = self.state.targets.clone();
        let compiled = match tokio::task::spawn_blocking(move || {
            LoadedControlPlane::compile(&compiling, master_key.as_ref(), &targets)
        })
        .await
        {
            Ok(compiled) => Arc::new(compiled),
            Err(e) => {
                tracing::error!(control_plane = %id, error = %e, "compiling a snapshot failed");
                return;
            }
        };
        let next = self.state.served.load().with(compiled);
        self.state.swap(next);
        tracing::info!(control_plane = %id, version = snapshot.version, hash = %snapshot.hash, "applied config");

        let lkg = self.lkg.clone();
        let stored = tokio::task::spawn_blocking(move || lkg.store(&snapshot)).await;
        if let Err(e) = stored
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(control_plane = %id, error = %e, "could not store the last-known-good snapshot");
        }
    }

    async fn remove(&self, id: Uuid) {
        if self.state.served.load().get(id).is_some() {
            let next = self.state.served.load().without(id);
            self.state.swap(next);
            tracing::info!(control_plane = %id, "removed config");
        }
        let lkg = self.lkg.clone();
        let removed = tokio::task::spawn_blocking(move || lkg.remove(id)).await;
        if let Err(e) = removed
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(control_plane = %id, error = %e, "could not delete the last-known-good snapshot");
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn retry_delay(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << attempts.min(10))
        .min(MAX_RETRY)
}

/// Exponential backoff with a little jitter, so a fleet of edges does not reconnect in step.
#[derive(Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn next(&mut self) -> Duration {
        let base = retry_delay(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter_ceiling = u32::try_from(base.as_millis() / 4).unwrap_or(0).max(1);
        base + Duration::from_millis(u64::from(nanos % jitter_ceiling))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_delay(0), FIRST_RETRY);
        assert_eq!(retry_delay(1), FIRST_RETRY * 2);
        assert_eq!(retry_delay(30), MAX_RETRY);
        let mut backoff = Backoff::default();
        let first = backoff.next();
        assert!(first >= FIRST_RETRY && first < FIRST_RETRY * 2);
    }
}
