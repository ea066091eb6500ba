//! The pieces of HTTP semantics a proxy needs, written once: which headers
//! stop at a hop, and whose credential a request carries.

use base64::Engine;
use sha2::{Digest, Sha256};
use syncoord_core::{header, Credential};

/// Which headers stop at a hop instead of travelling on with the message.
/// Each place that relays headers names its own set; the matching rule is
/// shared so no place drifts from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopHeaders<'a> {
    /// Names, lower-case, dropped whatever their case in the message.
    pub names: &'a [&'a str],
    /// Name prefixes, lower-case (`proxy-`, our own `x-syncoord-`).
    pub prefixes: &'a [&'a str],
    /// Whether the names a `Connection` header lists are dropped too: the
    /// sender declared them hop-by-hop (RFC 9110 7.6.1).
    pub connection_listed: bool,
}

/// `headers` without those `hop` says stop here, in their original order
/// and spelling.
pub fn strip_hop_headers(
    headers: &[(String, String)],
    hop: &HopHeaders<'_>,
) -> Vec<(String, String)> {
    let listed: Vec<String> = if hop.connection_listed {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .collect()
    } else {
        Vec::new()
    };
    headers
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !(hop.names.contains(&lower.as_str())
                || hop.prefixes.iter().any(|p| lower.starts_with(p))
                || listed.contains(&lower))
        })
        .cloned()
        .collect()
}

/// The credential identity of a request: whose private data a response
/// is, and whose per-credential rate limit a call spends.
///
/// Checked in order:
/// 1. each header in `key_headers` (e.g. Coinbase Exchange's
///    `CB-ACCESS-KEY`, an API key id): `key:<value>`;
/// 2. `Authorization: Bearer <JWT>` (Coinbase Advanced Trade signs a fresh
///    JWT per request; its `sub` names the API key, so it stays the same
///    across signatures): `jwt:<sub>`;
/// 3. any other `Authorization` value: `auth:<sha256 prefix>`, so distinct
///    secrets never share a cache entry and the secret itself is never kept
///    as a name that stats could show.
///
/// The `sub` claim is read, not verified (the coordinator does not hold the
/// keys): clients of one coordinator are trusted not to forge each other's
/// identity. See the trust model in the README.
pub fn credential_identity(
    headers: &[(String, String)],
    key_headers: &[String],
) -> Option<Credential> {
    for name in key_headers {
        if let Some(v) = header(headers, name).filter(|v| !v.is_empty()) {
            return Some(Credential::new(&format!("key:{v}")));
        }
    }
    let auth = header(headers, "authorization").filter(|v| !v.is_empty())?;
    if let Some(sub) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .and_then(jwt_subject)
    {
        return Some(Credential::new(&format!("jwt:{sub}")));
    }
    Some(Credential::new(&format!("auth:{}", fingerprint(auth))))
}

/// The `sub` claim of a JWT, if the token is shaped like one.
fn jwt_subject(token: &str) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims.get("sub")?.as_str()?;
    (!sub.is_empty()).then(|| sub.to_owned())
}

/// First 128 bits of SHA-256, hex.
fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }

    #[test]
    fn strip_hop_headers_drops_names_prefixes_and_connection_listed_only_when_asked() {
        let headers = h(&[
            ("Connection", "close, X-Trace"),
            ("Keep-Alive", "5"),
            ("Proxy-Authorization", "x"),
            ("x-trace", "1"),
            ("Accept", "*/*"),
        ]);
        let names = ["connection", "keep-alive"];
        let full = HopHeaders {
            names: &names,
            prefixes: &["proxy-"],
            connection_listed: true,
        };
        assert_eq!(strip_hop_headers(&headers, &full), h(&[("Accept", "*/*")]));
        let names_only = HopHeaders {
            names: &names,
            prefixes: &[],
            connection_listed: false,
        };
        assert_eq!(
            strip_hop_headers(&headers, &names_only),
            h(&[
                ("Proxy-Authorization", "x"),
                ("x-trace", "1"),
                ("Accept", "*/*")
            ])
        );
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
    fn credential_from_key_header_jwt_or_fingerprint() {
        let keys = vec!["CB-ACCESS-KEY".to_owned()];
        let id = |pairs: &[(&str, &str)]| {
            credential_identity(&h(pairs), &keys).map(|c| c.as_str().to_owned())
        };
        assert_eq!(id(&[("cb-access-key", "abc")]), Some("key:abc".into()));
        let t1 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":1}"#);
        let t2 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":2}"#);
        let a1 = format!("Bearer {t1}");
        let a2 = format!("Bearer {t2}");
        // Two signatures of one key are one identity.
        assert_eq!(id(&[("Authorization", &a1)]), id(&[("Authorization", &a2)]));
        assert_eq!(
            id(&[("Authorization", &a1)]),
            Some("jwt:organizations/o/apiKeys/k1".into())
        );
        let opaque = id(&[("Authorization", "Bearer not-a-jwt")]).unwrap();
        assert!(opaque.starts_with("auth:") && !opaque.contains("not-a-jwt"));
        assert_ne!(opaque, id(&[("Authorization", "Bearer other")]).unwrap());
        assert_eq!(id(&[("Accept", "*/*")]), None);
        // A JWT without `sub` is an opaque token.
        let nosub = format!("Bearer {}", jwt(r#"{"exp":1}"#));
        assert!(id(&[("Authorization", &nosub)])
            .unwrap()
            .starts_with("auth:"));
    }
}
