//! Coinbase CDP (Advanced Trade) request JWTs, as Coinbase documents them
//! and coinbase-advanced-py 1.8.x builds them:
//! - header `{"alg", "kid": key name, "nonce": fresh random hex, "typ": "JWT"}`;
//! - claims `{"sub": key name, "iss": "cdp", "nbf": now, "exp": now + 120,
//!   "uri": "METHOD host/path"}`: the upstream's real host (with its port
//!   when not the scheme's default) and the path without the query.

use base64::Engine;
use serde::Serialize;

use super::key::CdpKey;
use super::SignTarget;

/// How long a JWT is valid: Coinbase refuses longer ones.
pub const JWT_LIFETIME_SECS: u64 = 120;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) alg: &'a str,
    pub(crate) kid: &'a str,
    pub(crate) nonce: String,
    pub(crate) typ: &'static str,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Claims<'a> {
    pub(crate) sub: &'a str,
    pub(crate) iss: &'static str,
    pub(crate) nbf: u64,
    pub(crate) exp: u64,
    pub(crate) uri: String,
}

/// The `uri` claim: `METHOD host/path`, the path without its query.
pub(crate) fn uri(target: &SignTarget<'_>) -> String {
    format!("{} {}{}", target.method, target.authority, target.path)
}

/// The claims of a JWT for `target`, signed at `unix_now`.
pub(crate) fn claims<'a>(key_name: &'a str, target: &SignTarget<'_>, unix_now: u64) -> Claims<'a> {
    Claims {
        sub: key_name,
        iss: "cdp",
        nbf: unix_now,
        exp: unix_now + JWT_LIFETIME_SECS,
        uri: uri(target),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compact JWS: `base64url(header).base64url(claims).base64url(sig)`.
pub(crate) fn token(
    key_name: &str,
    key: &CdpKey,
    target: &SignTarget<'_>,
    unix_now: u64,
    nonce: [u8; 16],
) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = Header {
        alg: key.alg(),
        kid: key_name,
        nonce: hex(&nonce),
        typ: "JWT",
    };
    let claims = claims(key_name, target, unix_now);
    // Serializing these two structs of strings and integers cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let claims = serde_json::to_vec(&claims).unwrap_or_default();
    let mut signing_input = b64.encode(header);
    signing_input.push('.');
    signing_input.push_str(&b64.encode(claims));
    let signature = key.sign(signing_input.as_bytes());
    signing_input.push('.');
    signing_input.push_str(&b64.encode(signature));
    signing_input
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    fn target() -> SignTarget<'static> {
        SignTarget {
            method: "POST",
            authority: "api.coinbase.com",
            path: "/api/v3/brokerage/orders",
            query: Some("x=1"),
            body: b"{}",
        }
    }

    fn decode(part: &str) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        serde_json::from_slice(&b64.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn the_claims_name_the_real_host_and_the_path_without_its_query() {
        let c = claims("organizations/o/apiKeys/k", &target(), 1_700_000_000);
        assert_eq!(c.uri, "POST api.coinbase.com/api/v3/brokerage/orders");
        assert_eq!((c.nbf, c.exp), (1_700_000_000, 1_700_000_120));
        assert_eq!((c.sub, c.iss), ("organizations/o/apiKeys/k", "cdp"));
    }

    #[test]
    fn an_es256_token_verifies_with_the_public_key_and_carries_its_header() {
        let secret = p256::SecretKey::from_slice(&[3; 32]).unwrap();
        let key = CdpKey::Es256(secret.clone().into());
        let jwt = token("kn", &key, &target(), 1_700_000_000, [0xab; 16]);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "kn");
        assert_eq!(header["nonce"], "ab".repeat(16));
        assert_eq!(
            decode(parts[1])["uri"],
            "POST api.coinbase.com/api/v3/brokerage/orders"
        );
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = p256::ecdsa::Signature::from_slice(&b64.decode(parts[2]).unwrap()).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from(secret.public_key());
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(vk.verify(input.as_bytes(), &sig).is_ok());
        assert!(vk.verify(b"another message", &sig).is_err());
    }

    #[test]
    fn an_ed25519_token_verifies_and_says_eddsa() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let key = CdpKey::Ed25519(sk.clone());
        let jwt = token("kn", &key, &target(), 1_700_000_000, [1; 16]);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(decode(parts[0])["alg"], "EdDSA");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = ed25519_dalek::Signature::from_slice(&b64.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(sk
            .verifying_key()
            .verify_strict(input.as_bytes(), &sig)
            .is_ok());
    }
}
