//! syncoord's threaded host.

pub mod mock;
pub mod server;
