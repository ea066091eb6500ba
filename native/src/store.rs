//! What a worker asks the shared store before a call leaves, and what the
//! store may answer. The host's code speaks these types whether or not
//! the crate is built with a store (the `cluster` feature): without one,
//! no [`crate::Cluster`] exists and the answer is always [`Before::Send`].

use std::time::Duration;

use syncoord_core::{Response, SharedRefusal};

/// An answer as another daemon stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedAnswer {
    pub response: Response,
    /// How long ago it was stored.
    pub age: Duration,
    /// Freshness left.
    pub ttl_left: Duration,
}

/// What the store says before a call leaves.
#[derive(Debug)]
pub enum Before {
    /// Send it upstream. `leader`: this daemon holds the key's lease and
    /// must release it (storing the answer does).
    Send { leader: Option<String> },
    /// Not yet.
    Refused(SharedRefusal),
    /// Another daemon's answer.
    Answered(SharedAnswer),
}
