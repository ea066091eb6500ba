//! Strict mode: the mock verifies signatures as Coinbase does, so a test
//! proves that what reaches upstream is still validly signed instead of
//! assuming it.
//!
//! A [`Verifier`] knows the public halves of CDP keys (Advanced Trade) and
//! the secrets of Exchange keys, and which hosts a JWT may name. Given one
//! through [`crate::MockOptions::verify`], the mock answers `401` in the
//! API's own shape for every credential that does not verify, and counts
//! each outcome in [`crate::MockStats`] (`signatures_verified`,
//! `signature_failures` by [`Rejection::reason`]).
//!
//! Advanced Trade (`Authorization: Bearer <JWT>`), checked in this order:
//! header `alg` ES256 or EdDSA and a `nonce`, `kid` = `sub`; `sub` a known
//! key and `alg` its type; the signature over `header.claims` (ES256 as
//! the 64-byte `r||s` of JWS, not DER); `iss` `cdp` (or `coinbase-cloud`,
//! the Cloud API keys' issuer); `nbf <= now + 5 s`, `exp > now`,
//! `exp - nbf <= 120`; `uri` exactly `"METHOD host/path"`: the request's
//! method, a host that is the `Host` header as received (port included
//! when it has one) or one of [`Verifier::accept_host`], and the path
//! without the query. `aud` and `iat` are not checked. A `CB-ACCESS-KEY`
//! without a JWT is the retired legacy scheme: refused.
//!
//! Why two issuers and a `uris` list: ccxt 4.5.90, which bots use against
//! Coinbase every day, signs ES256 tokens with `iss = "coinbase-cloud"`
//! (and `aud = ["retail_rest_api_proxy"]`) and Ed25519 ones with a `uris`
//! list instead of `uri`, as the CDP v2 scheme does; Coinbase accepts
//! both, so a mock that refused them would fail real clients.
//!
//! Exchange (`CB-ACCESS-KEY`, `-SIGN`, `-TIMESTAMP`, `-PASSPHRASE`): a
//! known key, a timestamp (decimal seconds, a fraction allowed) within
//! 30 s of the mock's clock, the passphrase, and `CB-ACCESS-SIGN` =
//! base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body)),
//! requestPath being the path and `?query` exactly as received. MACs and
//! passphrases are compared in constant time.
//!
//! Public endpoints need no credential, but one that is sent is verified
//! all the same (and refused when it fails): a proxy that breaks a
//! signature shows on every route, not only on private ones.
//!
//! The clock is the wall clock plus an offset ([`Verifier::clock_offset`],
//! [`Verifier::set_clock_offset`]), so a test can age a signature without
//! sleeping.

mod file;
mod keys;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use file::{KeysFileError, KeysFileErrors};
pub use keys::{sec1_pem, KeyError};

/// How far a JWT's `nbf` may lie in the mock's future (clocks differ a
/// little; Coinbase tolerates a few seconds).
pub const NBF_LEEWAY_SECS: f64 = 5.0;
/// Longest JWT lifetime Coinbase accepts (`exp - nbf`).
pub const MAX_JWT_LIFETIME_SECS: f64 = 120.0;
/// How far an Exchange `CB-ACCESS-TIMESTAMP` may be from the mock's clock.
pub const EXCHANGE_WINDOW_SECS: f64 = 30.0;

/// The public half of a CDP key (nothing secret: `Debug` is safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CdpKey {
    Es256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl CdpKey {
    fn alg(&self) -> &'static str {
        match self {
            CdpKey::Es256(_) => "ES256",
            CdpKey::Ed25519(_) => "EdDSA",
        }
    }
}

struct ExchangeKey {
    secret: Vec<u8>,
    passphrase: String,
}

/// Which scheme a request is authenticated with: the API its path
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Advanced Trade: a CDP JWT in `Authorization: Bearer`.
    AdvancedTrade,
    /// Exchange: `CB-ACCESS-*` with an HMAC.
    Exchange,
}

/// Why a credential was refused. [`Rejection::reason`] is the key it is
/// counted under in [`crate::MockStats::signature_failures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// Not a JWT, bad base64 or JSON, a missing `nonce` or claim, a `kid`
    /// other than `sub`, an unparsable timestamp.
    Malformed,
    /// A key name (`sub`, `CB-ACCESS-KEY`) the verifier does not know.
    UnknownKey,
    /// `alg` is not the known key's type (or not ES256/EdDSA at all).
    WrongAlgorithm,
    /// The signature or MAC does not verify.
    BadSignature,
    /// `iss` is not `cdp` (or `coinbase-cloud`).
    WrongIssuer,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `exp` has passed.
    Expired,
    /// `exp - nbf` is more than 120 s.
    LifetimeTooLong,
    /// `uri` does not name this request's method, host and path.
    WrongUri,
    /// The Exchange timestamp is more than 30 s from the mock's clock.
    StaleTimestamp,
    /// The Exchange passphrase does not match.
    BadPassphrase,
    /// An Exchange header is missing.
    MissingHeader,
    /// `CB-ACCESS-KEY` on Advanced Trade without a JWT (the legacy
    /// scheme Coinbase retired).
    LegacyKey,
}

impl Rejection {
    /// The stats key, e.g. `bad_signature`.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownKey => "unknown_key",
            Rejection::WrongAlgorithm => "wrong_algorithm",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Expired => "expired",
            Rejection::LifetimeTooLong => "lifetime_too_long",
            Rejection::WrongUri => "wrong_uri",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadPassphrase => "bad_passphrase",
            Rejection::MissingHeader => "missing_header",
            Rejection::LegacyKey => "legacy_key",
        }
    }

    /// The `message` Coinbase Exchange answers this with.
    pub fn exchange_message(self) -> &'static str {
        match self {
            Rejection::UnknownKey => "Invalid API Key",
            Rejection::StaleTimestamp => "request timestamp expired",
            Rejection::BadPassphrase => "invalid passphrase",
            Rejection::Malformed => "invalid timestamp",
            Rejection::MissingHeader => {
                "CB-ACCESS-SIGN, CB-ACCESS-TIMESTAMP and CB-ACCESS-PASSPHRASE headers are required"
            }
            _ => "invalid signature",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The keys a strict mock verifies against, and its clock. Built with
/// the chained constructors or from a TOML file ([`Verifier::from_toml_str`]);
/// shared with the mock as an `Arc`.
///
/// `Debug` shows key names and hosts, never secrets.
pub struct Verifier {
    cdp: HashMap<String, CdpKey>,
    exchange: HashMap<String, ExchangeKey>,
    hosts: Vec<String>,
    /// The mock's clock minus the wall clock, in milliseconds.
    offset_ms: AtomicI64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cdp: Vec<(&str, &str)> = self
            .cdp
            .iter()
            .map(|(name, key)| (name.as_str(), key.alg()))
            .collect();
        cdp.sort_unstable();
        let mut exchange: Vec<&str> = self.exchange.keys().map(String::as_str).collect();
        exchange.sort_unstable();
        f.debug_struct("Verifier")
            .field("cdp", &cdp)
            .field("exchange", &exchange)
            .field("accept_hosts", &self.hosts)
            .field("clock_offset_ms", &self.offset_ms.load(Ordering::Relaxed))
            .finish()
    }
}

impl Verifier {
    /// A verifier that knows no key yet (every credential is refused).
    pub fn new() -> Self {
        Verifier {
            cdp: HashMap::new(),
            exchange: HashMap::new(),
            hosts: Vec::new(),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// A CDP key signing ES256 (P-256), by its name
    /// (`organizations/.../apiKeys/...`).
    pub fn cdp_es256(mut self, name: impl Into<String>, key: p256::ecdsa::VerifyingKey) -> Self {
        self.cdp.insert(name.into(), CdpKey::Es256(key));
        self
    }

    /// A CDP key signing EdDSA (Ed25519), by its name.
    pub fn cdp_ed25519(
        mut self,
        name: impl Into<String>,
        key: ed25519_dalek::VerifyingKey,
    ) -> Self {
        self.cdp.insert(name.into(), CdpKey::Ed25519(key));
        self
    }

    /// A CDP key from its private key as coinbase-advanced-py 1.8.x takes
    /// it: PEM (`EC PRIVATE KEY`, or PKCS#8 holding P-256 or Ed25519), or
    /// base64 of an Ed25519 seed (32 bytes) or seed and public key (64).
    /// Only the public half is kept.
    pub fn cdp_private_key(
        mut self,
        name: impl Into<String>,
        private_key: &str,
    ) -> Result<Self, KeyError> {
        self.cdp
            .insert(name.into(), keys::cdp_from_private(private_key)?);
        Ok(self)
    }

    /// A CDP key from a `PUBLIC KEY` PEM (P-256 or Ed25519).
    pub fn cdp_public_key_pem(
        mut self,
        name: impl Into<String>,
        pem: &str,
    ) -> Result<Self, KeyError> {
        self.cdp
            .insert(name.into(), keys::cdp_from_public_pem(pem)?);
        Ok(self)
    }

    /// A CDP key from the JSON file Coinbase's portal downloads:
    /// `{"name": "organizations/.../apiKeys/...", "privateKey": "..."}`
    /// (newer keys name themselves by `id`).
    pub fn cdp_key_json(mut self, json: &str) -> Result<Self, KeyError> {
        let (name, key) = keys::cdp_from_key_json(json)?;
        self.cdp.insert(name, key);
        Ok(self)
    }

    /// An Exchange key: its secret (the bytes, base64-decoded) and
    /// passphrase.
    pub fn exchange(
        mut self,
        key: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        passphrase: impl Into<String>,
    ) -> Self {
        self.exchange.insert(
            key.into(),
            ExchangeKey {
                secret: secret.into(),
                passphrase: passphrase.into(),
            },
        );
        self
    }

    /// An Exchange key whose secret is given in base64, as Coinbase shows
    /// it.
    pub fn exchange_base64(
        self,
        key: impl Into<String>,
        secret_base64: &str,
        passphrase: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let secret = keys::exchange_secret(secret_base64)?;
        Ok(self.exchange(key, secret, passphrase))
    }

    /// A host a JWT's `uri` may name besides the request's own `Host`,
    /// e.g. `api.coinbase.com` when the mock stands in for it behind a
    /// proxy's `origins`. Compared without regard to case, port included
    /// when given.
    pub fn accept_host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// How many CDP keys it knows.
    pub fn cdp_keys(&self) -> usize {
        self.cdp.len()
    }

    /// How many Exchange keys it knows.
    pub fn exchange_keys(&self) -> usize {
        self.exchange.len()
    }

    /// Runs the mock's clock this many seconds ahead of the wall clock
    /// (behind when negative).
    pub fn clock_offset(self, secs: f64) -> Self {
        self.set_clock_offset(secs);
        self
    }

    /// [`Verifier::clock_offset`] on a running mock.
    pub fn set_clock_offset(&self, secs: f64) {
        self.offset_ms
            .store((secs * 1000.0).round() as i64, Ordering::Relaxed);
    }

    /// The mock's clock, in seconds since the Unix epoch.
    pub fn now(&self) -> f64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        wall + self.offset_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Verifies the credential of one request as received. `target` is
    /// the request-target (origin or absolute form), `headers` all of them
    /// (`Host` included). `Ok(None)`: no credential presented; `Ok(Some)`:
    /// the identity it proved (`jwt:<key name>`, `key:<key>`), as the mock
    /// files balances and orders under.
    pub fn verify(
        &self,
        scheme: Scheme,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<String>, Rejection> {
        match scheme {
            Scheme::AdvancedTrade => self.verify_jwt(method, target, headers),
            Scheme::Exchange => self.verify_hmac(method, target, headers, body),
        }
    }

    fn verify_jwt(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> Result<Option<String>, Rejection> {
        let Some(authorization) = present(headers, "authorization") else {
            return match present(headers, "cb-access-key") {
                Some(_) => Err(Rejection::LegacyKey),
                None => Ok(None),
            };
        };
        let (scheme, token) = authorization
            .split_once([' ', '\t'])
            .ok_or(Rejection::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Rejection::Malformed);
        }
        let token = token.trim_matches([' ', '\t']);
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = json_part(header_b64)?;
        let claims = json_part(claims_b64)?;
        let signature = base64url(sig_b64)?;
        let alg = header.get("alg").and_then(Value::as_str);
        if !matches!(alg, Some("ES256" | "EdDSA")) {
            return Err(Rejection::WrongAlgorithm);
        }
        if header
            .get("nonce")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Rejection::Malformed);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(Rejection::Malformed)?;
        if header.get("kid").and_then(Value::as_str) != Some(sub) {
            return Err(Rejection::Malformed);
        }
        let key = self.cdp.get(sub).ok_or(Rejection::UnknownKey)?;
        if alg != Some(key.alg()) {
            return Err(Rejection::WrongAlgorithm);
        }
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        let valid = match key {
            CdpKey::Es256(vk) => {
                use p256::ecdsa::signature::Verifier as _;
                p256::ecdsa::Signature::from_slice(&signature)
                    .is_ok_and(|sig| vk.verify(signed.as_bytes(), &sig).is_ok())
            }
            CdpKey::Ed25519(vk) => {
                use ed25519_dalek::Verifier as _;
                ed25519_dalek::Signature::from_slice(&signature)
                    .is_ok_and(|sig| vk.verify(signed.as_bytes(), &sig).is_ok())
            }
        };
        if !valid {
            return Err(Rejection::BadSignature);
        }
        if !matches!(
            claims.get("iss").and_then(Value::as_str),
            Some("cdp" | "coinbase-cloud")
        ) {
            return Err(Rejection::WrongIssuer);
        }
        let number = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_f64)
                .ok_or(Rejection::Malformed)
        };
        let (nbf, exp) = (number("nbf")?, number("exp")?);
        let now = self.now();
        if nbf > now + NBF_LEEWAY_SECS {
            return Err(Rejection::NotYetValid);
        }
        if exp <= now {
            return Err(Rejection::Expired);
        }
        if exp - nbf > MAX_JWT_LIFETIME_SECS {
            return Err(Rejection::LifetimeTooLong);
        }
        // `uri`, or a `uris` list (ccxt's Ed25519 tokens) naming it.
        let uris: Vec<&str> = match (claims.get("uri"), claims.get("uris")) {
            (Some(Value::String(uri)), _) => vec![uri.as_str()],
            (None, Some(Value::Array(list))) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !uris
            .iter()
            .any(|uri| self.uri_matches(uri, method, target, headers))
        {
            return Err(Rejection::WrongUri);
        }
        Ok(Some(format!("jwt:{sub}")))
    }

    /// `uri` is `"METHOD host/path"` for this request.
    fn uri_matches(
        &self,
        uri: &str,
        method: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> bool {
        let Some((uri_method, rest)) = uri.split_once(' ') else {
            return false;
        };
        let Some(slash) = rest.find('/') else {
            return false;
        };
        let (uri_host, uri_path) = rest.split_at(slash);
        let (authority, path_and_query) = split_target(target);
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let received_host = syncoord_core::header(headers, "host")
            .map(str::trim)
            .or(authority);
        let host_ok = received_host
            .into_iter()
            .chain(self.hosts.iter().map(String::as_str))
            .any(|h| !h.is_empty() && h.eq_ignore_ascii_case(uri_host));
        uri_method == method && host_ok && uri_path == path
    }

    fn verify_hmac(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<String>, Rejection> {
        let Some(key) = present(headers, "cb-access-key") else {
            return Ok(None);
        };
        let known = self.exchange.get(key).ok_or(Rejection::UnknownKey)?;
        let (Some(sign), Some(timestamp), Some(passphrase)) = (
            present(headers, "cb-access-sign"),
            present(headers, "cb-access-timestamp"),
            present(headers, "cb-access-passphrase"),
        ) else {
            return Err(Rejection::MissingHeader);
        };
        let when: f64 = timestamp.parse().map_err(|_| Rejection::Malformed)?;
        if !when.is_finite() {
            return Err(Rejection::Malformed);
        }
        if (self.now() - when).abs() > EXCHANGE_WINDOW_SECS {
            return Err(Rejection::StaleTimestamp);
        }
        if !bool::from(passphrase.as_bytes().ct_eq(known.passphrase.as_bytes())) {
            return Err(Rejection::BadPassphrase);
        }
        let given = base64::engine::general_purpose::STANDARD
            .decode(sign.as_bytes())
            .map_err(|_| Rejection::BadSignature)?;
        let (_, request_path) = split_target(target);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&known.secret)
            .map_err(|_| Rejection::BadSignature)?;
        mac.update(timestamp.as_bytes());
        mac.update(method.as_bytes());
        mac.update(request_path.as_bytes());
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| Rejection::BadSignature)?;
        Ok(Some(format!("key:{key}")))
    }
}

/// A header's value, trimmed, if present and not blank (as the mock
/// reads credentials elsewhere: a blank one is no credential).
fn present<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    syncoord_core::header(headers, name)
        .map(|v| v.trim_matches([' ', '\t']))
        .filter(|v| !v.is_empty())
}

/// The authority of an absolute-form target, and the path with its
/// query, as received.
fn split_target(target: &str) -> (Option<&str>, &str) {
    match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let after = &target[i + 3..];
            match after.find('/') {
                Some(j) => (Some(&after[..j]), &after[j..]),
                None => match after.find('?') {
                    Some(j) => (Some(&after[..j]), &after[j..]),
                    None => (Some(after), "/"),
                },
            }
        }
        _ => (None, target),
    }
}

fn base64url(part: &str) -> Result<Vec<u8>, Rejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| Rejection::Malformed)
}

fn json_part(part: &str) -> Result<serde_json::Map<String, Value>, Rejection> {
    match serde_json::from_slice(&base64url(part)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed),
    }
}
