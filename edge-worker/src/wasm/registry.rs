//! `ShardRegistry`: one Durable Object that remembers the names of the
//! shards that have served requests, in its storage, so the Worker's stats
//! endpoints know which `ScopeCoordinator` objects to ask (the runtime has
//! no way to list the objects of a class).

use worker::{
    durable_object, js_sys::Date, DurableObject, Env, ListOptions, Request, Response, Result, State,
};

use super::convert::{error_response, read_request};
use crate::protocol::{valid_shard_name, RegisteredShard, FORGET_PATH, REGISTER_PATH, SHARDS_PATH};

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
                // The registration time tells a forget request whether the
                // shard registered again after the Worker found it empty.
                self.state
                    .storage()
                    .put(&format!("{KEY_PREFIX}{name}"), Date::now())
                    .await?;
                Response::empty()
            }
            ("GET", SHARDS_PATH) => {
                let entries = self
                    .state
                    .storage()
                    .list_with_options(ListOptions::new().prefix(KEY_PREFIX))
                    .await?;
                let mut shards: Vec<RegisteredShard> = Vec::new();
                entries.for_each(&mut |value, key| {
                    if let Some(name) = key
                        .as_string()
                        .and_then(|k| k.strip_prefix(KEY_PREFIX).map(str::to_owned))
                    {
                        // Entries stored before registration times were
                        // kept hold `true`: treat them as registered at 0.
                        let since = value.as_f64().unwrap_or(0.0);
                        shards.push(RegisteredShard { name, since });
                    }
                });
                Response::from_json(&shards)
            }
            ("POST", FORGET_PATH) => {
                let Ok(gone) = serde_json::from_slice::<Vec<RegisteredShard>>(&incoming.body)
                else {
                    return error_response(400, "expected a JSON array of registered shards");
                };
                let storage = self.state.storage();
                let mut forgotten = 0usize;
                // No other event runs while this one awaits its storage
                // calls (the object's input gate), so a registration cannot
                // slip in between the check and the delete.
                for shard in gone {
                    let key = format!("{KEY_PREFIX}{}", shard.name);
                    let since = storage.get::<serde_json::Value>(&key).await?;
                    let unchanged = match since {
                        Some(v) => v.as_f64().unwrap_or(0.0) == shard.since,
                        None => false,
                    };
                    if unchanged {
                        storage.delete(&key).await?;
                        forgotten += 1;
                    }
                }
                Response::from_json(&forgotten)
            }
            _ => error_response(404, "unknown registry call"),
        }
    }
}
