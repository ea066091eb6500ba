//! Signing mode's conformance cases: syncoord holds the keys and signs
//! each call; bots present only a token. Every host runs them with
//! `tests/conformance-signing.toml` in front of a strict mock
//! ([`verifier`]), which answers 401 for any signature that does not
//! verify as Coinbase's would: so "signatures stay valid" is tested, not
//! assumed. After the cases, the mock must have refused no signature.
//!
//! The keys below are test keys made for this suite; they sign nothing
//! anywhere else.

use std::sync::Arc;

use base64::Engine;
use serde_json::Value;
use syncoord_mock::verify::Scheme;
use syncoord_mock::Verifier;

use super::{
    echo_of, echoed_header, expect, expect_status, get, mock_counts, send, set_faults, unique,
    Reply, Target,
};

/// The configuration every host runs the signing cases with; `@MOCK@`
/// stands for the strict mock's base URL.
pub const CONFIG_TEMPLATE: &str = include_str!("../conformance-signing.toml");

/// A P-256 key (SEC1 PEM), for CDP key [`ES256_KEY_NAME`].
pub const ES256_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEINe1uIkIv92ojbAppRAN5+xijQdnFP91PvSQs3brk596oAoGCCqGSM49
AwEHoUQDQgAEhXh75bpstKmC+aDpDoSDbZNy7Y2ohynHDfHpDr43q4lC3Xb2TLbE
DbB1a+a3D3f8z8DkznlPcOS0ur5QKfn8WA==
-----END EC PRIVATE KEY-----
";
/// An Ed25519 seed (base64 of 32 bytes), for CDP key [`ED25519_KEY_NAME`].
pub const ED25519_B64: &str = "mJLWHmNDl7X/m4rPgUxuoWt0Yc5/XO1PbaUHVlsNfak=";
/// The Exchange key's secret (base64, as Coinbase shows it).
pub const EXCHANGE_SECRET_B64: &str = "szq3+KEYIuQ5b6CzQXXhXn8r/KbYdpmc1MDNYhbFRNw=";
pub const EXCHANGE_PASSPHRASE: &str = "conformance passphrase";

pub const ES256_KEY_NAME: &str = "organizations/conformance/apiKeys/es256";
pub const ED25519_KEY_NAME: &str = "organizations/conformance/apiKeys/ed25519";
pub const EXCHANGE_KEY: &str = "conformance-exchange-key";

/// bot-es's token (signs with `desk-es` and `exchange-main`).
pub const TOKEN_ES: &str = "conf-token-es";
/// bot-ed's token (signs with `desk-ed`).
pub const TOKEN_ED: &str = "5a3f0c9e7b21d8846fe0a13c92b7d54e";

/// The secrets the config names, as (env var or Worker secret, value):
/// the daemon gets them in its environment, the Worker as secrets.
pub const SECRETS: &[(&str, &str)] = &[
    ("SYNCOORD_CONF_ES256_KEY", ES256_PEM),
    ("SYNCOORD_CONF_ED25519_KEY", ED25519_B64),
    ("SYNCOORD_CONF_EXCHANGE_SECRET", EXCHANGE_SECRET_B64),
    ("SYNCOORD_CONF_EXCHANGE_PASSPHRASE", EXCHANGE_PASSPHRASE),
    ("SYNCOORD_CONF_TOKEN_ED", TOKEN_ED),
];

/// The signing suite's configuration for a strict mock at `mock_url`.
pub fn config_for(mock_url: &str) -> String {
    CONFIG_TEMPLATE.replace("@MOCK@", mock_url).replace(
        "@TOKEN_ES_SHA256@",
        &syncoord_wire::token_sha256_hex(TOKEN_ES),
    )
}

/// [`SECRETS`] as a dotenv file (what `wrangler dev --env-file` reads):
/// double-quoted, newlines as `\n`.
pub fn env_file() -> String {
    SECRETS
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"\n", value.replace('\n', "\\n")))
        .collect()
}

/// What the strict mock knows: the public halves of both CDP keys and the
/// Exchange secret.
pub fn verifier() -> Verifier {
    Verifier::new()
        .cdp_private_key(ES256_KEY_NAME, ES256_PEM)
        .and_then(|v| v.cdp_private_key(ED25519_KEY_NAME, ED25519_B64))
        .and_then(|v| v.exchange_base64(EXCHANGE_KEY, EXCHANGE_SECRET_B64, EXCHANGE_PASSPHRASE))
        .unwrap_or_else(|e| panic!("the suite's test keys: {e}"))
}

type CheckFn = fn(&Target, &Verifier) -> Result<(), String>;

/// Every signing case, in the order they run.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("signed: ES256 and Ed25519 JWTs verify", cdp_keys_verify),
    (
        "signed: an Exchange HMAC verifies, GET and POST",
        exchange_verifies,
    ),
    ("signed: a wrong token is 401, nothing sent", wrong_token),
    (
        "signed: no token on a signed upstream is 401, nothing sent",
        no_token,
    ),
    (
        "signed: two credentials never see each other's cached answers",
        isolation,
    ),
    (
        "signed: a token with the bot's own identity is 400, nothing sent; alone, it is signed",
        mixed_credentials_are_refused,
    ),
    ("signed: a retry is signed again", retry_signed_again),
];

/// Runs every signing case against `target` (a host running
/// [`config_for`] in front of a mock with [`verifier`]); then the mock
/// must have refused no signature at all.
pub fn run_all(target: &Target, verifier: &Arc<Verifier>) -> Result<(), String> {
    let mut failures = super::run_checks(
        target,
        CHECKS
            .iter()
            .map(|(name, check)| (*name, move || check(target, verifier))),
    );
    match signature_counts(target) {
        Ok((_, refused)) if refused.as_object().is_some_and(|m| m.is_empty()) => {}
        Ok((_, refused)) => failures.push(format!(
            "the strict mock refused signatures during the suite: {refused}"
        )),
        Err(e) => failures.push(e),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} signing checks failed against {}:\n  {}",
            failures.len(),
            target.name,
            failures.join("\n  ")
        ))
    }
}

/// The strict mock's `signatures_verified` and `signature_failures`.
fn signature_counts(t: &Target) -> Result<(u64, Value), String> {
    let stats = get(&format!("{}/__stats", t.mock), &[])?.json()?;
    let verified = stats["signatures_verified"]
        .as_u64()
        .ok_or_else(|| format!("mock /__stats has no `signatures_verified`: {stats}"))?;
    Ok((verified, stats["signature_failures"].clone()))
}

fn token(value: &str) -> (&'static str, &str) {
    ("X-Syncoord-Token", value)
}

/// `Proxy-Authorization: Basic` with `token` as the password, as an
/// `HTTPS_PROXY=http://NAME:TOKEN@host` client sends it.
fn proxy_basic(name: &str, token: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{token}"));
    format!("Basic {pair}")
}

/// The `mock_credential` of an Advanced Trade accounts answer.
fn account_owner(reply: &Reply) -> Result<String, String> {
    expect_status(reply, 200, "accounts")?;
    let body = reply.json()?;
    body["accounts"][0]["mock_credential"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("accounts without mock_credential: {body}"))
}

fn cdp_keys_verify(t: &Target, _: &Verifier) -> Result<(), String> {
    let (before, _) = signature_counts(t)?;
    // A query no other case uses, so both calls reach upstream.
    let url = format!("{}/api/v3/brokerage/accounts?limit=3", t.base);
    let es = account_owner(&get(&url, &[token(TOKEN_ES)])?)?;
    let ed = account_owner(&get(&url, &[token(TOKEN_ED)])?)?;
    expect(es == format!("jwt:{ES256_KEY_NAME}"), || {
        format!("bot-es's answer is for `{es}`")
    })?;
    expect(ed == format!("jwt:{ED25519_KEY_NAME}"), || {
        format!("bot-ed's answer is for `{ed}`")
    })?;
    let (after, _) = signature_counts(t)?;
    expect(after >= before + 2, || {
        format!(
            "the mock verified {} signatures, expected 2",
            after - before
        )
    })
}

fn exchange_verifies(t: &Target, _: &Verifier) -> Result<(), String> {
    let (before, _) = signature_counts(t)?;
    let accounts = get(&format!("{}/exchange/accounts", t.base), &[token(TOKEN_ES)])?;
    expect_status(&accounts, 200, "Exchange accounts")?;
    expect(
        accounts.text().contains(&format!("key:{EXCHANGE_KEY}")),
        || {
            format!(
                "Exchange accounts not for the configured key: {}",
                accounts.text()
            )
        },
    )?;
    // The body is part of what the HMAC covers.
    let body = format!(
        r#"{{"product_id":"BTC-USD","side":"buy","type":"limit","price":"1.00","size":"0.01","client_oid":"{}"}}"#,
        unique("conf-sign-")
    );
    let order = send(
        "POST",
        &format!("{}/exchange/orders", t.base),
        &[token(TOKEN_ES), ("content-type", "application/json")],
        Some(body.as_bytes()),
    )?;
    expect_status(&order, 200, "Exchange order")?;
    let (after, _) = signature_counts(t)?;
    expect(after >= before + 2, || {
        format!(
            "the mock verified {} signatures, expected 2",
            after - before
        )
    })
}

fn wrong_token(t: &Target, _: &Verifier) -> Result<(), String> {
    let before = mock_counts(t)?.requests;
    let url = format!("{}/api/v3/brokerage/accounts", t.base);
    let header = proxy_basic("bot-es", "not-the-token");
    for (what, headers) in [
        ("X-Syncoord-Token", vec![token("not-the-token")]),
        (
            "Proxy-Authorization",
            vec![("Proxy-Authorization", header.as_str())],
        ),
    ] {
        let reply = get(&url, &headers)?;
        expect_status(&reply, 401, &format!("a wrong token in {what}"))?;
        expect(
            reply.header("x-syncoord-error") == Some("unknown_token"),
            || {
                format!(
                    "a wrong token in {what}: X-Syncoord-Error {:?}",
                    reply.header("x-syncoord-error")
                )
            },
        )?;
    }
    let after = mock_counts(t)?.requests;
    expect(after == before, || {
        format!("a wrong token made {} upstream calls", after - before)
    })
}

fn no_token(t: &Target, _: &Verifier) -> Result<(), String> {
    let before = mock_counts(t)?.requests;
    // A bot that signs for itself, on an upstream syncoord signs for.
    let reply = get(
        &format!("{}/api/v3/brokerage/accounts", t.base),
        &[("Authorization", "Bearer a.bots.own")],
    )?;
    expect_status(&reply, 401, "no token")?;
    expect(
        reply.header("x-syncoord-error") == Some("token_required"),
        || {
            format!(
                "no token: X-Syncoord-Error {:?}",
                reply.header("x-syncoord-error")
            )
        },
    )?;
    let exchange = get(
        &format!("{}/exchange/accounts", t.base),
        &[("CB-ACCESS-KEY", EXCHANGE_KEY)],
    )?;
    expect_status(&exchange, 401, "no token on Exchange")?;
    let after = mock_counts(t)?.requests;
    expect(after == before, || {
        format!(
            "requests without a token made {} upstream calls",
            after - before
        )
    })
}

fn isolation(t: &Target, _: &Verifier) -> Result<(), String> {
    let url = format!("{}/api/v3/brokerage/accounts?limit=7", t.base);
    let ed_basic = proxy_basic("bot-ed", TOKEN_ED);
    let es = || get(&url, &[token(TOKEN_ES)]);
    let ed = || get(&url, &[("Proxy-Authorization", ed_basic.as_str())]);
    let (es1, ed1, es2, ed2) = (es()?, ed()?, es()?, ed()?);
    for (reply, owner) in [
        (&es1, ES256_KEY_NAME),
        (&ed1, ED25519_KEY_NAME),
        (&es2, ES256_KEY_NAME),
        (&ed2, ED25519_KEY_NAME),
    ] {
        let got = account_owner(reply)?;
        expect(got == format!("jwt:{owner}"), || {
            format!(
                "a client of `{owner}` got the accounts of `{got}` ({})",
                reply.source()
            )
        })?;
    }
    expect(es2.source() == "hit" && ed2.source() == "hit", || {
        format!(
            "repeat reads should be per-credential hits, got {} and {}",
            es2.source(),
            ed2.source()
        )
    })?;
    expect(es1.body != ed1.body, || {
        "two credentials got the same private body".into()
    })
}

/// The echo of one signed request: what reached upstream, checked to be
/// free of the bot's token and own signature, and verified with the
/// mock's own verifier.
fn signed_echo(
    t: &Target,
    v: &Verifier,
    scheme: Scheme,
    url: &str,
    headers: &[(&str, &str)],
    identity: &str,
) -> Result<(), String> {
    let echo = echo_of(&get(url, headers)?)?;
    for name in [
        "x-syncoord-token",
        "x-syncoord-credential",
        "proxy-authorization",
    ] {
        expect(echoed_header(&echo, name).is_none(), || {
            format!("{name} reached upstream")
        })?;
    }
    for (name, bots_own) in headers {
        if ["authorization", "cb-access-key", "cb-access-sign"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            expect(echoed_header(&echo, name) != Some(bots_own), || {
                format!("the bot's own {name} reached upstream")
            })?;
        }
    }
    let received: Vec<(String, String)> = echo["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            Some((
                pair.get(0)?.as_str()?.to_owned(),
                pair.get(1)?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let method = echo["method"].as_str().unwrap_or_default();
    let target = echo["target"].as_str().unwrap_or_default();
    let proved = v.verify(scheme, method, target, &received, b"");
    expect(proved == Ok(Some(identity.to_owned())), || {
        format!(
            "{url} reached upstream signed as {proved:?}, expected {identity} (on {})",
            t.name
        )
    })
}

/// A token sent with the bot's own identity (`Authorization`,
/// `CB-ACCESS-*`) is refused with `400 mixed_credentials`: which account
/// the bot meant is not syncoord's to guess, and nothing goes upstream.
fn mixed_credentials_are_refused(t: &Target, v: &Verifier) -> Result<(), String> {
    let before = mock_counts(t)?.requests;
    let basic = proxy_basic("bot-ed", TOKEN_ED);
    let advanced = format!("{}{}?a=1&b=2", t.base, unique("/__echo/signed/"));
    let exchange = format!("{}/exchange{}?x=1", t.base, unique("/__echo/hmac/"));
    for (what, url, headers) in [
        (
            "token and Authorization",
            &advanced,
            vec![token(TOKEN_ES), ("Authorization", "Bearer the.bots.own")],
        ),
        (
            "Proxy-Authorization and Authorization",
            &advanced,
            vec![
                ("Proxy-Authorization", basic.as_str()),
                ("Authorization", "Bearer the.bots.own"),
            ],
        ),
        (
            "token and CB-ACCESS-*",
            &exchange,
            vec![
                token(TOKEN_ES),
                ("CB-ACCESS-KEY", "the-bots-own-key"),
                ("CB-ACCESS-SIGN", "the-bots-own-sign"),
            ],
        ),
    ] {
        let reply = get(url, &headers)?;
        expect_status(&reply, 400, what)?;
        expect(
            reply.header("x-syncoord-error") == Some("mixed_credentials"),
            || {
                format!(
                    "{what}: X-Syncoord-Error {:?}",
                    reply.header("x-syncoord-error")
                )
            },
        )?;
    }
    let after = mock_counts(t)?.requests;
    expect(after == before, || {
        format!("mixed credentials made {} upstream calls", after - before)
    })?;
    // The token alone: it reaches upstream signed by syncoord, and the
    // token itself does not.
    signed_echo(
        t,
        v,
        Scheme::AdvancedTrade,
        &advanced,
        &[token(TOKEN_ES), ("X-Syncoord-Credential", "desk-es")],
        &format!("jwt:{ES256_KEY_NAME}"),
    )?;
    signed_echo(
        t,
        v,
        Scheme::AdvancedTrade,
        &format!("{}{}", t.base, unique("/__echo/basic/")),
        &[("Proxy-Authorization", &basic)],
        &format!("jwt:{ED25519_KEY_NAME}"),
    )?;
    signed_echo(
        t,
        v,
        Scheme::Exchange,
        &exchange,
        &[token(TOKEN_ES)],
        &format!("key:{EXCHANGE_KEY}"),
    )
}

/// The first attempt meets a 503 and the call is retried: both attempts
/// reach the strict mock validly signed (each is signed when it is sent:
/// edge-worker/src/sign.rs and the daemon's upstream test that each
/// signature is fresh).
fn retry_signed_again(t: &Target, _: &Verifier) -> Result<(), String> {
    let before = signature_counts(t)?.0;
    set_faults(t, r#"{"status": 503, "status_next": 1}"#)?;
    let url = format!("{}/api/v3/brokerage/accounts?limit=11", t.base);
    let owner = account_owner(&get(&url, &[token(TOKEN_ED)])?)?;
    expect(owner == format!("jwt:{ED25519_KEY_NAME}"), || {
        format!("the retried call answered for `{owner}`")
    })?;
    let after = signature_counts(t)?.0;
    expect(after == before + 2, || {
        format!(
            "expected 2 verified attempts (the 503 and the retry), got {}",
            after - before
        )
    })
}
