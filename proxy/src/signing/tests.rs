//! Signing mode through the proxy: config, tokens, identity, what is
//! forwarded, and the signature each attempt gets.

use std::collections::BTreeMap;

use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use zeroize::Zeroizing;

use super::*;
use crate::{Proxy, ProxyConfig};

/// Env vars and files from maps, as a host would read them.
#[derive(Default)]
struct Secrets {
    env: BTreeMap<String, String>,
    files: BTreeMap<String, (String, u32)>,
}

impl SecretSource for Secrets {
    fn env(&self, name: &str) -> Option<Zeroizing<String>> {
        self.env.get(name).map(|v| Zeroizing::new(v.clone()))
    }
    fn file(&self, path: &str) -> Result<SecretFile, SecretFileError> {
        self.files
            .get(path)
            .map(|(t, mode)| SecretFile {
                text: Zeroizing::new(t.clone()),
                mode: Some(*mode),
            })
            .ok_or_else(|| SecretFileError::Unavailable("no such file".to_owned()))
    }
}

fn es256_pem() -> String {
    p256::SecretKey::from_slice(&[11; 32])
        .unwrap()
        .to_sec1_pem(Default::default())
        .unwrap()
        .to_string()
}

fn ed25519_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode([13u8; 32])
}

const EXCHANGE_SECRET: &str = "c2VjcmV0LWtleS1ieXRlcw=="; // "secret-key-bytes"

const CONFIG: &str = r#"
[[upstreams]]
name = "advanced"
url = "http://127.0.0.1:9000/base"
preset = "coinbase-advanced"

[[upstreams]]
name = "exchange"
url = "https://api.exchange.coinbase.com"
preset = "coinbase-exchange"
prefix = "/exchange"

[[upstreams]]
name = "open"
url = "http://127.0.0.1:9001"
preset = "coinbase-exchange"
prefix = "/open"
[upstreams.signing]
pass_through = true

[[credentials]]
name = "desk"
upstream = "advanced"
kind = "coinbase-cdp"
key_file = "/keys/cdp.json"

[[credentials]]
name = "ed"
upstream = "advanced"
kind = "coinbase-cdp"
key_name = "organizations/o/apiKeys/ed"
private_key_env = "ED_KEY"

[[credentials]]
name = "ex"
upstream = "exchange"
kind = "coinbase-exchange"
key = "exkey"
secret_env = "EX_SECRET"
passphrase_file = "/keys/pass"

[[credentials]]
name = "open-signed"
upstream = "open"
kind = "coinbase-exchange"
key = "openkey"
secret_env = "EX_SECRET"
passphrase_env = "PASS"

[[clients]]
name = "bot1"
token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
credentials = ["desk", "ex"]

[[clients]]
name = "bot2"
token_env = "BOT2_TOKEN"
credentials = ["desk", "ed", "open-signed"]
"#;

fn secrets() -> Secrets {
    let json = serde_json::json!({
        "name": "organizations/o/apiKeys/desk",
        "privateKey": es256_pem(),
    });
    Secrets {
        env: BTreeMap::from([
            ("ED_KEY".into(), ed25519_b64()),
            ("EX_SECRET".into(), EXCHANGE_SECRET.into()),
            ("PASS".into(), "open-pass".into()),
            (
                "BOT2_TOKEN".into(),
                "b5d81f3e09a74c2e6f1d0a3b8c5e7f92".into(),
            ),
        ]),
        files: BTreeMap::from([
            ("/keys/cdp.json".into(), (json.to_string(), 0o600)),
            ("/keys/pass".into(), ("pass-phrase\n".into(), 0o600)),
        ]),
    }
}

fn proxy() -> Proxy {
    let config = ProxyConfig::from_toml_str(CONFIG).unwrap();
    Proxy::with_secrets(config, &secrets()).unwrap()
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const ACCOUNTS: &str = "/api/v3/brokerage/accounts";

#[test]
fn a_token_signs_as_its_credential() {
    let p = proxy();
    let f = p
        .route(
            None,
            "GET",
            &format!("{ACCOUNTS}?limit=5"),
            &h(&[("X-Syncoord-Token", "test"), ("Accept", "application/json")]),
            Vec::new(),
        )
        .unwrap();
    assert_eq!(f.outgoing.sign_as.as_deref(), Some("desk"));
    assert_eq!(
        f.request.credential.as_ref().map(|c| c.as_str()),
        Some("signed:desk")
    );
    assert_eq!(f.request.client, "bot1");
    assert_eq!(
        f.request.max_wait,
        Some(syncoord_core::Duration::from_secs(600))
    );
    assert_eq!(f.outgoing.headers, h(&[("Accept", "application/json")]));
}

/// An unsigned JWT whose `sub` is `key_name`, as a bot's library would
/// send one (only its claims are read here).
fn jwt_for(key_name: &str) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "ES256", "kid": key_name})),
        b64(serde_json::json!({"sub": key_name, "iss": "cdp"}))
    )
}

/// A token and the bot's own identity in one request: which account the
/// bot meant is not ours to guess, so it is refused before anything else.
#[test]
fn a_token_with_another_identity_is_refused_with_400() {
    let p = proxy();
    for other in [
        ("Authorization", "Bearer forged.jwt.here"),
        (
            "authorization",
            &format!("Bearer {}", jwt_for("organizations/o/apiKeys/real")),
        ),
        ("CB-ACCESS-KEY", "someone-else"),
    ] {
        let refused = p
            .route(
                None,
                "GET",
                ACCOUNTS,
                &h(&[("X-Syncoord-Token", "test"), other]),
                Vec::new(),
            )
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            (refused.status(), refused.kind().as_str()),
            (400, "mixed_credentials"),
            "{other:?}"
        );
        assert!(refused.message().contains(other.0), "{}", refused.message());
    }
    // Placeholders given to libraries that insist on signing name nobody:
    // their signatures are dropped and syncoord signs.
    for placeholder in [
        vec![("Authorization", "signed-by-syncoord")],
        vec![(
            "Authorization",
            &*format!("Bearer {}", jwt_for("organizations/-/apiKeys/syncoord")),
        )],
        vec![
            ("CB-ACCESS-KEY", "placeholder"),
            ("CB-ACCESS-SIGN", "c2ln"),
            ("CB-ACCESS-PASSPHRASE", "placeholder"),
        ],
    ] {
        let mut headers = vec![("X-Syncoord-Token", "test")];
        headers.extend(placeholder.iter().copied());
        let f = p
            .route(None, "GET", ACCOUNTS, &h(&headers), Vec::new())
            .unwrap_or_else(|r| panic!("{placeholder:?}: {r}"));
        assert_eq!(f.outgoing.sign_as.as_deref(), Some("desk"));
        assert!(
            f.outgoing
                .headers
                .iter()
                .all(|(n, _)| !n.eq_ignore_ascii_case("authorization")
                    && !n.to_ascii_lowercase().starts_with("cb-access")),
            "the placeholder signature is dropped: {:?}",
            f.outgoing.headers
        );
    }
    // The bot's own identity alone, on an upstream that lets unsigned
    // bots pass, is still forwarded as it is.
    let f = p
        .route(
            None,
            "GET",
            "/open/accounts",
            &h(&[("CB-ACCESS-KEY", "k")]),
            Vec::new(),
        )
        .unwrap();
    assert_eq!(f.outgoing.sign_as, None);
}

#[test]
fn wrong_missing_and_unusable_tokens_are_refused_before_upstream() {
    let p = proxy();
    let route = |headers: &[(&str, &str)]| {
        p.route(None, "GET", ACCOUNTS, &h(headers), Vec::new())
            .map(|f| f.outgoing.sign_as)
            .map_err(|r| (r.status(), r.kind().as_str()))
    };
    assert_eq!(
        route(&[("X-Syncoord-Token", "nope")]),
        Err((401, "unknown_token"))
    );
    assert_eq!(route(&[]), Err((401, "token_required")));
    assert_eq!(
        route(&[("Authorization", "Bearer a.b.c")]),
        Err((401, "token_required")),
        "a bot that signs for itself is refused on a signed upstream"
    );
    // bot2 has two credentials on `advanced`: it must choose.
    assert_eq!(
        route(&[("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92")]),
        Err((400, "choose_credential"))
    );
    assert_eq!(
        route(&[
            ("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92"),
            ("X-Syncoord-Credential", "ed")
        ]),
        Ok(Some("ed".into()))
    );
    assert_eq!(
        route(&[
            ("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92"),
            ("X-Syncoord-Credential", "ex")
        ]),
        Err((403, "credential_not_allowed")),
        "`ex` is not bot2's, and not for this upstream"
    );
    // The token as the password of HTTPS_PROXY=http://bot1:test@...
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot1:test")
    );
    assert_eq!(
        route(&[("Proxy-Authorization", &basic)]),
        Ok(Some("desk".into()))
    );
}

#[test]
fn pass_through_lets_unsigned_bots_through_as_they_are() {
    let p = proxy();
    let f = p
        .route(
            None,
            "GET",
            "/open/accounts",
            &h(&[("CB-ACCESS-KEY", "mine"), ("CB-ACCESS-SIGN", "s")]),
            Vec::new(),
        )
        .unwrap();
    assert_eq!(f.outgoing.sign_as, None);
    assert_eq!(f.request.max_wait, None);
    assert_eq!(
        f.request.credential.as_ref().map(|c| c.as_str()),
        Some(
            crate::identity_of("key:mine", &p.config().upstreams[2].coordination.credential)
                .as_str()
        )
    );
    // With a token, the same upstream signs.
    let f = p
        .route(
            None,
            "GET",
            "/open/accounts",
            &h(&[("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92")]),
            Vec::new(),
        )
        .unwrap();
    assert_eq!(f.outgoing.sign_as.as_deref(), Some("open-signed"));
}

fn b64url_json(part: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn each_attempt_is_signed_for_the_upstreams_real_host_and_full_path() {
    let p = proxy();
    let f = p
        .route(
            None,
            "GET",
            &format!("{ACCOUNTS}?limit=5"),
            &h(&[("X-Syncoord-Token", "test")]),
            Vec::new(),
        )
        .unwrap();
    let base = p.base_url(f.upstream);
    let headers = p
        .keyring()
        .sign(&f.outgoing, base, 1_700_000_000, [7; 16])
        .unwrap();
    let auth = syncoord_core::header(&headers, "authorization").unwrap();
    let jwt = auth.strip_prefix("Bearer ").unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let claims = b64url_json(parts[1]);
    assert_eq!(
        claims["uri"], "GET 127.0.0.1:9000/base/api/v3/brokerage/accounts",
        "host with its port, the base path, no query"
    );
    assert_eq!(claims["sub"], "organizations/o/apiKeys/desk");
    assert_eq!(b64url_json(parts[0])["kid"], "organizations/o/apiKeys/desk");
    let vk = p256::ecdsa::VerifyingKey::from(
        p256::SecretKey::from_slice(&[11; 32]).unwrap().public_key(),
    );
    let sig = p256::ecdsa::Signature::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap(),
    )
    .unwrap();
    assert!(vk
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_ok());
    // A second attempt a second later is a new token.
    let again = p
        .keyring()
        .sign(&f.outgoing, base, 1_700_000_001, [8; 16])
        .unwrap();
    assert_ne!(again, headers);
}

#[test]
fn an_exchange_call_gets_the_four_cb_access_headers() {
    let p = proxy();
    let f = p
        .route(
            None,
            "POST",
            "/exchange/orders",
            &h(&[
                ("X-Syncoord-Token", "test"),
                ("Content-Type", "application/json"),
            ]),
            br#"{"size":"1"}"#.to_vec(),
        )
        .unwrap();
    assert_eq!(f.outgoing.sign_as.as_deref(), Some("ex"));
    let base = p.base_url(f.upstream);
    let headers = p
        .keyring()
        .sign(&f.outgoing, base, 1_700_000_000, [0; 16])
        .unwrap();
    let get = |n| syncoord_core::header(&headers, n).unwrap();
    assert_eq!(get("cb-access-key"), "exkey");
    assert_eq!(get("cb-access-timestamp"), "1700000000");
    assert_eq!(
        get("cb-access-passphrase"),
        "pass-phrase",
        "the file's newline is not part of it"
    );
    // python3: base64.b64encode(hmac.new(b"secret-key-bytes",
    //   b'1700000000POST/orders{"size":"1"}', hashlib.sha256).digest())
    assert_eq!(get("cb-access-sign"), EXPECTED_ORDER_SIGN);
}

const EXPECTED_ORDER_SIGN: &str = "r+yxqYXCMMvvY/R+/hU9wyTPqrKmWDnZYlDb5ojZqEE=";

#[test]
fn loading_names_every_missing_secret() {
    let config = ProxyConfig::from_toml_str(CONFIG).unwrap();
    let errors = Proxy::with_secrets(config.clone(), &Secrets::default()).unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "credentials[0].key_file",
            "credentials[1].private_key_env",
            "credentials[2].secret_env",
            "credentials[2].passphrase_file",
            "credentials[3].secret_env",
            "credentials[3].passphrase_env",
            "clients[1].token_env",
        ]
    );
    let p = Proxy::with_secrets(config, &secrets()).unwrap();
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
}

/// A key file others may read is refused, as ssh refuses one, unless the
/// credential says its access is guarded otherwise.
#[test]
fn a_secret_file_others_may_read_is_refused_unless_allowed() {
    let config = ProxyConfig::from_toml_str(CONFIG).unwrap();
    let mut open = secrets();
    open.files.get_mut("/keys/pass").unwrap().1 = 0o640;
    open.files.get_mut("/keys/cdp.json").unwrap().1 = 0o604;
    let errors = Proxy::with_secrets(config.clone(), &open).unwrap_err();
    let shown: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0].starts_with("credentials[0].key_file: `/keys/cdp.json` may be read by other users (mode 604): `chmod 600` it, or set `allow_readable_files = true`"), "{shown:?}");
    assert!(
        shown[1].starts_with(
            "credentials[2].passphrase_file: `/keys/pass` may be read by other users (mode 640)"
        ),
        "{shown:?}"
    );

    let allowed = CONFIG
        .replace(
            "key_file = \"/keys/cdp.json\"\n",
            "key_file = \"/keys/cdp.json\"\nallow_readable_files = true\n",
        )
        .replace(
            "passphrase_file = \"/keys/pass\"\n",
            "passphrase_file = \"/keys/pass\"\nallow_readable_files = true\n",
        );
    let p = Proxy::with_secrets(ProxyConfig::from_toml_str(&allowed).unwrap(), &open).unwrap();
    assert_eq!(
        p.warnings(),
        [
            "credentials[0].key_file: `/keys/cdp.json` may be read by other users (mode 604): `chmod 600` it",
            "credentials[2].passphrase_file: `/keys/pass` may be read by other users (mode 640): `chmod 600` it",
        ]
    );
}

/// A token read from `token_env` must not be guessable: a weak one stops
/// loading, with how to make a good one.
#[test]
fn a_weak_token_from_the_environment_is_refused() {
    let config = ProxyConfig::from_toml_str(CONFIG).unwrap();
    for weak in ["x", "token-two", "hunter2hunter2hunter2hunter2"] {
        let mut s = secrets();
        s.env.insert("BOT2_TOKEN".into(), weak.into());
        let errors = Proxy::with_secrets(config.clone(), &s).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{weak}");
        assert_eq!(errors.0[0].field, "clients[1].token_env");
        let message = &errors.0[0].message;
        assert!(
            message.contains("too weak") && message.contains("syncoord token --name bot2"),
            "{message}"
        );
        assert!(
            !message.contains(weak),
            "the token itself is never shown: {message}"
        );
    }
}

#[test]
fn bad_signing_config_is_located() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[credentials]]\nname = \"a\"\nupstream = \"advanced\"\nkind = \"coinbase-cdp\"\n",
            "credentials[0].kind",
            "needs `key_file`",
        ),
        (
            "[[credentials]]\nname = \"a\"\nupstream = \"nowhere\"\nkind = \"coinbase-cdp\"\nkey_file = \"k\"\n",
            "credentials[0].upstream",
            "not a configured upstream",
        ),
        (
            "[[credentials]]\nname = \"a\"\nupstream = \"advanced\"\nkind = \"coinbase-cdp\"\nkey_file = \"k\"\nsecret_env = \"S\"\n",
            "credentials[0].secret_env",
            "is a `coinbase-exchange` field",
        ),
        (
            "[[credentials]]\nname = \"a\"\nupstream = \"advanced\"\nkind = \"hmac\"\n",
            "credentials[0].kind",
            "unknown variant",
        ),
        (
            "[[clients]]\nname = \"b\"\ntoken_sha256 = \"abc\"\ncredentials = [\"zz\"]\n",
            "clients[0].token_sha256",
            "64 hex digits",
        ),
        (
            "[[clients]]\nname = \"b\"\ntoken_env = \"T\"\ncredentials = [\"zz\"]\n",
            "clients[0].credentials[0]",
            "not a configured credential",
        ),
    ];
    for (text, field, words) in cases {
        let errors = ProxyConfig::from_toml_str(text).unwrap_err();
        let e = errors
            .0
            .iter()
            .find(|e| e.field == *field)
            .unwrap_or_else(|| panic!("{field} not in {errors}"));
        assert!(e.message.contains(words), "{field}: {}", e.message);
        assert!(e.line.is_some(), "{field} is located: {errors}");
    }
}

#[test]
fn no_key_material_shows_in_debug_output_or_the_printed_config() {
    let p = proxy();
    let shown = format!(
        "{p:?} {:?} {}",
        p.keyring(),
        toml::to_string(p.config()).unwrap()
    );
    let pem = es256_pem();
    let pem_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for secret in [
        &pem_body[..24],
        &ed25519_b64()[..24],
        EXCHANGE_SECRET,
        "pass-phrase",
        "b5d81f3e09a74c2e6f1d0a3b8c5e7f92",
    ] {
        assert!(!shown.contains(secret), "`{secret}` shows");
    }
    assert!(
        shown.contains("organizations/o/apiKeys/desk"),
        "key ids do show"
    );
}

#[test]
fn the_edge_refuses_file_sources() {
    let errors = ProxyConfig::from_toml_str_for_edge(CONFIG).unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["credentials[0].key_file", "credentials[2].passphrase_file"]
    );
}

#[test]
fn a_client_never_runs_above_its_priority_ceiling() {
    let text = CONFIG
        .replace(
            "credentials = [\"desk\", \"ex\"]\n",
            "credentials = [\"desk\", \"ex\"]\nmax_priority = \"market\"\n",
        )
        .replace(
            "credentials = [\"desk\", \"ed\", \"open-signed\"]\n",
            "credentials = [\"desk\", \"ed\", \"open-signed\"]\nmax_priority = \"account\"\nabove_max_priority = \"refuse\"\n",
        );
    let p = Proxy::with_secrets(ProxyConfig::from_toml_str(&text).unwrap(), &secrets()).unwrap();
    let order = br#"{"client_order_id":"c1","product_id":"BTC-USD","side":"BUY"}"#.to_vec();
    let class = |method: &str, path: &str, headers: &[(&str, &str)]| {
        p.route(None, method, path, &h(headers), order.clone())
            .map(|f| f.request.priority.map(|c| c.0))
            .map_err(|r| (r.status(), r.kind().as_str()))
    };
    let bot1 = ("X-Syncoord-Token", "test");
    // An order (its route says `trading`) is lowered to `market` (2)...
    assert_eq!(
        class("POST", "/api/v3/brokerage/orders", &[bot1]),
        Ok(Some(2))
    );
    // ...and so is a request asking for more...
    assert_eq!(
        class("GET", ACCOUNTS, &[bot1, ("X-Syncoord-Priority", "trading")]),
        Ok(Some(2))
    );
    // ...while one below the ceiling keeps its class (its route's, or the
    // one it asks for).
    assert_eq!(
        class(
            "GET",
            "/api/v3/brokerage/market/products/BTC-USD/candles",
            &[bot1]
        ),
        Ok(None)
    );
    assert_eq!(
        class(
            "GET",
            ACCOUNTS,
            &[bot1, ("X-Syncoord-Priority", "analysis")]
        ),
        Ok(Some(3))
    );
    // bot2's entry says refuse: an order is refused before upstream, an
    // account read (at its ceiling) passes.
    let bot2 = [
        ("X-Syncoord-Token", "b5d81f3e09a74c2e6f1d0a3b8c5e7f92"),
        ("X-Syncoord-Credential", "desk"),
    ];
    assert_eq!(
        class("POST", "/api/v3/brokerage/orders", &bot2),
        Err((403, "priority_not_allowed"))
    );
    assert_eq!(class("GET", ACCOUNTS, &bot2), Ok(None));

    // A ceiling must be a class of every upstream.
    let err = ProxyConfig::from_toml_str(
        &text.replace("max_priority = \"market\"", "max_priority = \"urgent\""),
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].field, "clients[0].max_priority", "{err}");
    assert!(err.0[0].line.is_some(), "{err}");
}

mod shares;
