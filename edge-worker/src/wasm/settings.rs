//! The proxy this isolate runs, built once from the Worker's vars and
//! secrets.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::{console_warn, Env, Response, Result};
use zeroize::Zeroizing;

use super::convert::error_response;
use crate::settings::{load, SettingsError, CONFIG_VAR, UPSTREAM_URL_VAR};
use syncoord_proxy::Proxy;
use syncoord_wire::{SecretFile, SecretFileError, SecretSource};

thread_local! {
    /// Vars are fixed for the life of an isolate (a new deployment or a
    /// `wrangler dev` reload starts a new one), so they are parsed once,
    /// and a bad config is told in every answer until it is fixed.
    static PROXY: OnceCell<std::result::Result<Rc<Proxy>, Rc<SettingsError>>> =
        const { OnceCell::new() };
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// Signing mode's secrets: Worker secrets (`wrangler secret put`), or
/// vars, which the runtime hands over the same way.
struct WorkerSecrets<'a>(&'a Env);

impl SecretSource for WorkerSecrets<'_> {
    fn env(&self, name: &str) -> Option<Zeroizing<String>> {
        self.0
            .secret(name)
            .or_else(|_| self.0.var(name))
            .ok()
            .map(|v| Zeroizing::new(v.to_string()))
    }

    fn file(&self, path: &str) -> std::result::Result<SecretFile, SecretFileError> {
        Err(SecretFileError::Unavailable(format!(
            "a Worker reads no files (`{path}`): give the secret with `wrangler secret put` and its `*_env` field"
        )))
    }
}

/// The proxy, or the response explaining why the config is unusable.
pub fn proxy(env: &Env) -> std::result::Result<Rc<Proxy>, Result<Response>> {
    PROXY
        .with(|cell| {
            cell.get_or_init(|| {
                let config = var(env, CONFIG_VAR);
                let url = var(env, UPSTREAM_URL_VAR);
                let loaded = load(config.as_deref(), url.as_deref(), &WorkerSecrets(env));
                if let Ok(proxy) = &loaded {
                    for warning in proxy.warnings() {
                        console_warn!("syncoord edge config: {warning}");
                    }
                }
                loaded.map(Rc::new).map_err(Rc::new)
            })
            .clone()
        })
        .map_err(|e| error_response(500, &format!("syncoord edge config: {e}")))
}
