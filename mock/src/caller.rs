//! Whose request it is, outside strict mode: the credential the API
//! authenticates, read (not verified) with the mock's own code.
//!
//! Why not the proxy's `presented`: that reading is what the tests check.
//! A mock that asked the same function whose request it is would agree
//! with any bug in it, and an identity mix-up would pass on both sides.
//! So this is written apart, from what Coinbase documents, and the tests
//! compare the two.
//!
//! Which header counts: Advanced Trade authenticates the `Authorization`
//! Bearer JWT (a legacy `CB-ACCESS-KEY` only without one); Exchange the
//! `CB-ACCESS-KEY` (else whatever `Authorization` holds). A blank header
//! is no credential. Names, as strict mode proves them:
//! - a Bearer JWT: `jwt:<sub>` (the API key's name: it stays the same
//!   across signatures). The scheme is case-insensitive, followed by any
//!   spaces or tabs (RFC 9110 11.1);
//! - any other `Authorization`: `auth:` and the first 128 bits of the
//!   SHA-256 of `<scheme, lower-case> <token>` in hex, so distinct secrets
//!   are distinct accounts and no secret is echoed;
//! - `CB-ACCESS-KEY`: `key:<key>`.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The API a request is for, as far as identity goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authenticates {
    /// Advanced Trade: the JWT first.
    Jwt,
    /// Exchange: the API key first.
    Key,
}

/// The caller's name (see the module doc), or `None` without a
/// credential.
pub(crate) fn caller(headers: &[(String, String)], api: Authenticates) -> Option<String> {
    let auth = || nonblank(headers, "authorization").map(from_authorization);
    let key = || nonblank(headers, "cb-access-key").map(|k| format!("key:{k}"));
    match api {
        Authenticates::Jwt => auth().or_else(key),
        Authenticates::Key => key().or_else(auth),
    }
}

fn from_authorization(value: &str) -> String {
    let (scheme, token) = scheme_and_token(value);
    let Some(token) = token else {
        return format!("auth:{}", digest_hex(value));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "bearer" {
        let sub = jwt_claims(token).and_then(|c| Some(c.get("sub")?.as_str()?.to_owned()));
        if let Some(sub) = sub.filter(|s| !s.is_empty()) {
            return format!("jwt:{sub}");
        }
    }
    format!("auth:{}", digest_hex(&format!("{scheme} {token}")))
}

/// `Scheme token` split at the first space or tab; the token without
/// surrounding spaces or tabs (none: a bare value).
fn scheme_and_token(value: &str) -> (&str, Option<&str>) {
    let value = value.trim_matches([' ', '\t']);
    match value.split_once([' ', '\t']) {
        Some((scheme, rest)) => (scheme, Some(rest.trim_matches([' ', '\t']))),
        None => (value, None),
    }
}

/// A JWT's claims: three dot-separated parts, the second base64url JSON
/// (at most 16 KiB of it, as no real token is larger).
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return None;
    };
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A header's value, trimmed, if present and not blank.
fn nonblank<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The first 16 bytes of SHA-256, in lower-case hex.
fn digest_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncoord_core::config::CredentialConfig;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"ES256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn each_api_reads_its_own_credential_first() {
        let k1 = format!("Bearer {}", jwt(r#"{"sub":"organizations/o/apiKeys/k1"}"#));
        let both = h(&[("CB-ACCESS-KEY", "alice"), ("Authorization", &k1)]);
        assert_eq!(
            caller(&both, Authenticates::Jwt).as_deref(),
            Some("jwt:organizations/o/apiKeys/k1")
        );
        assert_eq!(
            caller(&both, Authenticates::Key).as_deref(),
            Some("key:alice")
        );
        let key_only = h(&[("cb-access-key", " alice ")]);
        assert_eq!(
            caller(&key_only, Authenticates::Jwt).as_deref(),
            Some("key:alice")
        );
        assert_eq!(
            caller(&h(&[("CB-ACCESS-KEY", "  ")]), Authenticates::Key),
            None
        );
        assert_eq!(caller(&h(&[("Accept", "*/*")]), Authenticates::Jwt), None);
    }

    #[test]
    fn bearer_tokens_name_their_key_and_other_secrets_only_a_digest() {
        let at = |v: &str| caller(&h(&[("Authorization", v)]), Authenticates::Jwt).unwrap();
        let t1 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":1}"#);
        let t2 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":2}"#);
        assert_eq!(at(&format!("Bearer {t1}")), at(&format!("BEARER\t {t2} ")));
        assert_eq!(
            at(&format!("bearer {t1}")),
            "jwt:organizations/o/apiKeys/k1"
        );
        let opaque = at("Bearer not-a-jwt");
        assert!(opaque.starts_with("auth:") && !opaque.contains("not-a-jwt"));
        assert_eq!(opaque.len(), 5 + 32);
        assert_eq!(at("bearer\tnot-a-jwt"), opaque);
        assert_ne!(at("Bearer other"), opaque);
        assert_ne!(at("Basic not-a-jwt"), opaque);
        assert!(at(&format!("Bearer {}", jwt(r#"{"exp":1}"#))).starts_with("auth:"));
        assert_ne!(at(&format!("Bearer{t1}")), at(&format!("Bearer {t1}")));
    }

    /// The mock's reading and the proxy's (`syncoord_wire::presented`),
    /// written apart, name the same caller.
    #[test]
    fn the_mock_and_the_proxy_read_the_same_caller() {
        let k1 = format!("Bearer {}", jwt(r#"{"sub":"organizations/o/apiKeys/k1"}"#));
        let cases: Vec<Vec<(String, String)>> = vec![
            h(&[("CB-ACCESS-KEY", "alice"), ("Authorization", &k1)]),
            h(&[("Authorization", &k1)]),
            h(&[("Authorization", " BEARER\topaque ")]),
            h(&[("Authorization", "Basic dXNlcg==")]),
            h(&[("Authorization", "bare")]),
            h(&[("cb-access-key", "bob")]),
            h(&[("Authorization", "")]),
            h(&[]),
        ];
        for (api, header, other) in [
            (Authenticates::Jwt, "Authorization", "CB-ACCESS-KEY"),
            (Authenticates::Key, "CB-ACCESS-KEY", "Authorization"),
        ] {
            let rules = CredentialConfig {
                header: header.into(),
                others: vec![other.into()],
                ..CredentialConfig::default()
            };
            for headers in &cases {
                assert_eq!(
                    caller(headers, api),
                    syncoord_wire::presented(headers, &rules).key_name,
                    "{api:?} {headers:?}"
                );
            }
        }
    }
}
