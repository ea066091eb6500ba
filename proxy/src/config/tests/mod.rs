use super::*;
use syncoord_core::config::coinbase;
use syncoord_core::config::RouteRule;
use syncoord_core::Duration;

mod checks;
mod overrides;
mod parse;
mod reference;
mod schema;
mod show;
