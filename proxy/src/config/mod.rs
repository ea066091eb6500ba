//! The one configuration file both hosts read (TOML): `[server]` settings
//! for the host, and `[[upstreams]]`, each an API with its coordination
//! rules (a core [`Config`]) merged over a preset.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8787"
//!
//! [[upstreams]]
//! name = "advanced"
//! url = "https://api.coinbase.com"
//! preset = "coinbase-advanced"
//! [upstreams.coordination.queue]
//! max_len = 500            # everything else stays as the preset says
//!
//! [[upstreams]]
//! name = "exchange"
//! url = "https://api.exchange.coinbase.com"
//! preset = "coinbase-exchange"
//! prefix = "/exchange"
//! ```
//!
//! [`ProxyConfig::from_toml_str`] reports every problem at once, each with
//! the field's path and its line and column in the file.

mod checks;
mod errors;
mod locations;
mod merge;
mod overrides;
mod parse;
mod repair;
mod schema;
mod show;
mod wording;

use syncoord_core::CompiledConfig;

use crate::url::BaseUrl;

pub use errors::{ConfigFileError, ConfigFileErrors};
pub use locations::{line_col, locate_fields};
pub use merge::PresetRoutes;
pub use parse::read_toml;
pub use schema::{LogFormat, Preset, ProxyConfig, ServerSettings, UpstreamConfig};
pub use show::Provenance;
pub use wording::{join, path_string, reword};

/// One upstream as a [`crate::Proxy`] runs it: its origins parsed and its
/// coordination rules compiled, once.
#[derive(Debug)]
pub(crate) struct CheckedUpstream {
    /// Its `url`: what signing mode signs for.
    pub(crate) base: BaseUrl,
    /// What absolute-form, `proxyUrl`-form and CONNECT requests must name
    /// to reach this upstream: `origins` parsed, or `base` alone.
    pub(crate) origins: Vec<BaseUrl>,
    pub(crate) prefix: Option<String>,
    /// What the hosts run their coordinators on, and what
    /// [`crate::Proxy::shard`] reads the routes from.
    pub(crate) coordination: CompiledConfig,
}

#[cfg(test)]
mod tests;
