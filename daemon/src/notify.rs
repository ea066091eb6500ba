//! The service manager's readiness protocol (`sd_notify`, `Type=notify`
//! and `Type=notify-reload` in systemd): `READY=1` once the daemon
//! serves, `STOPPING=1` when it starts draining, `RELOADING=1` then
//! `READY=1` around a configuration reload.
//!
//! Outside a service manager (`NOTIFY_SOCKET` unset) every call does
//! nothing. A failure to notify is logged, never fatal: the daemon
//! serving matters more than the manager hearing about it.

use sd_notify::NotifyState;

/// Sends `states` to `$NOTIFY_SOCKET`, if set. The variable is kept
/// (`unset_env = false`): the daemon notifies more than once.
fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The daemon serves: every listener is open and the configuration is
/// loaded. `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon stops: listeners close and queued requests drain.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining queued requests"),
    ]);
}

/// A reload begins. `Type=notify-reload` wants the monotonic time beside
/// `RELOADING=1`, so the manager can tell this reload from an older one;
/// call [`reloaded`] (or [`ready`]) when the new configuration serves,
/// whether it was taken or refused.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading the configuration"),
        ]),
    }
}

/// A reload ended (taken or refused): `READY=1` again.
pub fn reloaded(status: &str) {
    ready(status);
}
