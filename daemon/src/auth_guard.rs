//! Failed client authentication, throttled per source and logged in
//! summary (signing mode, `[[clients]]`).
//!
//! Why: a wrong token costs the daemon a hash per client and a log line,
//! and an unthrottled door lets anyone try thousands of tokens a second
//! and fill the log while at it. Each source address (an IPv6 one by its
//! /64, what one host usually holds) gets a GCRA allowance of failures:
//! [`BURST`] at once, then one per [`FAILURE_INTERVAL`]. Past it, a
//! request from that source that carries a token is answered `429
//! auth_throttled` with `Retry-After`, and its token is not even checked
//! (so guessing gains nothing by going faster), unless the token is one
//! that already succeeded from that source: a bot with a wrong token does
//! not lock out the good bots beside it on the same host.
//!
//! Failures are logged as one `warn` line per [`LOG_INTERVAL`] at most,
//! never one per attempt: how many, from how many sources, the busiest
//! source, and how many were refused unchecked.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are tracked (those
//! whose allowance is whole again are forgotten first); past that, new
//! sources share one allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use syncoord_core::Response;
use syncoord_proxy::{Proxy, RejectionKind};

/// Failures a source may make at once before it is throttled.
pub const BURST: u32 = 20;
/// After the burst, one more failure allowed per this interval.
pub const FAILURE_INTERVAL: Duration = Duration::from_millis(500);
/// At most one summary log line per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sources tracked at most.
pub const MAX_SOURCES: usize = 4096;
/// Tokens remembered per source as having succeeded from it.
const KNOWN_GOOD: usize = 4;

/// Where a request comes from, as throttled: an IPv4 address, an IPv6
/// /64, or the shared slot of sources past [`MAX_SOURCES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    Ip(IpAddr),
    Overflow,
}

fn key_of(ip: IpAddr) -> SourceKey {
    match ip {
        IpAddr::V4(_) => SourceKey::Ip(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SourceKey::Ip(IpAddr::V4(v4)),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                SourceKey::Ip(IpAddr::from(octets))
            }
        },
    }
}

#[derive(Debug, Default)]
struct Source {
    /// GCRA's theoretical arrival time of the next failure; `None` until
    /// the first.
    tat: Option<Instant>,
    /// SHA-256 (hex) of tokens that authenticated from this source.
    known_good: Vec<String>,
}

impl Source {
    /// How long until this source may fail again, if it is throttled now.
    fn throttled_for(&self, now: Instant) -> Option<Duration> {
        let tolerance = FAILURE_INTERVAL * (BURST - 1);
        let ahead = self.tat?.saturating_duration_since(now);
        (ahead > tolerance).then(|| ahead - tolerance)
    }

    fn fail(&mut self, now: Instant) {
        let base = self.tat.map_or(now, |t| t.max(now));
        self.tat = Some(base + FAILURE_INTERVAL);
    }

    /// Whether its allowance is whole again and it vouches for no token:
    /// nothing would be lost by forgetting it.
    fn idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|t| t <= now) && self.known_good.is_empty()
    }
}

#[derive(Debug, Default)]
struct Summary {
    since: Option<Instant>,
    failures: u64,
    refused: u64,
    /// Failures per source this interval (bounded like the sources).
    by_source: HashMap<SourceKey, u64>,
}

#[derive(Debug, Default)]
struct State {
    sources: HashMap<SourceKey, Source>,
    summary: Summary,
    last_log: Option<Instant>,
    /// A full table found nothing to forget: not looked through again
    /// before this (a flood of new sources costs no scan each).
    no_purge_before: Option<Instant>,
}

/// What the guard says about a request that carries a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the token.
    Check,
    /// Refuse it unchecked; the source may try again after this long.
    Throttled(Duration),
}

/// See the module docs. One per daemon, shared by every listener.
#[derive(Debug, Default)]
pub struct AuthGuard {
    state: Mutex<State>,
}

impl AuthGuard {
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic elsewhere while holding the lock leaves counters only.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// Before checking a token from `ip` whose SHA-256 (hex) is
    /// `token_sha256`: check it, or refuse it unchecked.
    pub fn before(&self, ip: IpAddr, token_sha256: Option<&str>, now: Instant) -> Verdict {
        self.with_state(|state| {
            state.flush(now);
            let key = key_of(ip);
            // A source not tracked because the table is full is judged by
            // the slot it would share.
            let full = state.sources.len() >= MAX_SOURCES;
            let source = state.sources.get(&key).or_else(|| {
                full.then(|| state.sources.get(&SourceKey::Overflow))
                    .flatten()
            });
            let Some(source) = source else {
                return Verdict::Check;
            };
            match source.throttled_for(now) {
                None => Verdict::Check,
                Some(_)
                    if token_sha256.is_some_and(|t| source.known_good.iter().any(|g| g == t)) =>
                {
                    Verdict::Check
                }
                Some(wait) => {
                    state.summary.refused += 1;
                    state.summary.since.get_or_insert(now);
                    Verdict::Throttled(wait)
                }
            }
        })
    }

    /// A token from `ip` was wrong (or unreadable).
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        self.with_state(|state| {
            let key = state.slot_for(key_of(ip), now);
            state.sources.entry(key).or_default().fail(now);
            let summary = &mut state.summary;
            summary.since.get_or_insert(now);
            summary.failures += 1;
            if summary.by_source.len() < MAX_SOURCES || summary.by_source.contains_key(&key) {
                *summary.by_source.entry(key).or_default() += 1;
            }
            state.flush(now);
        });
    }

    /// A token from `ip` authenticated: it passes even while its source
    /// is throttled.
    pub fn succeeded(&self, ip: IpAddr, token_sha256: &str, now: Instant) {
        self.with_state(|state| {
            let key = state.slot_for(key_of(ip), now);
            let known = &mut state.sources.entry(key).or_default().known_good;
            if !known.iter().any(|g| g == token_sha256) {
                if known.len() == KNOWN_GOOD {
                    known.remove(0);
                }
                known.push(token_sha256.to_owned());
            }
        });
    }

    /// Sources tracked now (for tests: the bound holds).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.with_state(|state| state.sources.len())
    }
}

/// A request's token, as the guard remembers it: its SHA-256 (hex), or
/// `None` when it could not be read at all.
pub(crate) struct Presented(Option<String>);

impl AuthGuard {
    /// The door of signing mode, before the token is checked: `Ok(None)`
    /// without `[[clients]]` or without a token, `Ok(Some)` to go on and
    /// check it, `Err` with the `429 auth_throttled` to answer instead.
    fn admit(
        &self,
        proxy: &Proxy,
        peer: IpAddr,
        headers: &[(String, String)],
    ) -> Result<Option<Presented>, Response> {
        if !proxy.has_clients() {
            return Ok(None);
        }
        let presented = match syncoord_wire::presented_token(headers) {
            Ok(None) => return Ok(None),
            Ok(Some(token)) => Presented(Some(syncoord_wire::token_sha256_hex(&token))),
            Err(_) => Presented(None),
        };
        match self.before(peer, presented.0.as_deref(), Instant::now()) {
            Verdict::Check => Ok(Some(presented)),
            Verdict::Throttled(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut response = crate::exposure::refusal(
                    429,
                    "auth_throttled",
                    &format!("too many failed client authentications from this address: try again in {secs} s (the token was not checked)"),
                );
                response
                    .headers
                    .push(("Retry-After".into(), secs.to_string()));
                Err(response)
            }
        }
    }

    /// What checking the token `presented` from `peer` came to: `refused`
    /// is the refusal's kind, if the request was refused.
    fn judged(&self, peer: IpAddr, presented: Option<Presented>, refused: Option<RejectionKind>) {
        let Some(Presented(sha)) = presented else {
            return;
        };
        let now = Instant::now();
        match (refused, sha) {
            (Some(kind), _) if is_auth_failure(kind) => self.failed(peer, now),
            (None, Some(sha)) => self.succeeded(peer, &sha, now),
            _ => {}
        }
    }
}

impl AuthGuard {
    /// Signing mode's door around `check` (routing, or authenticating a
    /// CONNECT, which checks the token): `Err` with the `429` when the
    /// source is throttled (and `check` is not run), else what `check`
    /// came to, recorded as a failure or a success of the token.
    pub(crate) fn guard<T>(
        &self,
        proxy: &Proxy,
        peer: IpAddr,
        headers: &[(String, String)],
        check: impl FnOnce() -> Result<T, syncoord_proxy::Rejection>,
    ) -> Result<Result<T, syncoord_proxy::Rejection>, Response> {
        let presented = self.admit(proxy, peer, headers)?;
        let outcome = check();
        self.judged(
            peer,
            presented,
            outcome.as_ref().err().map(syncoord_proxy::Rejection::kind),
        );
        Ok(outcome)
    }
}

/// Whether a refusal of this kind is a failed authentication, which the
/// guard logs in summary (not one line per attempt).
pub(crate) fn is_auth_failure(kind: RejectionKind) -> bool {
    matches!(kind, RejectionKind::BadToken | RejectionKind::UnknownToken)
}

impl State {
    /// `key` itself when tracked or when there is room (after forgetting
    /// idle sources), else the shared overflow slot.
    fn slot_for(&mut self, key: SourceKey, now: Instant) -> SourceKey {
        if self.sources.contains_key(&key) || self.sources.len() < MAX_SOURCES {
            return key;
        }
        if self.no_purge_before.is_none_or(|t| now >= t) {
            self.sources.retain(|_, s| !s.idle(now));
        }
        if self.sources.len() < MAX_SOURCES {
            key
        } else {
            self.no_purge_before = Some(now + FAILURE_INTERVAL);
            SourceKey::Overflow
        }
    }

    /// Logs the interval's summary once it is [`LOG_INTERVAL`] old (the
    /// first failure ever is logged at once: `last_log` is unset).
    fn flush(&mut self, now: Instant) {
        let summary = &self.summary;
        if summary.failures == 0 && summary.refused == 0 {
            return;
        }
        if self
            .last_log
            .is_some_and(|last| now.saturating_duration_since(last) < LOG_INTERVAL)
        {
            return;
        }
        let summary = std::mem::take(&mut self.summary);
        self.last_log = Some(now);
        let (busiest, most) = summary
            .by_source
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(k, n)| {
                let name = match k {
                    SourceKey::Ip(ip) => ip.to_string(),
                    SourceKey::Overflow => "(sources past the tracking limit)".to_owned(),
                };
                (name, *n)
            })
            .unwrap_or_else(|| ("-".to_owned(), 0));
        let secs = summary
            .since
            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64());
        tracing::warn!(
            failures = summary.failures,
            sources = summary.by_source.len(),
            busiest_source = %busiest,
            busiest_failures = most,
            refused_unchecked = summary.refused,
            over_secs = format!("{secs:.1}"),
            "client authentication failed (wrong or unreadable tokens); sources past {BURST} failures are answered 429 auth_throttled"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_throttled_after_its_burst_and_recovers_at_the_set_pace() {
        let guard = AuthGuard::default();
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..BURST {
            assert_eq!(guard.before(a, None, t0), Verdict::Check, "failure {i}");
            guard.failed(a, t0);
        }
        let Verdict::Throttled(wait) = guard.before(a, None, t0) else {
            panic!("the burst is spent");
        };
        assert_eq!(wait, FAILURE_INTERVAL);
        // Another source is not affected.
        assert_eq!(guard.before(ip("10.0.0.2"), None, t0), Verdict::Check);
        // One failure more is allowed per interval, no faster.
        assert_eq!(guard.before(a, None, t0 + FAILURE_INTERVAL), Verdict::Check);
        guard.failed(a, t0 + FAILURE_INTERVAL);
        assert!(matches!(
            guard.before(a, None, t0 + FAILURE_INTERVAL + Duration::from_millis(10)),
            Verdict::Throttled(_)
        ));
        // After a quiet spell the whole burst is back.
        let later = t0 + FAILURE_INTERVAL * (BURST + 2);
        for _ in 0..BURST {
            assert_eq!(guard.before(a, None, later), Verdict::Check);
            guard.failed(a, later);
        }
    }

    #[test]
    fn a_token_that_succeeded_from_a_source_passes_while_it_is_throttled() {
        let guard = AuthGuard::default();
        let t0 = Instant::now();
        let a = ip("127.0.0.1");
        guard.succeeded(a, "good", t0);
        for _ in 0..BURST + 5 {
            guard.failed(a, t0);
        }
        assert_eq!(guard.before(a, Some("good"), t0), Verdict::Check);
        assert!(matches!(
            guard.before(a, Some("guess"), t0),
            Verdict::Throttled(_)
        ));
        assert!(matches!(guard.before(a, None, t0), Verdict::Throttled(_)));
    }

    #[test]
    fn ipv6_sources_are_throttled_by_their_64_and_mapped_v4_as_v4() {
        let guard = AuthGuard::default();
        let t0 = Instant::now();
        for i in 0..BURST {
            guard.failed(ip(&format!("2001:db8::{:x}", i + 1)), t0);
        }
        assert!(matches!(
            guard.before(ip("2001:db8::ffff:1"), None, t0),
            Verdict::Throttled(_)
        ));
        assert_eq!(
            guard.before(ip("2001:db8:0:1::1"), None, t0),
            Verdict::Check
        );
        for _ in 0..BURST {
            guard.failed(ip("::ffff:10.1.2.3"), t0);
        }
        assert!(matches!(
            guard.before(ip("10.1.2.3"), None, t0),
            Verdict::Throttled(_)
        ));
    }

    /// Every log line written while `f` runs on this thread.
    ///
    /// One global subscriber for the test binary, writing into the buffer
    /// of the thread that logs: a scoped (`with_default`) one raced with
    /// other test threads registering callsites, and now and then the
    /// cached interest left it without a single line.
    fn logged(f: impl FnOnce()) -> String {
        thread_local! {
            static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
        }
        struct ThisThread;
        impl std::io::Write for ThisThread {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                CAPTURED.with(|c| {
                    if let Some(lines) = c.borrow_mut().as_mut() {
                        lines.extend_from_slice(buf);
                    }
                });
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
        });
        CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
        f();
        let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn failures_are_logged_once_per_interval_not_once_per_attempt() {
        let guard = AuthGuard::default();
        let t0 = Instant::now();
        let lines = logged(|| {
            // 1,000 failures a second for 25 s, from two sources.
            for ms in 0..25_000u64 {
                let now = t0 + Duration::from_millis(ms);
                let from = if ms % 2 == 0 {
                    ip("10.0.0.1")
                } else {
                    ip("10.0.0.2")
                };
                if guard.before(from, None, now) == Verdict::Check {
                    guard.failed(from, now);
                }
            }
        });
        let summaries: Vec<&str> = lines
            .lines()
            .filter(|l| l.contains("client authentication failed"))
            .collect();
        // The first at once, then one per 10 s: at 0, 10 and 20 s.
        assert_eq!(summaries.len(), 3, "{lines}");
        assert_eq!(lines.lines().count(), 3, "nothing else is logged: {lines}");
        assert!(summaries[1].contains("sources=2"), "{}", summaries[1]);
        assert!(
            summaries[1].contains("refused_unchecked="),
            "{}",
            summaries[1]
        );
    }

    #[test]
    fn memory_stays_bounded_when_every_source_is_new() {
        let guard = AuthGuard::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 5000) {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            guard.failed(a, t0);
        }
        assert!(guard.tracked() <= MAX_SOURCES + 1, "{}", guard.tracked());
        // Sources past the bound share one allowance, which they spent.
        let fresh = IpAddr::from(0x0b00_0000u32.to_be_bytes());
        assert!(matches!(
            guard.before(fresh, None, t0),
            Verdict::Throttled(_)
        ));
        // Once the tracked ones are whole again, they are forgotten and a
        // new source gets a slot of its own.
        let later = t0 + Duration::from_secs(1);
        guard.failed(fresh, later);
        assert_eq!(guard.before(fresh, None, later), Verdict::Check);
        assert!(guard.tracked() <= MAX_SOURCES + 1);
    }
}
