//! The transport between the control plane and edges: snapshot heads and bodies out, heartbeats
//! back. [`NatsBus`] uses JetStream (a KV bucket of heads, an object store of bodies, a subject
//! for heartbeats) for production; [`MemoryBus`] uses channels for `tollgate dev` and tests.

mod memory;
mod nats;

use futures::stream::BoxStream;
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
    async fn publish_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), BusError>;
    async fn heartbeats(&self) -> Result<BoxStream<'static, Heartbeat>, BusError>;
}
