//! The transport between the control plane and edges: snapshot heads and bodies out, heartbeats
//! and request logs back. [`NatsBus`] uses JetStream (a KV bucket of heads, an object store of
//! bodies, a subject for heartbeats, a stream of log batches) for production; [`MemoryBus`] uses
//! channels for `tollgate dev` and tests.

mod memory;
mod nats;
pub mod packing;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use futures::stream::BoxStream;
use tollgate_model::request_log::{EncodedLogBatch, LogBatch};
use tollgate_model::{Heartbeat, Snapshot, SnapshotHead};
use uuid::Uuid;

pub use memory::MemoryBus;
pub use nats::NatsBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("undecodable message: {0}")]
    Decode(String),
}

/// A change to the set of control planes an edge serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEvent {
    Updated(SnapshotHead),
    Removed { control_plane_id: Uuid },
}

/// A snapshot body as a bus hands it over.
#[derive(Debug)]
pub enum SnapshotBody {
    /// The bytes published (a [`Snapshot`] in JSON): the caller decodes them, off its request
    /// threads, and can check their hash without re-encoding them.
    Encoded(Vec<u8>),
    /// Those bytes packed in an LZ4 frame, as [`NatsBus`] publishes them: the caller unpacks
    /// them with [`packing::unpack`], off its request threads, then goes on as for `Encoded`.
    Packed(Vec<u8>),
    /// Already decoded, by a bus that keeps snapshots in memory.
    Decoded(Box<Snapshot>),
}

/// Which control planes an edge wants: all of a region's, or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFilter {
    pub region: String,
    pub control_plane: Option<Uuid>,
}

impl ConfigFilter {
    pub fn accepts(&self, head: &SnapshotHead) -> bool {
        match self.control_plane {
            Some(id) => head.control_plane_id == id,
            None => head.region == self.region,
        }
    }
}

/// Region names become key tokens on the bus, so they are kept to a safe alphabet.
pub fn validate_region(region: &str) -> Result<(), String> {
    let ok = !region.is_empty()
        && region.len() <= 63
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("a region is 1 to 63 letters, digits, '-' or '_'".into())
    }
}

#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Stores the body, then moves the head, so an edge that sees a head can fetch its body. A
    /// head never moves back: publishing an older version than the current head does nothing.
    async fn publish_snapshot(&self, region: &str, snapshot: &Snapshot) -> Result<(), BusError>;
    /// Retires a deleted control plane; edges drop it.
    async fn remove_control_plane(
        &self,
        region: &str,
        control_plane_id: Uuid,
    ) -> Result<(), BusError>;
    /// The heads currently published, for reconciling with the database.
    async fn heads(&self) -> Result<Vec<SnapshotHead>, BusError>;
    /// The current heads that match, then every change, in order.
    async fn watch_config(
        &self,
        filter: ConfigFilter,
    ) -> Result<BoxStream<'static, Result<ConfigEvent, BusError>>, BusError>;
    /// The body a head announces (or a newer one); `None` when it is gone (superseded).
    async fn fetch_snapshot(&self, head: &SnapshotHead) -> Result<Option<Snapshot>, BusError>;
    /// Like [`Bus::fetch_snapshot`], but a bus that carries bodies encoded returns them as they
    /// came, so the caller decodes them where and how it wants (the edge times each step).
    async fn fetch_snapshot_body(
        &self,
        head: &SnapshotHead,
    ) -> Result<Option<SnapshotBody>, BusError> {
        Ok(self
            .fetch_snapshot(head)
            .await?
            .map(|snapshot| SnapshotBody::Decoded(Box::new(snapshot))))
    }
    async fn publish_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), BusError>;
    async fn heartbeats(&self) -> Result<BoxStream<'static, Heartbeat>, BusError>;
    /// Hands one batch of request logs on for storage. `Ok` means it is durable (JetStream
    /// stored it) or, in dev, queued for the in-process ingester. Publishing a batch id again
    /// within JetStream's duplicate window stores it once.
    async fn publish_logs(&self, batch: &LogBatch) -> Result<(), BusError>;
    /// [`Bus::publish_logs`] for a batch already in its wire form (what the edge ships, so that
    /// its lines never become owned `RequestLog`s). This default decodes it for `publish_logs`.
    async fn publish_encoded_logs(&self, batch: &EncodedLogBatch) -> Result<(), BusError> {
        let decoded = batch
            .decode()
            .map_err(|e| BusError::Decode(e.to_string()))?;
        self.publish_logs(&decoded).await
    }
    /// The ingester's side: log batches not yet acknowledged, oldest first. Queues opened with
    /// the same `consumer` name share the work; a batch not acknowledged in time is delivered
    /// again (the store drops batch ids it already has).
    async fn log_queue(&self, consumer: &str) -> Result<Box<dyn LogQueue>, BusError>;
}

/// Where an ingester takes log batches from.
#[async_trait::async_trait]
pub trait LogQueue: Send {
    /// Up to `max` batches, waiting at most `wait` for them; empty when none came. A message
    /// that is not a batch is discarded here, with a warning.
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<LogDelivery>, BusError>;
    /// Batches published and not yet handed to any ingester (the ingester's lag).
    async fn pending(&mut self) -> Result<u64, BusError>;
    /// Waits until what the deliveries told the bus (acknowledged, handed back) has reached it:
    /// those messages are only queued, and a process that exits first loses them.
    async fn flush(&mut self) -> Result<(), BusError> {
        Ok(())
    }
}

/// One batch handed to an ingester. Acknowledge it only after it is stored.
pub struct LogDelivery {
    pub batch: LogBatch,
    ack: Acknowledgement,
}

enum Acknowledgement {
    /// Boxed: a JetStream message is large, and deliveries are moved around in vectors.
    Nats(Box<async_nats::jetstream::Message>),
    /// The in-process channel has nothing to acknowledge: a batch leaves it when taken. Handing
    /// it back puts it in the channel again (weakly held, so a queue does not keep the channel
    /// open after the bus is gone).
    Requeue(tokio::sync::mpsc::WeakSender<LogBatch>),
}

impl LogDelivery {
    /// A batch taken from an in-process channel; `channel` is where `release` puts it back.
    pub(crate) fn requeued_to(
        batch: LogBatch,
        channel: tokio::sync::mpsc::WeakSender<LogBatch>,
    ) -> LogDelivery {
        LogDelivery {
            batch,
            ack: Acknowledgement::Requeue(channel),
        }
    }

    /// Tells the bus the batch is stored, so it is not delivered again.
    pub async fn ack(&self) -> Result<(), BusError> {
        match &self.ack {
            Acknowledgement::Nats(message) => message
                .ack()
                .await
                .map_err(|e| BusError::Unavailable(format!("acknowledging a log batch: {e}"))),
            Acknowledgement::Requeue(_) => Ok(()),
        }
    }

    /// Hands the batch back unstored (an ingester stopping), so the bus delivers it again at
    /// once rather than after the acknowledgement deadline.
    pub async fn release(&self) -> Result<(), BusError> {
        match &self.ack {
            Acknowledgement::Nats(message) => message
                .ack_with(async_nats::jetstream::AckKind::Nak(None))
                .await
                .map_err(|e| BusError::Unavailable(format!("handing back a log batch: {e}"))),
            // The channel is the only copy of the batch: back into it, or it is lost.
            Acknowledgement::Requeue(channel) => channel
                .upgrade()
                .ok_or_else(|| BusError::Unavailable("the log channel is closed".into()))?
                .try_send(self.batch.clone())
                .map_err(|e| BusError::Unavailable(format!("handing back a log batch: {e}"))),
        }
    }

    /// Tells the bus the batch is still being stored (an insert waiting out a store outage),
    /// which restarts its acknowledgement deadline so it is not handed to another ingester
    /// meanwhile.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        match &self.ack {
            Acknowledgement::Nats(message) => message
                .ack_with(async_nats::jetstream::AckKind::Progress)
                .await
                .map_err(|e| BusError::Unavailable(format!("extending a log batch's lease: {e}"))),
            Acknowledgement::Requeue(_) => Ok(()),
        }
    }
}
