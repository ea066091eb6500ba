//! Strict mode over real loopback sockets: what Coinbase accepts gets
//! 200, every way a signature can be wrong gets 401 and is counted under
//! its reason. Keys come from fixed seeds; none is ever printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use syncoord_server::test_client::{Client, Seen};

use super::*;
use crate::{BucketSpec, MockOptions, MockRates, MockUpstream};

const ES_NAME: &str = "organizations/o-test/apiKeys/es256";
const ED_NAME: &str = "organizations/o-test/apiKeys/ed25519";
const EX_KEY: &str = "exchange-key";
const EX_PASS: &str = "passphrase-1";

fn es_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

fn other_es_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[8u8; 32]).unwrap()
}

fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

fn ex_secret() -> Vec<u8> {
    (0u8..64).collect()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

enum Signer {
    Es(p256::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Signer::Es(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Signer::Es(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            Signer::Ed(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
        }
    }
}

/// A JWT as Coinbase's SDKs build it; `edit` changes header or claims
/// before signing.
fn jwt_with(
    signer: &Signer,
    name: &str,
    uri: &str,
    edit: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let now = wall().floor();
    let mut header = json!({ "alg": signer.alg(), "kid": name, "nonce": "0123abcd", "typ": "JWT" });
    let mut claims = json!({
        "sub": name, "iss": "cdp", "nbf": now as i64, "exp": now as i64 + 120, "uri": uri,
    });
    edit(&mut header, &mut claims);
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer.sign(signed.as_bytes());
    format!("{signed}.{}", b64url(&sig))
}

fn jwt(signer: &Signer, name: &str, uri: &str) -> String {
    jwt_with(signer, name, uri, |_, _| {})
}

/// The Exchange headers for one request, signed as Coinbase documents.
fn exchange_headers(
    timestamp: &str,
    method: &str,
    request_path: &str,
    body: &str,
    passphrase: &str,
) -> Vec<(String, String)> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&ex_secret()).unwrap();
    mac.update(format!("{timestamp}{method}{request_path}{body}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("CB-ACCESS-KEY".into(), EX_KEY.into()),
        ("CB-ACCESS-SIGN".into(), sign),
        ("CB-ACCESS-TIMESTAMP".into(), timestamp.into()),
        ("CB-ACCESS-PASSPHRASE".into(), passphrase.into()),
    ]
}

fn verifier() -> Verifier {
    Verifier::new()
        .cdp_es256(ES_NAME, *es_key().verifying_key())
        .cdp_ed25519(ED_NAME, ed_key().verifying_key())
        .exchange(EX_KEY, ex_secret(), EX_PASS)
        .accept_host("api.coinbase.com")
}

fn strict(verifier: Verifier) -> (MockUpstream, Arc<Verifier>) {
    let verifier = Arc::new(verifier);
    let mock = MockUpstream::start(MockOptions {
        rates: MockRates::uniform(BucketSpec::new(1000.0, 1000.0)),
        verify: Some(Arc::clone(&verifier)),
        ..MockOptions::default()
    })
    .unwrap();
    (mock, verifier)
}

/// One request on a fresh connection, `Host` being the mock's address.
fn send(
    mock: &MockUpstream,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> Seen {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        mock.addr()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut client = Client::connect(mock.addr());
    client.send(req.as_bytes());
    client.read_response().expect("an answer")
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

const ACCOUNTS: &str = "/api/v3/brokerage/accounts";

#[test]
fn es256_ed25519_and_exchange_hmac_signatures_verify() {
    let (mock, _) = strict(verifier());
    let host = mock.addr().to_string();
    let uri = format!("GET {host}{ACCOUNTS}");
    for (signer, name) in [
        (Signer::Es(es_key()), ES_NAME),
        (Signer::Ed(ed_key()), ED_NAME),
    ] {
        let seen = send(
            &mock,
            "GET",
            ACCOUNTS,
            &bearer(&jwt(&signer, name, &uri)),
            "",
        );
        assert_eq!(seen.status, 200, "{} JWT: {}", signer.alg(), seen.text());
        let v: Value = serde_json::from_slice(&seen.body).unwrap();
        assert!(!v["accounts"].as_array().unwrap().is_empty());
    }
    // The uri names the path without the query; the host may be one the
    // mock stands in for.
    let target = "/api/v3/brokerage/orders/historical/batch?order_status=OPEN&limit=5";
    let uri = "GET api.coinbase.com/api/v3/brokerage/orders/historical/batch";
    let seen = send(
        &mock,
        "GET",
        target,
        &bearer(&jwt(&Signer::Es(es_key()), ES_NAME, uri)),
        "",
    );
    assert_eq!(seen.status, 200, "{}", seen.text());
    // ccxt's shapes: ES256 with the Cloud keys' issuer and audience;
    // Ed25519 with a `uris` list.
    let uri = format!("GET {host}{ACCOUNTS}");
    type Edit = Box<dyn FnOnce(&mut Value, &mut Value)>;
    let cloud: Edit = Box::new(|_, c| {
        c["iss"] = json!("coinbase-cloud");
        c["aud"] = json!(["retail_rest_api_proxy"]);
    });
    let uris: Edit = Box::new(|_, c| {
        let uri = c.as_object_mut().unwrap().remove("uri").unwrap();
        c["uris"] = json!([uri]);
        c["aud"] = json!(["cdp_service"]);
    });
    for (signer, name, edit) in [
        (Signer::Es(es_key()), ES_NAME, cloud),
        (Signer::Ed(ed_key()), ED_NAME, uris),
    ] {
        let token = jwt_with(&signer, name, &uri, edit);
        let seen = send(&mock, "GET", ACCOUNTS, &bearer(&token), "");
        assert_eq!(
            seen.status,
            200,
            "ccxt-shaped {}: {}",
            signer.alg(),
            seen.text()
        );
    }
    // A POST: the body is not in a JWT.
    let order = r#"{"client_order_id":"c1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"10"}}}"#;
    let uri = format!("POST {host}/api/v3/brokerage/orders");
    let seen = send(
        &mock,
        "POST",
        "/api/v3/brokerage/orders",
        &bearer(&jwt(&Signer::Ed(ed_key()), ED_NAME, &uri)),
        order,
    );
    assert_eq!(seen.status, 200, "{}", seen.text());

    // Exchange: requestPath with the query; a fractional timestamp.
    let ts = format!("{:.3}", wall());
    let seen = send(
        &mock,
        "GET",
        "/accounts",
        &exchange_headers(&ts, "GET", "/accounts", "", EX_PASS),
        "",
    );
    assert_eq!(seen.status, 200, "{}", seen.text());
    let ts = format!("{}", wall() as i64);
    let seen = send(
        &mock,
        "GET",
        "/orders?status=all&limit=2",
        &exchange_headers(&ts, "GET", "/orders?status=all&limit=2", "", EX_PASS),
        "",
    );
    assert_eq!(seen.status, 200, "{}", seen.text());
    let body =
        r#"{"product_id":"BTC-USD","side":"buy","type":"limit","price":"100","size":"0.01"}"#;
    let seen = send(
        &mock,
        "POST",
        "/orders",
        &exchange_headers(&ts, "POST", "/orders", body, EX_PASS),
        body,
    );
    assert_eq!(seen.status, 200, "{}", seen.text());

    // Public endpoints need no credential.
    assert_eq!(send(&mock, "GET", "/time", &[], "").status, 200);
    let public = "/api/v3/brokerage/market/products/BTC-USD";
    assert_eq!(send(&mock, "GET", public, &[], "").status, 200);

    let stats = mock.stats();
    assert_eq!(stats.signatures_verified, 9);
    assert_eq!(stats.signature_failures, BTreeMap::new());
    // Identities stay per credential.
    for id in [
        format!("jwt:{ES_NAME}"),
        format!("jwt:{ED_NAME}"),
        format!("key:{EX_KEY}"),
    ] {
        assert!(stats.by_credential.contains_key(&id), "{id}: {stats:?}");
    }
}

#[test]
fn every_bad_jwt_is_a_401_counted_under_its_reason() {
    let (mock, verifier) = strict(verifier());
    let host = mock.addr().to_string();
    let es = Signer::Es(es_key());
    let uri = format!("GET {host}{ACCOUNTS}");
    let good = jwt(&es, ES_NAME, &uri);
    let tampered = {
        let (signed, sig) = good.rsplit_once('.').unwrap();
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap();
        bytes[10] ^= 1;
        format!("{signed}.{}", b64url(&bytes))
    };
    let der = {
        // A DER signature (what OpenSSL gives) is not a JWS one.
        let (signed, _) = good.rsplit_once('.').unwrap();
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = es_key().sign(signed.as_bytes());
        format!("{signed}.{}", b64url(sig.to_der().as_bytes()))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("tampered signature", tampered, "bad_signature"),
        ("DER signature", der, "bad_signature"),
        (
            "a known name signed by another key",
            jwt(&Signer::Es(other_es_key()), ES_NAME, &uri),
            "bad_signature",
        ),
        (
            "an unknown key name",
            jwt(&es, "organizations/o-test/apiKeys/nobody", &uri),
            "unknown_key",
        ),
        (
            "uri naming another host",
            jwt(&es, ES_NAME, &format!("GET api.example.com{ACCOUNTS}")),
            "wrong_uri",
        ),
        (
            "uri naming the host without its port",
            jwt(&es, ES_NAME, &format!("GET 127.0.0.1{ACCOUNTS}")),
            "wrong_uri",
        ),
        (
            "uri naming another path",
            jwt(
                &es,
                ES_NAME,
                &format!("GET {host}/api/v3/brokerage/orders/historical/fills"),
            ),
            "wrong_uri",
        ),
        (
            "uri naming another method",
            jwt(&es, ES_NAME, &format!("POST {host}{ACCOUNTS}")),
            "wrong_uri",
        ),
        (
            "no uri",
            jwt_with(&es, ES_NAME, &uri, |_, c| {
                c.as_object_mut().unwrap().remove("uri");
            }),
            "wrong_uri",
        ),
        (
            "exp - nbf over 120 s",
            jwt_with(&es, ES_NAME, &uri, |_, c| {
                c["exp"] = json!(c["nbf"].as_i64().unwrap() + 121);
            }),
            "lifetime_too_long",
        ),
        (
            "nbf in the future",
            jwt_with(&es, ES_NAME, &uri, |_, c| {
                c["nbf"] = json!(c["nbf"].as_i64().unwrap() + 60);
                c["exp"] = json!(c["nbf"].as_i64().unwrap() + 120);
            }),
            "not_yet_valid",
        ),
        (
            "iss not cdp",
            jwt_with(&es, ES_NAME, &uri, |_, c| c["iss"] = json!("someone")),
            "wrong_issuer",
        ),
        (
            "uris naming another path only",
            jwt_with(&es, ES_NAME, &uri, |_, c| {
                c.as_object_mut().unwrap().remove("uri");
                c["uris"] = json!([format!("GET {host}/api/v3/brokerage/products")]);
            }),
            "wrong_uri",
        ),
        (
            "alg not the key's",
            jwt_with(&es, ES_NAME, &uri, |h, _| h["alg"] = json!("EdDSA")),
            "wrong_algorithm",
        ),
        (
            "alg none",
            jwt_with(&es, ES_NAME, &uri, |h, _| h["alg"] = json!("none")),
            "wrong_algorithm",
        ),
        (
            "no nonce",
            jwt_with(&es, ES_NAME, &uri, |h, _| {
                h.as_object_mut().unwrap().remove("nonce");
            }),
            "malformed",
        ),
        (
            "kid not sub",
            jwt_with(&es, ES_NAME, &uri, |h, _| h["kid"] = json!(ED_NAME)),
            "malformed",
        ),
        ("not a JWT", "abc.def".to_owned(), "malformed"),
    ];
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (what, token, reason) in &cases {
        let seen = send(&mock, "GET", ACCOUNTS, &bearer(token), "");
        assert_eq!(seen.status, 401, "{what}: {}", seen.text());
        assert_eq!(seen.text(), "Unauthorized\n", "{what}");
        assert_eq!(
            seen.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        *want.entry((*reason).to_owned()).or_default() += 1;
        assert_eq!(mock.stats().signature_failures, want, "{what}");
    }
    // The uri with the query: the request has one, the uri must not.
    let target = "/api/v3/brokerage/orders/historical/batch?limit=5";
    let seen = send(
        &mock,
        "GET",
        target,
        &bearer(&jwt(&es, ES_NAME, &format!("GET {host}{target}"))),
        "",
    );
    assert_eq!(seen.status, 401, "uri with the query");
    *want.entry("wrong_uri".into()).or_default() += 1;
    // The legacy scheme: a key without a JWT.
    let seen = send(
        &mock,
        "GET",
        ACCOUNTS,
        &[("CB-ACCESS-KEY".into(), ES_NAME.into())],
        "",
    );
    assert_eq!(seen.status, 401, "legacy CB-ACCESS-KEY");
    *want.entry("legacy_key".into()).or_default() += 1;
    // A credential on a public endpoint is verified too.
    let public = "/api/v3/brokerage/market/products/BTC-USD";
    let seen = send(
        &mock,
        "GET",
        public,
        &bearer(&jwt(&es, ES_NAME, &format!("GET {host}/elsewhere"))),
        "",
    );
    assert_eq!(seen.status, 401, "a bad JWT on a public endpoint");
    *want.entry("wrong_uri".into()).or_default() += 1;
    // Expired: signed 130 s ago by the mock's clock.
    verifier.set_clock_offset(130.0);
    let seen = send(&mock, "GET", ACCOUNTS, &bearer(&good), "");
    assert_eq!(seen.status, 401, "expired");
    *want.entry("expired".into()).or_default() += 1;
    // ...and good again when the clock is back.
    verifier.set_clock_offset(0.0);
    assert_eq!(send(&mock, "GET", ACCOUNTS, &bearer(&good), "").status, 200);
    // No credential at all is not a signature failure.
    assert_eq!(send(&mock, "GET", ACCOUNTS, &[], "").status, 401);

    let stats = mock.stats();
    assert_eq!(stats.signature_failures, want);
    assert_eq!(stats.signatures_verified, 1);
    assert_eq!(stats.unauthorized, 1);
}

#[test]
fn every_bad_exchange_signature_is_a_401_with_coinbase_s_message() {
    let (mock, verifier) = strict(verifier());
    let now = format!("{}", wall() as i64);
    let body =
        r#"{"product_id":"BTC-USD","side":"buy","type":"limit","price":"100","size":"0.01"}"#;
    let stale = format!("{}", wall() as i64 - 31);
    let mut unknown = exchange_headers(&now, "GET", "/accounts", "", EX_PASS);
    unknown[0].1 = "someone-else".into();
    let mut no_sign = exchange_headers(&now, "GET", "/accounts", "", EX_PASS);
    no_sign.remove(1);
    /// What, method, target, headers, body, reason, message.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(String, String)>,
        &'a str,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "stale timestamp",
            "GET",
            "/accounts",
            exchange_headers(&stale, "GET", "/accounts", "", EX_PASS),
            "",
            "stale_timestamp",
            "request timestamp expired",
        ),
        (
            "wrong passphrase",
            "GET",
            "/accounts",
            exchange_headers(&now, "GET", "/accounts", "", "guess"),
            "",
            "bad_passphrase",
            "invalid passphrase",
        ),
        (
            "HMAC over another body",
            "POST",
            "/orders",
            exchange_headers(&now, "POST", "/orders", &body.replace("100", "1"), EX_PASS),
            body,
            "bad_signature",
            "invalid signature",
        ),
        (
            "HMAC without the query",
            "GET",
            "/orders?status=all",
            exchange_headers(&now, "GET", "/orders", "", EX_PASS),
            "",
            "bad_signature",
            "invalid signature",
        ),
        (
            "HMAC for another method",
            "DELETE",
            "/orders",
            exchange_headers(&now, "GET", "/orders", "", EX_PASS),
            "",
            "bad_signature",
            "invalid signature",
        ),
        (
            "unknown key",
            "GET",
            "/accounts",
            unknown,
            "",
            "unknown_key",
            "Invalid API Key",
        ),
        (
            "no CB-ACCESS-SIGN",
            "GET",
            "/accounts",
            no_sign,
            "",
            "missing_header",
            "CB-ACCESS-SIGN, CB-ACCESS-TIMESTAMP and CB-ACCESS-PASSPHRASE headers are required",
        ),
        (
            "a bad signature on a public endpoint",
            "GET",
            "/time",
            exchange_headers(&now, "GET", "/elsewhere", "", EX_PASS),
            "",
            "bad_signature",
            "invalid signature",
        ),
    ];
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (what, method, target, headers, body, reason, message) in &cases {
        let seen = send(&mock, method, target, headers, body);
        assert_eq!(seen.status, 401, "{what}: {}", seen.text());
        let v: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(v, json!({ "message": message }), "{what}");
        *want.entry((*reason).to_owned()).or_default() += 1;
        assert_eq!(mock.stats().signature_failures, want, "{what}");
    }
    // 30 s is the window, both ways: the mock's clock 31 s behind.
    verifier.set_clock_offset(-31.0);
    let seen = send(
        &mock,
        "GET",
        "/accounts",
        &exchange_headers(&now, "GET", "/accounts", "", EX_PASS),
        "",
    );
    assert_eq!(seen.status, 401, "timestamp from the mock's future");
    *want.entry("stale_timestamp".into()).or_default() += 1;
    assert_eq!(mock.stats().signature_failures, want);
    assert_eq!(mock.stats().signatures_verified, 0);
}

#[test]
fn without_a_verifier_nothing_is_verified() {
    let mock = MockUpstream::start(MockOptions::default()).unwrap();
    let uri = "GET elsewhere/anything";
    let token = jwt(&Signer::Es(other_es_key()), ES_NAME, uri);
    let seen = send(&mock, "GET", ACCOUNTS, &bearer(&token), "");
    assert_eq!(seen.status, 200, "{}", seen.text());
    let stats = mock.stats();
    assert_eq!(stats.signatures_verified, 0);
    assert!(stats.signature_failures.is_empty());
}

#[test]
fn verify_is_usable_without_a_server() {
    let v = verifier();
    let uri = format!("GET api.coinbase.com{ACCOUNTS}");
    let token = jwt(&Signer::Ed(ed_key()), ED_NAME, &uri);
    let headers = vec![
        ("Host".to_owned(), "127.0.0.1:9".to_owned()),
        ("Authorization".to_owned(), format!("Bearer {token}")),
    ];
    assert_eq!(
        v.verify(Scheme::AdvancedTrade, "GET", ACCOUNTS, &headers, b""),
        Ok(Some(format!("jwt:{ED_NAME}")))
    );
    // An absolute-form target: its path is what counts.
    let absolute = format!("https://api.coinbase.com{ACCOUNTS}?x=1");
    assert_eq!(
        v.verify(Scheme::AdvancedTrade, "GET", &absolute, &headers, b""),
        Ok(Some(format!("jwt:{ED_NAME}")))
    );
    assert_eq!(
        v.verify(Scheme::AdvancedTrade, "GET", ACCOUNTS, &[], b""),
        Ok(None)
    );
    let debug = format!("{v:?}");
    assert!(debug.contains(ES_NAME) && debug.contains(EX_KEY), "{debug}");
    assert!(
        !debug.contains(EX_PASS),
        "Debug shows a passphrase: {debug}"
    );
}

mod keys_file {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
    use std::path::PathBuf;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "syncoord-verify-keys-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_keys_file_loads_every_kind_of_key() {
        let d = dir("ok");
        let es_pem = p256::SecretKey::from(es_key())
            .to_sec1_pem(LineEnding::LF)
            .unwrap();
        let portal = json!({ "name": ES_NAME, "privateKey": es_pem.as_str() });
        std::fs::write(d.join("cdp_key.json"), portal.to_string()).unwrap();
        let ed_b64 = base64::engine::general_purpose::STANDARD.encode(ed_key().to_bytes());
        std::fs::write(d.join("ed.key"), format!("{ed_b64}\n")).unwrap();
        let other_pub = other_es_key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(d.join("other.pub.pem"), other_pub).unwrap();
        let other_pkcs8 = p256::SecretKey::from(other_es_key())
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(d.join("other.pem"), other_pkcs8.as_bytes()).unwrap();
        let secret = base64::engine::general_purpose::STANDARD.encode(ex_secret());
        std::fs::write(d.join("ex.secret"), format!("{secret}\n")).unwrap();
        let text = format!(
            r#"
accept_hosts = ["api.coinbase.com"]

[[cdp]]
key_file = "cdp_key.json"

[[cdp]]
name = "{ED_NAME}"
private_key_file = "ed.key"

[[cdp]]
name = "other-public"
public_key_file = "other.pub.pem"

[[cdp]]
name = "other-private"
private_key_file = "other.pem"

[[exchange]]
key = "{EX_KEY}"
secret_file = "ex.secret"
passphrase = "{EX_PASS}"
"#
        );
        let v = Verifier::from_toml_str(&text, &d).unwrap();
        let _ = std::fs::remove_dir_all(&d);
        let uri = format!("GET api.coinbase.com{ACCOUNTS}");
        for (signer, name) in [
            (Signer::Es(es_key()), ES_NAME),
            (Signer::Ed(ed_key()), ED_NAME),
            (Signer::Es(other_es_key()), "other-public"),
            (Signer::Es(other_es_key()), "other-private"),
        ] {
            let headers = vec![
                ("Host".to_owned(), "mock".to_owned()),
                (
                    "Authorization".to_owned(),
                    format!("Bearer {}", jwt(&signer, name, &uri)),
                ),
            ];
            assert_eq!(
                v.verify(Scheme::AdvancedTrade, "GET", ACCOUNTS, &headers, b""),
                Ok(Some(format!("jwt:{name}"))),
                "{name}"
            );
        }
        let ts = format!("{}", wall() as i64);
        let headers = exchange_headers(&ts, "GET", "/accounts", "", EX_PASS);
        assert_eq!(
            v.verify(Scheme::Exchange, "GET", "/accounts", &headers, b""),
            Ok(Some(format!("key:{EX_KEY}")))
        );
    }

    #[test]
    fn a_bad_keys_file_says_what_and_where() {
        let d = dir("bad");
        std::fs::write(
            d.join("junk.pem"),
            "-----BEGIN EC PRIVATE KEY-----\nQUJD\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(d.join("bad.secret"), "not base64!").unwrap();
        let text = r#"accept_hosts = ["https://api.coinbase.com/"]

[[cdp]]
key_file = "missing.json"

[[cdp]]
name = "n"
private_key_file = "junk.pem"

[[cdp]]
name = "both"
key_file = "x.json"
public_key_file = "y.pem"

[[exchange]]
key = "k"
secret_file = "bad.secret"
passphrase = "p"
"#;
        let err = Verifier::from_toml_str(text, &d).unwrap_err();
        let shown = err.display_with("keys.toml").to_string();
        let _ = std::fs::remove_dir_all(&d);
        let located: Vec<(&str, Option<usize>, Option<usize>)> = err
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            located,
            [
                ("accept_hosts[0]", Some(1), Some(17)),
                ("cdp[0].key_file", Some(4), Some(12)),
                ("cdp[1].private_key_file", Some(8), Some(20)),
                ("cdp[2]", Some(10), Some(1)),
                ("exchange[0].secret_file", Some(17), Some(15)),
            ],
            "{shown}"
        );
        assert!(
            shown.contains("keys.toml:4:12: cdp[0].key_file: cannot read "),
            "{shown}"
        );
        assert!(shown.contains("missing.json"), "{shown}");
        assert!(shown.contains("is not a P-256 key"), "{shown}");
        assert!(shown.contains("is not base64"), "{shown}");
        assert!(
            !shown.contains("QUJD"),
            "an error showed key material: {shown}"
        );

        let err = Verifier::from_toml_str("[[cdp]]\nkey_fil = \"a\"\n", &d).unwrap_err();
        let shown = err.display_with("keys.toml").to_string();
        assert!(shown.starts_with("keys.toml:2:1: "), "{shown}");
        assert!(shown.contains("key_fil"), "{shown}");
        let err = Verifier::from_toml_str("[[exchange]]\nkey = \"k\"\n", &d).unwrap_err();
        let shown = err.display_with("keys.toml").to_string();
        assert!(shown.contains("secret_file"), "{shown}");
        assert!(shown.starts_with("keys.toml:1:"), "{shown}");
    }
}
