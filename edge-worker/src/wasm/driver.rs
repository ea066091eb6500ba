//! Drives one core inside a Durable Object: the host loop of the native
//! daemon, rebuilt from the runtime's primitives. A Durable Object runs one
//! thread, so the core sits in a `RefCell` that is never borrowed across an
//! `await`; concurrency comes from the object handling many requests at
//! once, each suspended at an `await`.
//!
//! The loop ([`Driver::pump`]), run after every input: `handle_timeout(now)`,
//! then `poll_output(now)` until it says to sleep:
//! 1. each `Output::Dispatch` is sent by its own spawned task (`fetch`),
//!    which reports with `complete` and pumps again;
//! 2. each `Output::Finished` resolves its ticket's oneshot, waking the
//!    request handler waiting on it;
//! 3. on `Output::WakeAt`, while requests wait or calls are in flight, a
//!    timer (`setTimeout` through [`worker::Delay`]) is armed for it.
//!
//! Time: `now` is `Instant::now()` (`performance.now()`). The Workers
//! runtime freezes the clock during execution and advances it only across
//! I/O (a fetch, a timer), and timers have millisecond resolution, so the
//! core sees time move in steps between events, never within one. That is
//! all the core needs: it is only ever asked "what now" after an event.
//! With an idle object no timer is armed: the next request's
//! `handle_timeout` catches up with everything that fell due meanwhile.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use syncoord_core::{
    Admission, Answer, CompiledConfig, Coordinator, Dispatch, Failure, Health, Instant, Output,
    Request, Response, StatsSnapshot, Ticket,
};
use syncoord_proxy::Outgoing;
use worker::wasm_bindgen_futures::spawn_local;
use worker::{js_sys, Delay};

use super::upstream;
use crate::sign::Signing;
use crate::timer;
use syncoord_proxy::{
    aborted_response, answer_response, failure_response_shaped, timed_out_response, ErrorShape,
    ServerSettings,
};

struct State {
    core: Coordinator<Outgoing>,
    waiters: HashMap<Ticket, oneshot::Sender<Result<Answer, Failure>>>,
    /// The instant the earliest pending timer fires at, if any.
    timer_at: Option<Instant>,
}

/// One shard's core and its upstream.
pub struct Driver {
    state: RefCell<State>,
    base_url: String,
    /// The keys and base URL each attempt is signed with (signing mode).
    signing: Signing,
    /// The config file's `[server]` limits that apply on the edge too.
    server: ServerSettings,
    /// How our own errors look to this upstream's client libraries.
    shape: ErrorShape,
}

/// Ends a waiting request the bot gave up on: if the handler's future is
/// dropped before its answer arrives, the ticket is cancelled.
struct Waiting<'a> {
    driver: &'a Driver,
    ticket: Ticket,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped only at an await point, where no borrow is held.
        if let Ok(mut s) = self.driver.state.try_borrow_mut() {
            s.waiters.remove(&self.ticket);
            s.core.cancel(self.ticket);
        }
    }
}

impl Driver {
    pub fn new(
        config: CompiledConfig,
        base_url: &str,
        signing: Signing,
        server: ServerSettings,
        shape: ErrorShape,
    ) -> Driver {
        // Seeds the core's jitter; need not be secret.
        let seed = (js_sys::Math::random() * (1u64 << 53) as f64) as u64;
        let core = Coordinator::new(config, Instant::now(), seed);
        Driver {
            state: RefCell::new(State {
                core,
                waiters: HashMap::new(),
                timer_at: None,
            }),
            base_url: base_url.to_owned(),
            signing,
            server,
            shape,
        }
    }

    /// Submits a bot's request and waits for its end, at most
    /// `request_timeout_secs`: then the ticket is cancelled (upstream may
    /// still answer; the answer goes to the cache and to any other waiter)
    /// and the bot gets the core's "deadline passed" answer, a 504.
    /// Every answer carries the bot's budget in `RateLimit-Policy` and
    /// `RateLimit` unless the upstream's configuration turns them off
    /// (signals out, as the daemon does: [`syncoord_proxy::ratelimit`]).
    pub async fn call(self: &Rc<Self>, request: Request, outgoing: Outgoing) -> Response {
        let budget = self
            .state
            .borrow()
            .core
            .config()
            .limiter
            .signals
            .send_ratelimit_fields
            .then(|| {
                (
                    request.method.clone(),
                    request.path.clone(),
                    request.credential.clone(),
                )
            });
        let mut response = self.answer(request, outgoing).await;
        if let Some((method, path, credential)) = &budget {
            let budgets =
                self.state
                    .borrow()
                    .core
                    .budgets(Instant::now(), method, path, credential.as_ref());
            syncoord_proxy::ratelimit::add_ratelimit_fields(&mut response.headers, &budgets);
        }
        response
    }

    /// [`Self::call`] without the budget fields.
    async fn answer(self: &Rc<Self>, request: Request, outgoing: Outgoing) -> Response {
        let admission = self
            .state
            .borrow_mut()
            .core
            .submit(Instant::now(), request, outgoing);
        let ticket = match admission {
            Admission::Answered(answer) => return answer_response(&answer),
            Admission::Refused(failure) => return failure_response_shaped(&failure, self.shape),
            Admission::Waiting { ticket, .. } => ticket,
        };
        let (tx, rx) = oneshot::channel();
        self.state.borrow_mut().waiters.insert(ticket, tx);
        let mut guard = Waiting {
            driver: self,
            ticket,
            done: false,
        };
        self.pump();
        let limit = self.server.request_timeout();
        let timer = Delay::from(limit);
        futures_util::pin_mut!(timer);
        let result = match select(rx, timer).await {
            Either::Left((result, _)) => result,
            // The guard cancels the ticket when it goes out of scope.
            Either::Right(((), _)) => {
                return timed_out_response(limit, self.shape);
            }
        };
        guard.done = true;
        match result {
            Ok(Ok(answer)) => answer_response(&answer),
            Ok(Err(failure)) => failure_response_shaped(&failure, self.shape),
            // The sender is dropped only with the waiter entry, which only
            // the guard above removes: unreachable in practice, but a
            // response is still owed.
            Err(oneshot::Canceled) => {
                aborted_response("the coordinator lost track of this request", self.shape)
            }
        }
    }

    /// The host loop step; see the module docs.
    fn pump(self: &Rc<Self>) {
        let now = Instant::now();
        let mut calls: Vec<Dispatch<Outgoing>> = Vec::new();
        let wake;
        {
            let mut guard = self.state.borrow_mut();
            let s = &mut *guard;
            s.core.handle_timeout(now);
            let next = loop {
                match s.core.poll_output(now) {
                    Output::Dispatch(call) => calls.push(call),
                    Output::Finished(finished) => {
                        if let Some(tx) = s.waiters.remove(&finished.ticket) {
                            // The receiver is gone only if the handler was
                            // dropped, and then there is nobody left to tell.
                            let _ = tx.send(finished.result);
                        }
                    }
                    // An object shares nothing with others (no store).
                    Output::Shared(_) => {}
                    Output::WakeAt(at) => break Some(at),
                    Output::Idle => break None,
                }
            };
            // Refresh-ahead keeps keys bots read young between requests.
            let busy = s.core.waiting() > 0 || s.core.calls_in_flight() > 0 || s.core.refreshing();
            wake = timer::to_arm(next, busy, s.timer_at);
            if wake.is_some() {
                s.timer_at = wake;
            }
        }
        for call in calls {
            spawn_local(Rc::clone(self).send(call));
        }
        if let Some(at) = wake {
            spawn_local(Rc::clone(self).wake_at(at, now));
        }
    }

    async fn send(self: Rc<Self>, call: Dispatch<Outgoing>) {
        let outcome = upstream::send(
            &self.base_url,
            &self.signing,
            &call.payload,
            call.timeout.min(self.server.upstream_timeout()),
            self.server.max_response_bytes,
        )
        .await;
        // `Err(UnknownCall)`: the core already timed the call out on its own
        // and answered its waiters; this late outcome has nobody to go to.
        let _ = self
            .state
            .borrow_mut()
            .core
            .complete(Instant::now(), call.call, outcome);
        self.pump();
    }

    async fn wake_at(self: Rc<Self>, at: Instant, now: Instant) {
        Delay::from(timer::delay(at, now)).await;
        {
            let mut s = self.state.borrow_mut();
            if s.timer_at == Some(at) {
                s.timer_at = None;
            }
        }
        self.pump();
    }

    /// The core's stats and health now.
    pub fn report(&self) -> (StatsSnapshot, Health) {
        let now = Instant::now();
        let s = self.state.borrow();
        let stats = s.core.stats(now);
        let health = s.core.health(now);
        (stats, health)
    }
}
