//! The Python client libraries bots use (ccxt 4.5.90, coinbase-advanced-py
//! 1.8.4, from PyPI into a venv made by `scripts/install-python-venv.sh`),
//! unmodified but for `HTTPS_PROXY` and the CA bundle, against the mock
//! through `origins`: `scripts/python/clients_through_proxy.py` says what
//! it checks (JWT `uri` claims name the real host and path, the cache
//! answers repeats, syncoord's refusals are classified as retryable).
//!
//! `SYNCOORD_SKIP_PYTHON=1` skips it knowingly (no venv on this machine).

use std::path::PathBuf;
use std::process::Command;

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::Daemon;
use syncoord_mock::{MockOptions, MockUpstream};
use syncoord_proxy::ProxyConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn ccxt_and_coinbase_advanced_py_through_https_proxy() {
    if std::env::var_os("SYNCOORD_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_PYTHON=1: the Python client test is skipped");
        return;
    }
    let venv = std::env::var_os("SYNCOORD_PYTHON_VENV")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo().join(p) })
        .unwrap_or_else(|| repo().join(".toolchain/python"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/install-python-venv.sh` (or set SYNCOORD_SKIP_PYTHON=1)",
        python.display()
    );
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let dir = std::env::temp_dir().join(format!("syncoord-python-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = LocalCa::open(&dir).unwrap();
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(dir.display().to_string());
    // Failures come back quickly: one retry, no long backoff.
    for u in &mut config.upstreams {
        u.coordination.retry.max_attempts = 2;
        u.coordination.retry.base_delay_secs = 0.05;
        u.coordination.breaker.failure_threshold = 1000;
        // Refresh-ahead re-sends stored (signed) requests from spare
        // budget: right, but it would make the mock's counts and JWT
        // lists depend on timing.
        u.coordination.defaults.refresh_ahead = false;
        for rule in &mut u.coordination.routes {
            rule.refresh_ahead = Some(false);
        }
    }
    let daemon = Daemon::start(config).expect("daemon starts");
    let ca_pem = ca.cert_path();
    let out = Command::new(&python)
        .arg(repo().join("scripts/python/clients_through_proxy.py"))
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env("HTTPS_PROXY", format!("http://{}", daemon.local_addr()))
        .env("REQUESTS_CA_BUNDLE", &ca_pem)
        .env("SSL_CERT_FILE", &ca_pem)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
