//! `/livez` and `/readyz`, in the Kubernetes convention, beside the
//! health endpoint (which says how upstreams fare, not whether this
//! process can serve).
//!
//! - `GET /livez`: `200 ok` whenever the process answers at all; a
//!   supervisor restarts the daemon only when this fails.
//! - `GET /readyz`: `200 ready` once the configuration is loaded, the CA
//!   exists (when the daemon can intercept `CONNECT`) and every listener
//!   is open; `503` with the reason otherwise, and while draining, so a
//!   load balancer stops sending new requests before the daemon stops.
//!
//! Both are plain text, answered on the event loop, and never read the
//! coordinators (a stuck upstream must not make a probe slow).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use syncoord_core::Response;

use crate::ca::LazyCa;

/// Liveness: the process answers.
pub const LIVEZ_PATH: &str = "/livez";
/// Readiness: the process serves new requests.
pub const READYZ_PATH: &str = "/readyz";

/// Which probe a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Live,
    Ready,
}

/// The probe `method target` asks for (`GET` or `HEAD`; a query is
/// ignored), if any.
pub(crate) fn probe(method: &str, target: &str) -> Option<Probe> {
    if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match path {
        LIVEZ_PATH => Some(Probe::Live),
        READYZ_PATH => Some(Probe::Ready),
        _ => None,
    }
}

/// What readiness depends on, shared by every listener's handler.
#[derive(Debug)]
pub(crate) struct Readiness {
    /// Every listener is bound (set once, after the last one).
    listening: AtomicBool,
    /// Stopping: listeners close and queued requests drain.
    draining: AtomicBool,
    /// The CA, when the daemon intercepts `CONNECT` and so needs it:
    /// asked each time (a broken one is tried again after its backoff).
    ca: Option<Arc<LazyCa>>,
}

impl Readiness {
    /// Not ready until [`Self::listening`]; `ca` is the CA the daemon
    /// needs, if it intercepts `CONNECT`.
    pub(crate) fn new(ca: Option<Arc<LazyCa>>) -> Readiness {
        Readiness {
            listening: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            ca,
        }
    }

    /// Why the CA the daemon needs is unusable now, if it is.
    pub(crate) fn ca_problem(&self) -> Option<String> {
        self.ca.as_ref().and_then(|ca| ca.problem())
    }

    /// A reload: a CA that failed is tried again at once.
    pub(crate) fn retry_ca(&self) {
        if let Some(ca) = &self.ca {
            ca.retry_now();
        }
    }

    /// Every listener is open.
    pub(crate) fn listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// The daemon began to stop.
    pub(crate) fn draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why the daemon is not ready, or `None` when it is.
    pub(crate) fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("draining: syncoord is stopping".to_owned());
        }
        if let Some(why) = self.ca_problem() {
            return Some(format!("the local CA for CONNECT is unusable: {why}"));
        }
        if !self.listening.load(Ordering::Acquire) {
            return Some("starting: not every listener is open yet".to_owned());
        }
        None
    }

    /// The answer to `probe`.
    pub(crate) fn answer(&self, probe: Probe) -> Response {
        let (status, body) = match probe {
            Probe::Live => (200, "ok\n".to_owned()),
            Probe::Ready => match self.not_ready() {
                None => (200, "ready\n".to_owned()),
                Some(why) => (503, format!("not ready: {why}\n")),
            },
        };
        Response::new(status, body)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_header("Cache-Control", "no-store")
    }
}

/// An upstream's health with the CA's problem added: `degraded` (plain
/// requests still work; intercepted `CONNECT`s get `502
/// ca_unavailable`), reason `ca_unavailable`.
pub(crate) fn add_ca_reason(health: &mut syncoord_core::stats::Health, why: &str) {
    use syncoord_core::stats::{Reason, Status};
    health.reasons.push(Reason {
        severity: Status::Degraded,
        code: "ca_unavailable",
        message: format!(
            "the local CA for CONNECT is unusable (intercepting bots get 502 ca_unavailable): {why}"
        ),
    });
    health.status = health.status.max(Status::Degraded);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_get_or_head_on_their_paths() {
        assert_eq!(probe("GET", "/livez"), Some(Probe::Live));
        assert_eq!(probe("head", "/readyz?verbose"), Some(Probe::Ready));
        assert_eq!(probe("POST", "/readyz"), None);
        assert_eq!(probe("GET", "/readyz/x"), None);
        assert_eq!(probe("GET", "https://api.coinbase.com/livez"), None);
    }

    #[test]
    fn ready_only_when_listening_with_a_ca_and_not_draining() {
        let r = Readiness::new(None);
        assert_eq!(r.answer(Probe::Ready).status, 503);
        assert_eq!(r.answer(Probe::Live).status, 200);
        r.listening();
        assert_eq!(r.answer(Probe::Ready).status, 200);
        r.draining();
        let a = r.answer(Probe::Ready);
        assert_eq!(a.status, 503);
        assert!(String::from_utf8_lossy(&a.body).contains("draining"));
        assert_eq!(r.answer(Probe::Live).status, 200);

        let dir = std::env::temp_dir().join(format!("syncoord-probe-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let open = |mode| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        open(0o777);
        let ca = Arc::new(LazyCa::new(dir.clone()));
        let _ = ca.get();
        let r = Readiness::new(Some(Arc::clone(&ca)));
        r.listening();
        let a = r.answer(Probe::Ready);
        assert_eq!(a.status, 503);
        assert!(String::from_utf8_lossy(&a.body).contains("writable"));
        // Fixed, and a reload: ready, no restart.
        open(0o700);
        r.retry_ca();
        assert_eq!(r.answer(Probe::Ready).status, 200);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
