//! One module per console page. Each takes plain data (no database types) and returns the whole
//! HTML document, so the server decides what to load and the pages only decide how it looks.

pub mod account;
pub mod auth;
pub mod control_plane;
pub mod overview;
pub mod traffic;
pub mod usage;
