//! The in-process bus of `tollgate dev`: the same contract as NATS, over channels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{self, BoxStream, StreamExt};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tollgate_model::request_log::LogBatch;
use tollgate_model::{Heartbeat, Snapshot, SnapshotHead};
use uuid::Uuid;

use crate::{Bus, BusError, ConfigEvent, ConfigFilter, LogDelivery, LogQueue};

/// Log batches waiting for the in-process ingester; a full channel makes the edge's shipper
/// wait (it buffers and spools), never a request.
const LOG_CHANNEL_BATCHES: usize = 256;

#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    latest: Mutex<HashMap<Uuid, (SnapshotHead, Snapshot)>>,
    events: broadcast::Sender<ConfigEvent>,
    heartbeats: broadcast::Sender<Heartbeat>,
    logs: mpsc::Sender<LogBatch>,
    /// Shared by every queue opened: they split the batches between them, like a durable
    /// consumer's subscribers.
    log_receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<LogBatch>>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        let (logs, log_receiver) = mpsc::channel(LOG_CHANNEL_BATCHES);
        MemoryBus {
            inner: Arc::new(Inner {
                latest: Mutex::new(HashMap::new()),
                events: broadcast::channel(1024).0,
                heartbeats: broadcast::channel(1024).0,
                logs,
                log_receiver: Arc::new(tokio::sync::Mutex::new(log_receiver)),
            }),
        }
    }

    fn latest(&self) -> MutexGuard<'_, HashMap<Uuid, (SnapshotHead, Snapshot)>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.inner
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current_events(&self, filter: &ConfigFilter) -> Vec<ConfigEvent> {
        events_of(&self.latest(), filter)
    }
}

fn events_of(
    latest: &HashMap<Uuid, (SnapshotHead, Snapshot)>,
    filter: &ConfigFilter,
) -> Vec<ConfigEvent> {
    latest
        .values()
        .filter(|(head, _)| filter.accepts(head))
        .map(|(head, _)| ConfigEvent::Updated(head.clone()))
        .collect()
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn publish_snapshot(&self, region: &str, snapshot: &Snapshot) -> Result<(), BusError> {
        let head = SnapshotHead {
            control_plane_id: snapshot.control_plane_id,
            region: region.to_string(),
            version: snapshot.version,
            hash: snapshot.hash.clone(),
        };
        let mut latest = self.latest();
        let newer = latest
            .get(&snapshot.control_plane_id)
            .is_none_or(|(h, _)| h.version <= snapshot.version);
        if newer {
            latest.insert(snapshot.control_plane_id, (head.clone(), snapshot.clone()));
            // Sent under the lock so that watchers see events in version order.
            let _ = self.inner.events.send(ConfigEvent::Updated(head));
        }
        Ok(())
    }

    async fn remove_control_plane(&self, _region: &str, id: Uuid) -> Result<(), BusError> {
        let mut latest = self.latest();
        latest.remove(&id);
        let _ = self.inner.events.send(ConfigEvent::Removed {
            control_plane_id: id,
        });
        Ok(())
    }

    async fn heads(&self) -> Result<Vec<SnapshotHead>, BusError> {
        Ok(self.latest().values().map(|(h, _)| h.clone()).collect())
    }

    async fn watch_config(
        &self,
        filter: ConfigFilter,
    ) -> Result<BoxStream<'static, Result<ConfigEvent, BusError>>, BusError> {
        let (current, receiver) = {
            // Subscribing under the lock means no event falls between the two.
            let latest = self.latest();
            (events_of(&latest, &filter), self.inner.events.subscribe())
        };
        let bus = self.clone();
        let live = BroadcastStream::new(receiver).flat_map(move |item| {
            let events = match item {
                Ok(ConfigEvent::Updated(head)) if !filter.accepts(&head) => vec![],
                Ok(event) => vec![event],
                // A slow watcher missed events: hand it the current state again.
                Err(BroadcastStreamRecvError::Lagged(_)) => bus.current_events(&filter),
            };
            stream::iter(events.into_iter().map(Ok))
        });
        Ok(stream::iter(current.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }

    async fn fetch_snapshot(&self, head: &SnapshotHead) -> Result<Option<Snapshot>, BusError> {
        Ok(self
            .latest()
            .get(&head.control_plane_id)
            .map(|(_, s)| s.clone()))
    }

    async fn publish_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), BusError> {
        let _ = self.inner.heartbeats.send(heartbeat.clone());
        Ok(())
    }

    async fn heartbeats(&self) -> Result<BoxStream<'static, Heartbeat>, BusError> {
        let receiver = self.inner.heartbeats.subscribe();
        Ok(BroadcastStream::new(receiver)
            .filter_map(|item| async move { item.ok() })
            .boxed())
    }

    async fn publish_logs(&self, batch: &LogBatch) -> Result<(), BusError> {
        self.inner
            .logs
            .send(batch.clone())
            .await
            .map_err(|_| BusError::Unavailable("the log channel is closed".into()))
    }

    async fn log_queue(&self, _consumer: &str) -> Result<Box<dyn LogQueue>, BusError> {
        Ok(Box::new(MemoryLogQueue {
            receiver: self.inner.log_receiver.clone(),
            sender: self.inner.logs.downgrade(),
        }))
    }
}

struct MemoryLogQueue {
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<LogBatch>>>,
    /// Where a batch handed back unstored goes again.
    sender: mpsc::WeakSender<LogBatch>,
}

#[async_trait::async_trait]
impl LogQueue for MemoryLogQueue {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<LogDelivery>, BusError> {
        let mut receiver = self.receiver.lock().await;
        let mut batches = Vec::new();
        // A timeout just means no batch came in time.
        if let Ok(0) =
            tokio::time::timeout(wait, receiver.recv_many(&mut batches, max.max(1))).await
        {
            return Err(BusError::Unavailable("the log channel is closed".into()));
        }
        Ok(batches
            .into_iter()
            .map(|batch| LogDelivery::requeued_to(batch, self.sender.clone()))
            .collect())
    }

    async fn pending(&mut self) -> Result<u64, BusError> {
        Ok(self.receiver.lock().await.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> LogBatch {
        LogBatch {
            id: Uuid::now_v7(),
            node_id: Uuid::now_v7(),
            logs: Vec::new(),
        }
    }

    /// In dev the channel holds the only copy: a batch handed back unstored (an ingester
    /// stopping) must come out of the queue again, or it would be lost.
    #[tokio::test]
    async fn a_released_batch_is_delivered_again() {
        let bus = MemoryBus::new();
        let sent = batch();
        bus.publish_logs(&sent).await.unwrap();
        let mut queue = bus.log_queue("dev").await.unwrap();
        let taken = queue.next(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(queue.pending().await.unwrap(), 0);

        taken[0].release().await.unwrap();
        let again = queue.next(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            again.iter().map(|d| d.batch.id).collect::<Vec<_>>(),
            vec![sent.id]
        );

        // Acknowledged batches are gone for good.
        again[0].ack().await.unwrap();
        assert!(queue
            .next(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty());
    }
}
