//! The proxy this isolate runs, built once from the Worker's vars.

use std::cell::OnceCell;
use std::rc::Rc;

use worker::{Env, Response, Result};

use super::convert::error_response;
use crate::settings::{load, SettingsError, CONFIG_VAR, UPSTREAM_URL_VAR};
use syncoord_proxy::Proxy;

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

/// The proxy, or the response explaining why the config is unusable.
pub fn proxy(env: &Env) -> std::result::Result<Rc<Proxy>, Result<Response>> {
    PROXY
        .with(|cell| {
            cell.get_or_init(|| {
                let config = var(env, CONFIG_VAR);
                let url = var(env, UPSTREAM_URL_VAR);
                load(config.as_deref(), url.as_deref())
                    .map(Rc::new)
                    .map_err(Rc::new)
            })
            .clone()
        })
        .map_err(|e| error_response(500, &format!("syncoord edge config: {e}")))
}
