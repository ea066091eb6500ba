//! The access log: one line per request the daemon answered (off by
//! default), to stderr or to a file that `SIGUSR1` reopens after
//! logrotate moved it. Written directly, not through `tracing`, so the
//! log level never hides it and it never mixes with event lines in a
//! file.
//!
//! Fields: `time` (Unix seconds, ms), `client` (its alias, `-` when the
//! request was refused before one was known), `method`, `path` (query
//! values whose name looks like a secret replaced by `REDACTED`),
//! `upstream`, `route` and `class` (the route rule and priority class the
//! coordinator used, `-` for a request refused before routing), `status`
//! (what the bot got), `cache` (`X-Syncoord-Cache`: hit, stale, miss,
//! coalesced, ...), `wait_ms` (queue wait before its call left, `-` when no
//! call answered it), `upstream_status` and `upstream_ms` (upstream's
//! answer to that call and how long it took, `-` when upstream did not
//! answer this request just now), `ms` (time inside syncoord), `bytes`
//! (body), `error` (syncoord's error kind, `X-Syncoord-Error`, or `-`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use syncoord_core::{Response, Timing};

/// Where access lines go.
enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

/// The access log; off until [`AccessLog::to_stderr`] or
/// [`AccessLog::to_file`].
#[derive(Default)]
pub struct AccessLog {
    on: AtomicBool,
    json: AtomicBool,
    sink: Mutex<Option<Sink>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("on", &self.on.load(Ordering::Relaxed))
            .finish()
    }
}

/// Query parameter names whose values are never written.
const SECRET_NAMES: &[&str] = &[
    "key",
    "token",
    "secret",
    "sig",
    "pass",
    "auth",
    "jwt",
    "credential",
    "session",
];

/// `target` with the values of secret-looking query parameters replaced.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if looks_secret(name) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// One request as the access log shows it.
pub(crate) struct Entry<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub upstream: &'a str,
    pub route: &'a str,
    pub class: &'a str,
    pub elapsed: Duration,
    pub timing: Timing,
    pub response: &'a Response,
}

impl AccessLog {
    /// Lines to stderr; `json`: one JSON object per line.
    pub fn to_stderr(&self, json: bool) {
        *self.lock() = Some(Sink::Stderr);
        self.json.store(json, Ordering::Relaxed);
        self.on.store(true, Ordering::Release);
    }

    /// Lines appended to `path` (created mode 0640 if missing).
    pub fn to_file(&self, path: &Path, json: bool) -> std::io::Result<()> {
        let file = open(path)?;
        *self.lock() = Some(Sink::File {
            path: path.to_owned(),
            file,
        });
        self.json.store(json, Ordering::Relaxed);
        self.on.store(true, Ordering::Release);
        Ok(())
    }

    /// Reopens the file (after logrotate moved it); stderr is left as is.
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut sink = self.lock();
        if let Some(Sink::File { path, file }) = &mut *sink {
            *file = open(path)?;
        }
        Ok(())
    }

    /// Whether lines are written (cheap: the hit path asks).
    pub(crate) fn enabled(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sink>> {
        self.sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `entry`'s line; a write that fails is dropped (the request
    /// was answered; the log must not take the daemon down).
    pub(crate) fn record(&self, entry: &Entry<'_>) {
        if !self.enabled() {
            return;
        }
        let line = self.line(entry);
        match &mut *self.lock() {
            Some(Sink::Stderr) => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Some(Sink::File { file, .. }) => {
                let _ = file.write_all(line.as_bytes());
            }
            None => {}
        }
    }

    fn line(&self, e: &Entry<'_>) -> String {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let path = redact_target(e.target);
        let cache = e
            .response
            .header(syncoord_proxy::CACHE_HEADER)
            .unwrap_or("-");
        let error = e
            .response
            .header(syncoord_proxy::ERROR_HEADER)
            .unwrap_or("-");
        let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
        let wait = e.timing.queue_wait.map(ms);
        let latency = e.timing.upstream_latency.map(ms);
        // The bot got upstream's own answer exactly when upstream answered
        // its call just now.
        let upstream_status = latency.map(|_| e.response.status);
        if self.json.load(Ordering::Relaxed) {
            let v = serde_json::json!({
                "time": (time * 1000.0).round() / 1000.0,
                "client": e.client,
                "method": e.method,
                "path": path,
                "upstream": e.upstream,
                "route": e.route,
                "class": e.class,
                "status": e.response.status,
                "cache": cache,
                "wait_ms": wait,
                "upstream_status": upstream_status,
                "upstream_ms": latency,
                "ms": ms(e.elapsed),
                "bytes": e.response.body.len(),
                "error": error,
            });
            format!("{v}\n")
        } else {
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            format!(
                "time={time:.3} client={:?} method={} path={:?} upstream={} route={:?} class={:?} status={} cache={cache} wait_ms={} upstream_status={} upstream_ms={} ms={:.1} bytes={} error={error}\n",
                e.client,
                e.method.escape_debug(),
                path,
                e.upstream,
                e.route,
                e.class,
                e.response.status,
                or_dash(wait.map(|w| format!("{w:.1}"))),
                or_dash(upstream_status.map(|s| s.to_string())),
                or_dash(latency.map(|l| format!("{l:.1}"))),
                ms(e.elapsed),
                e.response.body.len(),
            )
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_query_values_are_redacted() {
        assert_eq!(
            redact_target("/x?product_id=BTC-USD&api_key=abc&Signature=zz&limit=5"),
            "/x?product_id=BTC-USD&api_key=REDACTED&Signature=REDACTED&limit=5"
        );
        assert_eq!(redact_target("/x"), "/x");
    }

    #[test]
    fn a_line_has_every_field_and_json_parses() {
        let log = AccessLog::default();
        let response = Response::new(429, "{}")
            .with_header("X-Syncoord-Cache", "miss")
            .with_header("X-Syncoord-Error", "rate_limited");
        let entry = Entry {
            client: "bot-1",
            method: "GET",
            target: "/a?token=s3cret",
            upstream: "advanced",
            route: "market",
            class: "market",
            elapsed: Duration::from_millis(12),
            timing: Timing {
                queue_wait: Some(Duration::from_micros(2500)),
                upstream_latency: Some(Duration::from_millis(9)),
            },
            response: &response,
        };
        let text = log.line(&entry);
        for f in [
            "client=\"bot-1\"",
            "method=GET",
            "path=\"/a?token=REDACTED\"",
            "upstream=advanced",
            "route=\"market\"",
            "class=\"market\"",
            "status=429",
            "cache=miss",
            "wait_ms=2.5",
            "upstream_status=429",
            "upstream_ms=9.0",
            "ms=12.0",
            "bytes=2",
            "error=rate_limited",
        ] {
            assert!(text.contains(f), "{f}: {text}");
        }
        assert!(!text.contains("s3cret"));
        log.json.store(true, Ordering::Relaxed);
        let v: serde_json::Value = serde_json::from_str(log.line(&entry).trim()).unwrap();
        assert_eq!(v["status"], 429);
        assert_eq!(v["path"], "/a?token=REDACTED");
        assert_eq!(
            (v["wait_ms"].as_f64(), v["upstream_ms"].as_f64()),
            (Some(2.5), Some(9.0))
        );
        assert_eq!(v["route"], "market");
        // A cache hit: no call, no upstream fields.
        let hit = Entry {
            timing: Timing::default(),
            ..entry
        };
        log.json.store(false, Ordering::Relaxed);
        let text = log.line(&hit);
        for f in ["wait_ms=- ", "upstream_status=- ", "upstream_ms=- "] {
            assert!(text.contains(f), "{f}: {text}");
        }
    }
}
