//! The pieces of HTTP semantics a proxy needs, written once: which headers
//! stop at a hop, and whose credential a request carries (per upstream:
//! the credential that upstream authenticates, shown only as an alias).

use base64::Engine;
use sha2::{Digest, Sha256};
use syncoord_core::config::CredentialConfig;
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

/// What a request presents to upstream as its credential, read from the
/// headers that are forwarded (never from one a hop strips).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The key name upstream authenticates the request as (see
    /// [`key_name`]), if any credential header is present.
    pub key_name: Option<String>,
    /// Two credential headers at once (`[credential] header` and one of
    /// its `others`, or two `others`): which one upstream authenticates is
    /// not documented, so routes where the identity counts refuse them.
    pub mixed: Option<(String, String)>,
}

/// Reads the credential a request presents, per upstream: the header
/// `rules.header` names (what upstream authenticates) and, when it is
/// absent, the first of `rules.others` present.
///
/// Key names:
/// - `Authorization: Bearer <JWT>` (Coinbase Advanced Trade signs a fresh
///   JWT per request; its `sub` names the API key, so it stays the same
///   across signatures): `jwt:<sub>`. The scheme is case-insensitive and
///   may be followed by any spaces or tabs (RFC 9110 11.1), so `BEARER`,
///   `bearer` and `Bearer<TAB>` are one identity;
/// - any other `Authorization` value: `auth:<sha256 prefix>` of the value
///   with its scheme lower-cased, so distinct secrets never share a cache
///   entry and the secret itself is never kept;
/// - any other header (e.g. Exchange's `CB-ACCESS-KEY`, an API key id):
///   `key:<value>`.
///
/// The `sub` claim is read, not verified (the coordinator does not hold
/// the keys): clients of one coordinator are trusted not to forge each
/// other's identity. See the trust model in the README.
pub fn presented(headers: &[(String, String)], rules: &CredentialConfig) -> Presented {
    let value = |name: &str| header(headers, name).filter(|v| !v.trim().is_empty());
    let present: Vec<(&str, &str)> = std::iter::once(rules.header.as_str())
        .chain(rules.others.iter().map(String::as_str))
        .filter_map(|name| value(name).map(|v| (name, v)))
        .collect();
    let mixed = match present.as_slice() {
        [a, b, ..] => Some((a.0.to_owned(), b.0.to_owned())),
        _ => None,
    };
    Presented {
        key_name: present.first().map(|(name, v)| key_name(name, v)),
        mixed,
    }
}

/// The key name one credential header's value stands for (see
/// [`presented`]).
pub fn key_name(header_name: &str, value: &str) -> String {
    if !header_name.eq_ignore_ascii_case("authorization") {
        return format!("key:{}", value.trim());
    }
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = match value.split_once([' ', '\t']) {
        Some((scheme, rest)) => (scheme, Some(rest.trim_matches([' ', '\t']))),
        None => (value, None),
    };
    match token {
        Some(token) if scheme.eq_ignore_ascii_case("bearer") => match jwt_subject(token) {
            Some(sub) => format!("jwt:{sub}"),
            None => format!("auth:{}", fingerprint(&format!("bearer {token}"))),
        },
        Some(token) => format!(
            "auth:{}",
            fingerprint(&format!("{} {token}", scheme.to_ascii_lowercase()))
        ),
        None => format!("auth:{}", fingerprint(value)),
    }
}

/// The credential identity of a request: whose private data a response
/// is, and whose per-credential rate limit a call spends. It is the
/// alias of the key name the request presents ([`presented`]): the label
/// `rules.aliases` gives it, as `name:<label>`, else `id:` and the first
/// 128 bits of the SHA-256 of the key name, in hex. So stats, metrics,
/// logs and shard names show a stable alias and never a key name (which,
/// under the trust model, is all one needs to read another bot's cache).
/// With two credentials at once it is the one `rules.header` names; a
/// host refuses such a request where the identity counts (the proxy's
/// `Proxy::route` does).
pub fn credential_identity(
    headers: &[(String, String)],
    rules: &CredentialConfig,
) -> Option<Credential> {
    presented(headers, rules)
        .key_name
        .map(|name| identity_of(&name, rules))
}

/// The alias of key name `name` (see [`credential_identity`]).
pub fn identity_of(name: &str, rules: &CredentialConfig) -> Credential {
    let bare = name
        .strip_prefix("key:")
        .or_else(|| name.strip_prefix("jwt:"));
    if let Some(label) = bare.and_then(|b| rules.aliases.get(b)) {
        return Credential::new(&format!("name:{label}"));
    }
    Credential::new(&format!("id:{}", fingerprint(name)))
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(32);
    for b in &digest[..16] {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

/// Header fields from `(name, value)` pairs, for this crate's tests.
#[cfg(test)]
pub(crate) fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn rules(header: &str, others: &[&str]) -> CredentialConfig {
        CredentialConfig {
            header: header.into(),
            others: others.iter().map(|o| (*o).to_owned()).collect(),
            ..CredentialConfig::default()
        }
    }

    #[test]
    fn fingerprints_are_the_first_128_bits_of_sha256_in_lowercase_hex() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3...
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn key_names_from_key_header_jwt_or_fingerprint() {
        let exchange = rules("CB-ACCESS-KEY", &["Authorization"]);
        let name = |pairs: &[(&str, &str)]| presented(&h(pairs), &exchange).key_name;
        assert_eq!(name(&[("cb-access-key", "abc")]), Some("key:abc".into()));
        let t1 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":1}"#);
        let t2 = jwt(r#"{"sub":"organizations/o/apiKeys/k1","exp":2}"#);
        let a1 = format!("Bearer {t1}");
        let a2 = format!("Bearer {t2}");
        // Two signatures of one key are one identity.
        assert_eq!(
            name(&[("Authorization", &a1)]),
            name(&[("Authorization", &a2)])
        );
        assert_eq!(
            name(&[("Authorization", &a1)]),
            Some("jwt:organizations/o/apiKeys/k1".into())
        );
        let opaque = name(&[("Authorization", "Bearer not-a-jwt")]).unwrap();
        assert!(opaque.starts_with("auth:") && !opaque.contains("not-a-jwt"));
        assert_ne!(opaque, name(&[("Authorization", "Bearer other")]).unwrap());
        assert_eq!(name(&[("Accept", "*/*")]), None);
        assert_eq!(name(&[("CB-ACCESS-KEY", "  ")]), None);
        // A JWT without `sub` is an opaque token.
        let nosub = format!("Bearer {}", jwt(r#"{"exp":1}"#));
        assert!(name(&[("Authorization", &nosub)])
            .unwrap()
            .starts_with("auth:"));
    }

    #[test]
    fn the_auth_scheme_is_case_insensitive_with_any_whitespace() {
        let at = rules("Authorization", &["CB-ACCESS-KEY"]);
        let t = jwt(r#"{"sub":"organizations/o/apiKeys/k1"}"#);
        let name = |value: String| presented(&h(&[("Authorization", &value)]), &at).key_name;
        let want = Some("jwt:organizations/o/apiKeys/k1".to_owned());
        for scheme in [
            "Bearer ",
            "BEARER ",
            "bearer ",
            "BeArEr ",
            "Bearer\t",
            "Bearer \t  ",
        ] {
            assert_eq!(name(format!("{scheme}{t}")), want, "{scheme:?}");
            assert_eq!(name(format!(" {scheme}{t}\t")), want, "{scheme:?}");
        }
        // Opaque tokens too: the scheme's spelling is not part of the key.
        let opaque = name("Bearer tok".into());
        assert_eq!(name("BEARER\ttok".into()), opaque);
        assert_eq!(
            name("Basic dXNlcg==".into()),
            name("basic  dXNlcg==".into())
        );
        assert_ne!(name("Basic tok".into()), opaque);
        // `Bearertok` is not the Bearer scheme.
        assert_ne!(name(format!("Bearer{t}")), want);
    }

    #[test]
    fn identity_is_what_upstream_reads_and_mixed_credentials_are_flagged() {
        let at = rules("Authorization", &["CB-ACCESS-KEY"]);
        let exchange = rules("CB-ACCESS-KEY", &["Authorization"]);
        let mallory = format!(
            "Bearer {}",
            jwt(r#"{"sub":"organizations/o/apiKeys/mallory"}"#)
        );
        let both = h(&[("CB-ACCESS-KEY", "alice"), ("Authorization", &mallory)]);
        let p = presented(&both, &at);
        assert_eq!(
            p.key_name.as_deref(),
            Some("jwt:organizations/o/apiKeys/mallory"),
            "Advanced Trade authenticates the JWT"
        );
        assert_eq!(
            p.mixed,
            Some(("Authorization".into(), "CB-ACCESS-KEY".into()))
        );
        let p = presented(&both, &exchange);
        assert_eq!(
            p.key_name.as_deref(),
            Some("key:alice"),
            "Exchange reads the key"
        );
        assert!(p.mixed.is_some());
        // One credential of the other kind only: identified by it, so an
        // answer upstream may have authenticated is never filed as anonymous.
        let p = presented(&h(&[("CB-ACCESS-KEY", "alice")]), &at);
        assert_eq!((p.key_name.as_deref(), p.mixed), (Some("key:alice"), None));
        // A generic API naming its own header.
        let generic = rules("X-Api-Key", &[]);
        let p = presented(&h(&[("x-api-key", "k"), ("Authorization", "x")]), &generic);
        assert_eq!((p.key_name.as_deref(), p.mixed), (Some("key:k"), None));
    }

    #[test]
    fn identities_are_aliases_never_key_names() {
        let mut at = rules("Authorization", &["CB-ACCESS-KEY"]);
        at.aliases
            .insert("organizations/o/apiKeys/k1".into(), "trader-1".into());
        at.aliases.insert("alice".into(), "alice-bot".into());
        let id = |pairs: &[(&str, &str)]| {
            credential_identity(&h(pairs), &at).map(|c| c.as_str().to_owned())
        };
        let k1 = format!("Bearer {}", jwt(r#"{"sub":"organizations/o/apiKeys/k1"}"#));
        assert_eq!(
            id(&[("Authorization", &k1)]).as_deref(),
            Some("name:trader-1")
        );
        assert_eq!(
            id(&[("CB-ACCESS-KEY", "alice")]).as_deref(),
            Some("name:alice-bot")
        );
        let bob = id(&[("CB-ACCESS-KEY", "bob")]).unwrap();
        // Stable, short, and not the key name.
        assert_eq!(bob, id(&[("CB-ACCESS-KEY", "bob")]).unwrap());
        assert!(bob.starts_with("id:") && bob.len() == 3 + 32, "{bob}");
        assert!(!bob.contains("bob"));
        assert_ne!(bob, id(&[("CB-ACCESS-KEY", "bob2")]).unwrap());
        // A JWT `sub` and a key of the same name are different keys.
        let sub_bob = format!("Bearer {}", jwt(r#"{"sub":"bob"}"#));
        assert_ne!(id(&[("Authorization", &sub_bob)]).unwrap(), bob);
        assert_eq!(id(&[]), None);
    }
}
