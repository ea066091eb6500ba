//! `ShardRegistry`: one Durable Object that remembers the names of the
//! shards that have served requests, in its storage, so the Worker's stats
//! endpoints know which `ScopeCoordinator` objects to ask (the runtime has
//! no way to list the objects of a class).

use worker::{durable_object, DurableObject, Env, ListOptions, Request, Response, Result, State};

use super::convert::{error_response, read_request};
use crate::protocol::{valid_shard_name, REGISTER_PATH, SHARDS_PATH};

/// Storage key prefix of a registered shard.
const KEY_PREFIX: &str = "shard:";

#[durable_object]
pub struct ShardRegistry {
    state: State,
}

impl DurableObject for ShardRegistry {
    fn new(state: State, _env: Env) -> Self {
        ShardRegistry { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let incoming = read_request(&mut req).await?;
        match (incoming.method.as_str(), incoming.target.as_str()) {
            ("POST", REGISTER_PATH) => {
                let Ok(name) = String::from_utf8(incoming.body) else {
                    return error_response(400, "shard name is not UTF-8");
                };
                if !valid_shard_name(&name) {
                    return error_response(400, "invalid shard name");
                }
                self.state
                    .storage()
                    .put(&format!("{KEY_PREFIX}{name}"), true)
                    .await?;
                Response::empty()
            }
            ("GET", SHARDS_PATH) => {
                let entries = self
                    .state
                    .storage()
                    .list_with_options(ListOptions::new().prefix(KEY_PREFIX))
                    .await?;
                let names: Vec<String> = entries
                    .keys()
                    .into_iter()
                    .filter_map(|k| k.ok()?.as_string())
                    .filter_map(|k| k.strip_prefix(KEY_PREFIX).map(str::to_owned))
                    .collect();
                Response::from_json(&names)
            }
            _ => error_response(404, "unknown registry call"),
        }
    }
}
