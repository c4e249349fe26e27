//! The contract between Tollgate's planes: gateway entities with Kong's field names, defaults and
//! validation, the compiled [`Snapshot`] an edge loads, and the messages that travel on the bus.
//! Nothing in this crate does I/O, so the API validates exactly what the edge will load.

pub mod bus;
pub mod entity;
pub mod error;
pub mod hostname;
pub mod route;
pub mod service;
pub mod snapshot;

pub use bus::{AppliedConfig, Heartbeat, SnapshotHead};
pub use entity::ForeignKey;
pub use error::ValidationError;
pub use route::Route;
pub use service::Service;
pub use snapshot::Snapshot;
