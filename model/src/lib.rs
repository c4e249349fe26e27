//! The contract between Tollgate's planes: gateway entities with Kong's field names, defaults and
//! validation, the compiled [`Snapshot`] an edge loads, and the messages that travel on the bus.
//! Nothing in this crate does I/O, so the API validates exactly what the edge will load.

pub mod bus;
pub mod certificate;
pub mod entity;
pub mod error;
pub mod hostname;
pub mod request_log;
pub mod route;
pub mod secret;
pub mod service;
pub mod snapshot;
pub mod target;
pub mod upstream;

pub use bus::{AppliedConfig, Heartbeat, SnapshotHead, TargetHealth, TargetHealthReport};
pub use certificate::{Certificate, Sni};
pub use entity::ForeignKey;
pub use error::ValidationError;
pub use route::Route;
pub use service::Service;
pub use snapshot::{Entities, Snapshot};
pub use target::Target;
pub use upstream::Upstream;
