//! `ScopeCoordinator`: the Durable Object that owns one upstream
//! rate-limit scope instance (`<upstream>/global` or
//! `<upstream>/cred/<identity>`). Cloudflare runs exactly one instance of
//! each named object worldwide, so every bot's request for that scope, from
//! any machine and any Worker isolate, meets the same core: that is what
//! keeps the budget global.
//!
//! The core lives in memory only. When the runtime evicts an idle object
//! (or restarts it on a new deployment) the cache, limiter state and
//! stats start over; see the README.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use worker::wasm_bindgen_futures::spawn_local;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::convert::{error_response, read_request, to_response};
use super::driver::Driver;
use super::settings::proxy;
use crate::protocol::{take_shard, REGISTER_PATH, REGISTRY_BINDING, REGISTRY_NAME, REPORT_PATH};
use crate::report::ShardReport;
use crate::sign::Signing;
use syncoord_proxy::UpstreamId;

struct Active {
    shard: String,
    upstream: UpstreamId,
    driver: Rc<Driver>,
    registration: Rc<Cell<Registration>>,
}

/// Whether the registry knows this shard (see [`ScopeCoordinator::driver`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// Not yet, or the last attempt failed: the next request tries again.
    Needed,
    Sending,
    Done,
}

#[durable_object]
pub struct ScopeCoordinator {
    env: Env,
    /// Created by the first forwarded request, which names the shard and
    /// the upstream (a restarted object learns them again the same way).
    active: RefCell<Option<Active>>,
}

impl ScopeCoordinator {
    /// This object's driver, created on first use. Until the registry has
    /// taken the shard's name (so the stats endpoints can find it), each
    /// request starts a registration in the background if none is under
    /// way: no request waits for the registry, and a failed registration
    /// is retried by the next request instead of leaving the shard out of
    /// the stats for the rest of the activation.
    fn driver(
        &self,
        shard: &str,
        upstream: UpstreamId,
    ) -> std::result::Result<Rc<Driver>, Result<Response>> {
        if let Some(a) = self.active.borrow().as_ref() {
            if a.shard == shard && a.upstream == upstream {
                self.register_if_needed(&a.shard, &a.registration);
                return Ok(Rc::clone(&a.driver));
            }
            return Err(error_response(
                500,
                &format!(
                    "object of shard `{}` got a request for shard `{shard}`",
                    a.shard
                ),
            ));
        }
        let proxy = proxy(&self.env)?;
        let driver = Rc::new(Driver::new(
            proxy.coordination(upstream).clone(),
            &proxy.upstream(upstream).url,
            Signing {
                keyring: proxy.keyring().clone(),
                base: proxy.base_url(upstream).clone(),
            },
            proxy.config().server.clone(),
            proxy.error_shape(upstream),
        ));
        // No other request can have created it meanwhile: there is no
        // await in this function.
        let registration = Rc::new(Cell::new(Registration::Needed));
        self.register_if_needed(shard, &registration);
        *self.active.borrow_mut() = Some(Active {
            shard: shard.to_owned(),
            upstream,
            driver: Rc::clone(&driver),
            registration,
        });
        Ok(driver)
    }

    fn register_if_needed(&self, shard: &str, state: &Rc<Cell<Registration>>) {
        if state.get() != Registration::Needed {
            return;
        }
        state.set(Registration::Sending);
        let (env, shard, state) = (self.env.clone(), shard.to_owned(), Rc::clone(state));
        spawn_local(async move {
            match register(&env, &shard).await {
                Ok(()) => state.set(Registration::Done),
                Err(e) => {
                    // Serving matters more than being listed in stats.
                    worker::console_warn!("syncoord: registering shard `{shard}` failed: {e}");
                    state.set(Registration::Needed);
                }
            }
        });
    }

    fn report(&self) -> Result<Response> {
        let active = self.active.borrow();
        let Some(a) = active.as_ref() else {
            // Evicted and not used since: nothing to report.
            return Ok(Response::empty()?.with_status(204));
        };
        let (stats, health) = a.driver.report();
        Response::from_json(&ShardReport {
            shard: a.shard.clone(),
            stats,
            health,
        })
    }
}

/// Tells the registry about `shard`.
async fn register(env: &Env, shard: &str) -> Result<()> {
    let stub = env
        .durable_object(REGISTRY_BINDING)?
        .get_by_name(REGISTRY_NAME)?;
    let url = format!("{}{REGISTER_PATH}", crate::protocol::INTERNAL_ORIGIN);
    let req = super::convert::build_request(&url, "POST", &[], shard.as_bytes())?;
    let resp = stub.fetch_with_request(req).await?;
    match resp.status_code() {
        200..=299 => Ok(()),
        s => Err(worker::Error::RustError(format!("registry answered {s}"))),
    }
}

impl DurableObject for ScopeCoordinator {
    fn new(_state: State, env: Env) -> Self {
        ScopeCoordinator {
            env,
            active: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let incoming = read_request(&mut req).await?;
        let (shard, headers) = take_shard(incoming.headers);
        let Some(shard) = shard else {
            // Only internal calls come without a shard name.
            if incoming.method == "GET" && incoming.target == REPORT_PATH {
                return self.report();
            }
            return error_response(400, "request without a shard");
        };
        let proxy = match proxy(&self.env) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let forward = match proxy.route(
            None,
            &incoming.method,
            &incoming.target,
            &headers,
            incoming.body,
        ) {
            Ok(f) => f,
            Err(rejection) => {
                let shape = proxy.error_shape_for(None, &incoming.target);
                return to_response(rejection.into_response_shaped(shape));
            }
        };
        let driver = match self.driver(&shard, forward.upstream) {
            Ok(d) => d,
            Err(r) => return r,
        };
        to_response(driver.call(forward.request, forward.outgoing).await)
    }
}
