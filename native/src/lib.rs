//! syncoord's threaded host.

pub mod server;
