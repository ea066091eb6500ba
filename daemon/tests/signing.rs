//! Signing mode end to end (issue 11): the real daemon holds the keys and
//! signs each attempt when it sends it; bots send only their tokens; the
//! mock upstream runs in strict mode and verifies every signature as
//! Coinbase does (ES256 and Ed25519 JWTs, Exchange HMAC), so "signatures
//! stay valid" is tested, not assumed.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use syncoord_daemon::{Daemon, HostSecrets};
use syncoord_mock::{Faults, MockOptions, MockUpstream, Verifier};
use syncoord_proxy::ProxyConfig;
use syncoord_wire::token_sha256_hex;

mod common;
use common::{agent, get};

const DESK: &str = "organizations/o1/apiKeys/desk";
const ED: &str = "organizations/o1/apiKeys/ed";
const EX_KEY: &str = "exchange-key-1";
const EX_PASSPHRASE: &str = "correct horse battery";
/// Base64 of the Exchange secret's bytes.
const EX_SECRET: &str = "dGhlLWV4Y2hhbmdlLXNlY3JldC1ieXRlcy0xMjM0NTY=";
const OTHER_TOKEN: &str = "token-of-the-other-desk";
const EX_TOKEN: &str = "token-for-the-exchange";

fn bot_token(i: usize) -> String {
    format!("bot-token-{i:02}-f81d4fae7dec11d0a765")
}

/// The key material, as files in a folder of their own (mode 0600).
struct Keys {
    dir: PathBuf,
    es256_pem: String,
    ed25519_b64: String,
}

impl Keys {
    fn new(tag: &str) -> Keys {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("syncoord-signing-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let es256 = syncoord_mock::p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
        let es256_pem = es256.to_sec1_pem(Default::default()).unwrap().to_string();
        let ed = syncoord_mock::ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
        let mut both = ed.to_bytes().to_vec();
        both.extend_from_slice(ed.verifying_key().as_bytes());
        let ed25519_b64 = base64::engine::general_purpose::STANDARD.encode(&both);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write(
            "desk.json",
            &serde_json::json!({"name": DESK, "privateKey": es256_pem}).to_string(),
        );
        write("ed.key", &ed25519_b64);
        write("exchange.secret", EX_SECRET);
        write("exchange.passphrase", &format!("{EX_PASSPHRASE}\n"));
        Keys {
            dir,
            es256_pem,
            ed25519_b64,
        }
    }

    /// What the strict mock knows: the public halves and the Exchange
    /// secret.
    fn verifier(&self) -> Verifier {
        Verifier::new()
            .cdp_private_key(DESK, &self.es256_pem)
            .unwrap()
            .cdp_private_key(ED, &self.ed25519_b64)
            .unwrap()
            .exchange_base64(EX_KEY, EX_SECRET, EX_PASSPHRASE)
            .unwrap()
    }

    /// Fragments of every secret, to look for where they must not be.
    fn secrets(&self) -> Vec<String> {
        let pem_body: String = self
            .es256_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let mut out = vec![
            pem_body[..32].to_owned(),
            pem_body[pem_body.len() - 32..].to_owned(),
            self.ed25519_b64[..32].to_owned(),
            EX_SECRET.to_owned(),
            EX_PASSPHRASE.to_owned(),
            OTHER_TOKEN.to_owned(),
            EX_TOKEN.to_owned(),
        ];
        out.extend((0..20).map(bot_token));
        out
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strict_mock(keys: &Keys, options: MockOptions) -> MockUpstream {
    MockUpstream::start(MockOptions {
        verify: Some(Arc::new(keys.verifier())),
        ..options
    })
    .expect("mock starts")
}

/// Advanced Trade and Exchange (under `/exchange`) in front of `mock`,
/// three credentials, twenty bots on `desk`, one on `ed`, one on the
/// Exchange key; `extra` TOML goes in the first upstream's table.
fn config(mock: &MockUpstream, extra: &str) -> ProxyConfig {
    let mut text = common::two_upstreams_toml(mock, extra);
    text.push_str(&format!(
        r#"
[[credentials]]
name = "desk"
upstream = "advanced"
kind = "coinbase-cdp"
key_file = "desk.json"

[[credentials]]
name = "ed"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "{ED}"
private_key_file = "ed.key"

[[credentials]]
name = "exchange-main"
upstream = "exchange"
kind = "coinbase-exchange"
key = "{EX_KEY}"
secret_file = "exchange.secret"
passphrase_file = "exchange.passphrase"

[[clients]]
name = "other"
token_sha256 = "{other}"
credentials = ["ed"]

[[clients]]
name = "exchange-bot"
token_sha256 = "{ex}"
credentials = ["exchange-main"]
"#,
        other = token_sha256_hex(OTHER_TOKEN),
        ex = token_sha256_hex(EX_TOKEN),
    ));
    for i in 0..20 {
        text.push_str(&format!(
            "\n[[clients]]\nname = \"bot{i:02}\"\ntoken_sha256 = \"{}\"\ncredentials = [\"desk\"]\n",
            token_sha256_hex(&bot_token(i))
        ));
    }
    ProxyConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn daemon(keys: &Keys, mock: &MockUpstream, extra: &str) -> (Daemon, String) {
    let daemon =
        Daemon::start_with_secrets(config(mock, extra), &HostSecrets::relative_to(&keys.dir))
            .expect("daemon starts");
    let base = format!("http://{}", daemon.local_addr());
    (daemon, base)
}

/// Every log line of this test binary, at every level.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let writer = move || LogWriter(buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(writer)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn mock_credential(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    if body.is_empty() {
        return out;
    }
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    if let Some(accounts) = v.get("accounts").and_then(|a| a.as_array()) {
        for a in accounts {
            if let Some(c) = a.get("mock_credential").and_then(|c| c.as_str()) {
                out.push(c.to_owned());
            }
        }
    }
    if let Some(c) = v.get("mock_credential").and_then(|c| c.as_str()) {
        out.push(c.to_owned());
    }
    out
}

const ACCOUNTS: &str = "/api/v3/brokerage/accounts";

#[test]
fn twenty_bots_sharing_one_credential_by_token_get_no_errors_and_never_anothers_data() {
    let _ = logs();
    let keys = Keys::new("twenty");
    let mock = strict_mock(&keys, MockOptions::default());
    let (daemon, base) = daemon(&keys, &mock, "");
    // 20 bots on `desk` and 4 on `ed`, each with a plain base-URL
    // override and only its token: balances (cached, private), the ticker
    // (public), and an order each.
    let results: Vec<(usize, Vec<(u16, String)>)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..24usize)
            .map(|i| {
                let base = base.as_str();
                s.spawn(move || {
                    let token = if i < 20 { bot_token(i) } else { OTHER_TOKEN.to_owned() };
                    let agent = agent();
                    let mut seen = Vec::new();
                    for round in 0..4 {
                        let r = get(&agent, &format!("{base}{ACCOUNTS}"), &[("X-Syncoord-Token", &token)]);
                        seen.push((r.status, r.body));
                        let r = get(
                            &agent,
                            &format!("{base}/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1"),
                            &[("X-Syncoord-Token", &token)],
                        );
                        seen.push((r.status, String::new()));
                        if round == 0 {
                            let body = format!(
                                r#"{{"client_order_id":"bot{i}-o1","product_id":"BTC-USD","side":"BUY","order_configuration":{{"market_market_ioc":{{"quote_size":"10"}}}}}}"#
                            );
                            let mut response = agent
                                .post(format!("{base}/api/v3/brokerage/orders"))
                                .header("X-Syncoord-Token", &token)
                                .header("Content-Type", "application/json")
                                .send(body.as_bytes())
                                .unwrap_or_else(|e| panic!("order of bot {i}: {e}"));
                            let status = response.status().as_u16();
                            seen.push((status, response.body_mut().read_to_string().unwrap_or_default()));
                        }
                    }
                    (i, seen)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("bot")).collect()
    });
    for (i, seen) in &results {
        let own = if *i < 20 {
            format!("jwt:{DESK}")
        } else {
            format!("jwt:{ED}")
        };
        for (status, body) in seen {
            assert_eq!(*status, 200, "bot {i}: {body}");
            for who in mock_credential(body) {
                assert_eq!(who, own, "bot {i} got another account's data");
            }
        }
        assert!(
            seen.iter().any(|(_, b)| !mock_credential(b).is_empty()),
            "bot {i} saw its account at least once"
        );
    }
    let stats = mock.stats();
    assert!(
        stats.signature_failures.is_empty(),
        "{:?}",
        stats.signature_failures
    );
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.unauthorized, 0);
    assert!(
        stats.signatures_verified >= 24,
        "every order at least: {}",
        stats.signatures_verified
    );
    // Both key types reached upstream and verified.
    assert!(stats.by_credential.contains_key(&format!("jwt:{DESK}")));
    assert!(stats.by_credential.contains_key(&format!("jwt:{ED}")));
    for uri in &stats.jwt_uris {
        assert!(
            uri.ends_with(ACCOUNTS) || uri.contains("/api/v3/brokerage/"),
            "{uri}"
        );
        assert!(
            uri.contains(&mock.addr().to_string()),
            "signed for the real host: {uri}"
        );
    }

    // Key material shows nowhere: stats, metrics, health, errors, logs.
    let agent = agent();
    let mut shown = String::new();
    for path in ["/api/v1/sync-coordination/stats", "/metrics", "/health"] {
        shown.push_str(&get(&agent, &format!("{base}{path}"), &[]).body);
    }
    shown.push_str(
        &get(
            &agent,
            &format!("{base}{ACCOUNTS}"),
            &[("X-Syncoord-Token", "wrong")],
        )
        .body,
    );
    shown.push_str(
        &get(
            &agent,
            &format!("{base}{ACCOUNTS}"),
            &[
                ("X-Syncoord-Token", OTHER_TOKEN),
                ("X-Syncoord-Credential", "desk"),
            ],
        )
        .body,
    );
    drop(daemon);
    shown.push_str(&String::from_utf8_lossy(&logs().lock().unwrap()));
    assert!(
        shown.contains("signed:desk"),
        "the stats do name the credential"
    );
    assert!(
        shown.contains("signing mode") && shown.contains(DESK),
        "the logs were captured, and name the key by its id"
    );
    for secret in keys.secrets() {
        assert!(!shown.contains(&secret), "a secret shows: `{secret}`");
    }
}

#[test]
fn a_wrong_or_missing_token_is_a_401_that_reaches_no_one() {
    let keys = Keys::new("wrong");
    let mock = strict_mock(&keys, MockOptions::default());
    let (_daemon, base) = daemon(&keys, &mock, "");
    let agent = agent();
    let url = format!("{base}{ACCOUNTS}");
    let wrong = get(&agent, &url, &[("X-Syncoord-Token", "not-a-token")]);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(wrong.error.as_deref(), Some("unknown_token"));
    let none = get(&agent, &url, &[]);
    assert_eq!(none.status, 401, "{}", none.body);
    // A bot that signs for itself is no way around it.
    let own = get(&agent, &url, &[("Authorization", "Bearer a.b.c")]);
    assert_eq!(own.status, 401, "{}", own.body);
    // As an HTTP proxy client would send it, with a wrong password.
    let basic = base64::engine::general_purpose::STANDARD.encode("bot7:nope");
    let proxied = get(
        &agent,
        &format!("{base}/{}{ACCOUNTS}", mock.base_url()),
        &[("Proxy-Authorization", &format!("Basic {basic}"))],
    );
    assert_eq!(proxied.status, 401, "{}", proxied.body);
    assert_eq!(mock.stats().requests_total, 0, "nothing reached upstream");
    // The right token through the same door is answered.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot7:{}", bot_token(7)));
    let ok = get(
        &agent,
        &format!("{base}/{}{ACCOUNTS}", mock.base_url()),
        &[("Proxy-Authorization", &format!("Basic {basic}"))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(mock.stats().requests_total, 1);
}

/// Guessing tokens is throttled per source: past the burst, a wrong
/// token is answered `429 auth_throttled` with `Retry-After`, unchecked,
/// while a token that already worked from that address still does.
#[test]
fn failed_authentication_is_throttled_per_source_and_a_known_good_token_still_passes() {
    let keys = Keys::new("throttle");
    let mock = strict_mock(&keys, MockOptions::default());
    let (_daemon, base) = daemon(&keys, &mock, "");
    let agent = agent();
    let url = format!("{base}{ACCOUNTS}");
    let good = bot_token(3);
    assert_eq!(
        get(&agent, &url, &[("X-Syncoord-Token", &good)]).status,
        200
    );
    let mut statuses = Vec::new();
    for i in 0..30 {
        let wrong = format!("guess-{i}");
        let reply = get(&agent, &url, &[("X-Syncoord-Token", &wrong)]);
        if reply.status == 429 {
            assert_eq!(reply.error.as_deref(), Some("auth_throttled"));
            let secs: u64 = reply
                .retry_after
                .as_deref()
                .and_then(|s| s.parse().ok())
                .expect("Retry-After in seconds");
            assert!((1..=2).contains(&secs), "Retry-After {secs}");
        }
        statuses.push(reply.status);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    // 20 failures at once, then one per 0.5 s: a slow test machine may
    // let one or two more through.
    assert!((20..=23).contains(&refused), "{statuses:?}");
    assert_eq!(refused + throttled, 30, "{statuses:?}");
    assert_eq!(&statuses[..20], &[401; 20]);
    // An unreadable token counts the same (and is throttled the same).
    let basic = get(&agent, &url, &[("Proxy-Authorization", "Basic !!")]);
    assert_eq!(basic.status, 429, "{}", basic.body);
    // The bot whose token worked from here is not locked out; a token
    // never seen from here is not checked.
    assert_eq!(
        get(&agent, &url, &[("X-Syncoord-Token", &good)]).status,
        200
    );
    let unseen = get(&agent, &url, &[("X-Syncoord-Token", &bot_token(4))]);
    assert_eq!(unseen.status, 429, "{}", unseen.body);
    // Requests without a token are not the guard's business.
    assert_eq!(get(&agent, &url, &[]).status, 401);
    assert_eq!(
        mock.stats().requests_total,
        1,
        "only the good token's call went upstream"
    );
}

#[test]
fn an_exchange_hmac_call_verifies_and_a_body_is_covered() {
    let keys = Keys::new("exchange");
    let mock = strict_mock(&keys, MockOptions::default());
    let (_daemon, base) = daemon(&keys, &mock, "");
    let agent = agent();
    let accounts = get(
        &agent,
        &format!("{base}/exchange/accounts"),
        &[("X-Syncoord-Token", EX_TOKEN)],
    );
    assert_eq!(accounts.status, 200, "{}", accounts.body);
    let body =
        r#"{"product_id":"BTC-USD","side":"buy","type":"market","funds":"10","client_oid":"ex-1"}"#;
    let mut order = agent
        .post(format!("{base}/exchange/orders"))
        .header("X-Syncoord-Token", EX_TOKEN)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let status = order.status().as_u16();
    let text = order.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    for who in mock_credential(&text) {
        assert_eq!(who, format!("key:{EX_KEY}"));
    }
    let stats = mock.stats();
    assert!(
        stats.signature_failures.is_empty(),
        "{:?}",
        stats.signature_failures
    );
    assert_eq!(stats.signatures_verified, 2);
}

/// A JWT lives 120 s. The first attempt meets a 429 whose `Retry-After`
/// pauses the queue for 150 s; the retry, signed when it is sent, is
/// accepted by the strict mock. Had it been signed when the bot asked (or
/// on the first attempt), its JWT would have expired on the way.
#[test]
fn a_call_that_waited_150_s_in_a_paused_queue_still_succeeds() {
    let keys = Keys::new("paused");
    let mock = strict_mock(
        &keys,
        MockOptions {
            retry_after: Some(150),
            faults: Faults {
                storm_ms: 1_000,
                ..Faults::default()
            },
            ..MockOptions::default()
        },
    );
    let (_daemon, base) = daemon(
        &keys,
        &mock,
        "[upstreams.coordination.retry]\nmax_total_secs = 300.0\n",
    );
    let started = std::time::Instant::now();
    let body = r#"{"client_order_id":"late-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}"#;
    let mut response = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(400)))
        .build()
        .new_agent()
        .post(format!("{base}/api/v3/brokerage/orders"))
        .header("X-Syncoord-Token", &bot_token(3))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let waited = started.elapsed();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    assert!(
        waited.as_secs() >= 150,
        "it waited out the pause: {waited:?}"
    );
    let stats = mock.stats();
    assert_eq!(stats.storm_429s, 1, "one attempt met the 429");
    assert!(
        stats.signature_failures.is_empty(),
        "{:?}",
        stats.signature_failures
    );
    assert_eq!(
        stats.signatures_verified, 2,
        "the first attempt and the retry 150 s later, each signed when sent, verified"
    );
}

/// Signing mode: an order whose bot hung up is on record for that bot's
/// client token only, not for another client signing with the same
/// credential.
#[test]
fn an_orders_fate_is_answered_to_its_client_token_only() {
    let keys = Keys::new("fate");
    let mock = strict_mock(
        &keys,
        MockOptions {
            latency: std::time::Duration::from_millis(1500),
            ..MockOptions::default()
        },
    );
    let (daemon, base) = daemon(&keys, &mock, "");
    let body = r#"{"client_order_id":"signed-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}"#;
    let request = format!(
        "POST /api/v3/brokerage/orders HTTP/1.1\r\nHost: localhost\r\nX-Syncoord-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        bot_token(0),
        body.len()
    );
    let mut bot = std::net::TcpStream::connect(daemon.local_addr()).expect("connect");
    bot.write_all(request.as_bytes()).expect("sent");
    let agent = agent();
    let stats = format!("{base}/api/v1/sync-coordination/stats");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !get(&agent, &stats, &[])
        .body
        .contains("\"calls_in_flight\":1")
    {
        assert!(std::time::Instant::now() < until, "the order never left");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(bot);
    let url = format!("{base}/api/v1/sync-coordination/orders/signed-1");
    let mine = bot_token(0);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let reply = get(&agent, &url, &[("X-Syncoord-Token", &mine)]);
        if reply.body.contains("answered_late") {
            break reply;
        }
        assert!(std::time::Instant::now() < until, "{}", reply.body);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.body.contains("\"status\":200"), "{}", found.body);
    // Another client on the same credential: nothing.
    let other = get(&agent, &url, &[("X-Syncoord-Token", &bot_token(1))]);
    assert_eq!(other.status, 404, "{}", other.body);
    // A token that is no client's: refused as everywhere.
    let wrong = get(&agent, &url, &[("X-Syncoord-Token", "not-a-token")]);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(mock.stats().requests_total, 1, "the lookups reached no one");
    daemon.shutdown();
    mock.shutdown();
}
