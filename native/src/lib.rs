//! syncoord's threaded host.

pub mod server;
pub mod mock;
