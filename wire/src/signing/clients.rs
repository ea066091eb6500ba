//! Bots that authenticate to syncoord: a token per `[[clients]]` entry,
//! presented as `X-Syncoord-Token`, or as the password of
//! `Proxy-Authorization: Basic` (what `HTTPS_PROXY=http://bot7:TOKEN@host`
//! makes an unmodified HTTP client send).
//!
//! Only the token's SHA-256 is kept. A presented token is hashed and
//! compared with every client's hash in constant time, all of them, so
//! neither the comparison nor which entry matched shows in the timing.

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use syncoord_core::header;

use super::spec::{AbovePriority, AboveShare};

/// Request header carrying a client's token.
pub const TOKEN_HEADER: &str = "X-Syncoord-Token";
/// Request header choosing one of the client's credentials.
pub const CREDENTIAL_HEADER: &str = "X-Syncoord-Credential";

/// Longest token accepted (a token is a random string, not a document).
const MAX_TOKEN_LEN: usize = 512;

/// The least entropy a token read from `token_env` may have: a token is
/// a bearer credential for signing keys, so it must not be guessable
/// (`syncoord token` makes 256 bits).
pub const MIN_TOKEN_BITS: u32 = 128;

/// A conservative estimate of a token's entropy in bits: each character
/// counted as if drawn at random from the smallest usual alphabet that
/// holds them all (hex digits, digits, one case of letters,
/// alphanumerics, base64, printable ASCII). A token that repeats itself
/// counts only its first period (`abcabcabc` is `abc`); one with fewer
/// than half the distinct characters a random draw shows counts each
/// character as one of those it uses (`aaaa...` counts nothing). A
/// 32-hex-digit random token (128 bits) passes [`MIN_TOKEN_BITS`]; a
/// word, a date or a short password does not.
pub fn estimated_entropy_bits(token: &str) -> u32 {
    let all: Vec<char> = token.chars().collect();
    // The shortest period p with all[i] == all[i - p] for every i >= p.
    let period = (1..=all.len())
        .find(|&p| (p..all.len()).all(|i| all[i] == all[i - p]))
        .unwrap_or(all.len());
    let chars = &all[..period];
    let every = |f: fn(&char) -> bool| chars.iter().all(f);
    let alphabet: usize = if every(char::is_ascii_digit) {
        10
    } else if every(char::is_ascii_hexdigit)
        && (every(|c| !c.is_ascii_uppercase()) || every(|c| !c.is_ascii_lowercase()))
    {
        16
    } else if every(char::is_ascii_lowercase) || every(char::is_ascii_uppercase) {
        26
    } else if every(char::is_ascii_alphanumeric) {
        62
    } else if every(|c| c.is_ascii_alphanumeric() || "+/=-_".contains(*c)) {
        64
    } else {
        95
    };
    let mut distinct = chars.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let drawn_from = if distinct.len() * 2 < chars.len().min(alphabet) {
        distinct.len()
    } else {
        alphabet
    };
    (chars.len() as f64 * (drawn_from as f64).log2()).floor() as u32
}

/// Hex SHA-256 of `token`: a client's `token_sha256`.
pub fn token_sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 64 hex digits as 32 bytes.
pub(crate) fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A `[[clients]]` entry, ready to authenticate.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's configured name.
    pub name: Arc<str>,
    /// Its token's SHA-256; `None` for a client known by `api_keys`.
    hash: Option<[u8; 32]>,
    /// The credentials it may use, by name.
    pub credentials: Vec<String>,
    /// Its `max_priority` (a class name), and whether a request above it
    /// is refused rather than lowered.
    pub max_priority: Option<(String, AbovePriority)>,
    /// Its `share` of each bucket, and what a request over it gets.
    pub share: Option<(f64, AboveShare)>,
    /// The API key names it is known by when it signs for itself.
    pub api_keys: Vec<String>,
}

impl Client {
    /// The client's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn new(name: &str, hash: Option<[u8; 32]>, credentials: Vec<String>) -> Self {
        Client {
            name: Arc::from(name),
            hash,
            credentials,
            max_priority: None,
            share: None,
            api_keys: Vec::new(),
        }
    }
}

/// Every configured client.
#[derive(Debug, Clone, Default)]
pub struct Clients(pub Vec<Client>);

impl Clients {
    /// The client whose token this is. Every entry is compared, in
    /// constant time, whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<&Client> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for client in &self.0 {
            if client.hash.is_some_and(|h| bool::from(h.ct_eq(&digest))) {
                found = Some(client);
            }
        }
        found
    }

    /// Whether any client is known by a token (else no token is read).
    pub fn has_tokens(&self) -> bool {
        self.0.iter().any(|c| c.hash.is_some())
    }

    /// The client known by API key name `key` (a bot signing for itself;
    /// `key` bare, without the `key:`/`jwt:` prefix of
    /// [`crate::key_name`]).
    pub fn by_api_key(&self, key: &str) -> Option<&Client> {
        self.0.iter().find(|c| c.api_keys.iter().any(|k| k == key))
    }
}

/// Why the token a request presents cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `Proxy-Authorization` with another scheme than `Basic`.
    #[error("`Proxy-Authorization` must be `Basic` with the token as its password (as `http://NAME:TOKEN@host` makes clients send it)")]
    NotBasic,
    /// A `Basic` value that does not decode to `name:token`.
    #[error("`Proxy-Authorization: Basic` is not base64 of `name:token`")]
    BadBasic,
    /// Empty, or longer than any token issued.
    #[error("the token is empty or longer than {MAX_TOKEN_LEN} bytes")]
    Length,
    /// Both places carry a token, and they differ.
    #[error("`X-Syncoord-Token` and `Proxy-Authorization` carry different tokens: send one")]
    TwoTokens,
}

/// The token a request presents, if any.
pub fn presented_token(
    headers: &[(String, String)],
) -> Result<Option<Zeroizing<String>>, TokenError> {
    let direct = header(headers, TOKEN_HEADER).map(|t| Zeroizing::new(t.trim().to_owned()));
    let basic = match header(headers, "proxy-authorization") {
        None => None,
        Some(value) => Some(basic_password(value)?),
    };
    let token = match (direct, basic) {
        (Some(a), Some(b)) if *a != *b => return Err(TokenError::TwoTokens),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    match token {
        Some(t) if t.is_empty() || t.len() > MAX_TOKEN_LEN => Err(TokenError::Length),
        other => Ok(other),
    }
}

/// The password of a `Basic` credential (RFC 7617: `user-id:password`,
/// the user-id holds no `:`).
fn basic_password(value: &str) -> Result<Zeroizing<String>, TokenError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).ok_or(TokenError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::NotBasic);
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| TokenError::BadBasic)?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| TokenError::BadBasic)?;
    let (_user, password) = text.split_once(':').ok_or(TokenError::BadBasic)?;
    // `user:pass@` in a URL is percent-encoded; clients decode it before
    // they build the header, so what arrives is the token itself.
    Ok(Zeroizing::new(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn a_token_comes_from_the_header_or_the_basic_password() {
        let t = presented_token(&h(&[("x-syncoord-token", " tok ")])).unwrap();
        assert_eq!(t.as_deref().map(String::as_str), Some("tok"));
        let t = presented_token(&h(&[("Proxy-Authorization", &basic("bot7:s3:cr3t"))])).unwrap();
        assert_eq!(t.as_deref().map(String::as_str), Some("s3:cr3t"));
        assert_eq!(presented_token(&h(&[])).unwrap(), None);
        assert_eq!(
            presented_token(&h(&[("Proxy-Authorization", "Bearer x")])).err(),
            Some(TokenError::NotBasic)
        );
        assert_eq!(
            presented_token(&h(&[("Proxy-Authorization", "Basic !!")])).err(),
            Some(TokenError::BadBasic)
        );
        assert_eq!(
            presented_token(&h(&[
                ("X-Syncoord-Token", "a"),
                ("Proxy-Authorization", &basic("u:b"))
            ]))
            .err(),
            Some(TokenError::TwoTokens)
        );
        assert_eq!(
            presented_token(&h(&[("X-Syncoord-Token", "")])).err(),
            Some(TokenError::Length)
        );
    }

    #[test]
    fn only_the_right_token_authenticates_its_client() {
        let hash = |t: &str| parse_sha256_hex(&token_sha256_hex(t)).unwrap();
        let clients = Clients(vec![
            Client::new("a", Some(hash("token-a")), vec!["x".into()]),
            Client::new("b", Some(hash("token-b")), vec!["y".into()]),
        ]);
        assert_eq!(&*clients.authenticate("token-b").unwrap().name, "b");
        assert_eq!(&*clients.authenticate("token-a").unwrap().name, "a");
        assert!(clients.authenticate("token-c").is_none());
        assert!(clients.authenticate("token-a ").is_none());
    }

    #[test]
    fn weak_tokens_score_under_128_bits_and_random_ones_over() {
        for weak in [
            "x",
            "hunter2",
            "correct-horse",
            "password",
            "2026-12-07",
            "0123456789012345678901234567890123456789",
            &"a".repeat(200),
            &"password".repeat(20),
            &"Tr0ub4dor&3".repeat(5),
            "abcdefghijklmnopqrstuvwxyz",
        ] {
            let bits = estimated_entropy_bits(weak);
            assert!(bits < MIN_TOKEN_BITS, "{weak:?} scored {bits} bits");
        }
        // What `syncoord token` makes (256 bits of hex), 128 bits of hex,
        // base64 of 32 bytes, a long random alphanumeric string.
        for strong in [
            "3f1c9a0be24d7785c6a1f0e9d3b2c4a5968778695a4b3c2d1e0f9e8d7c6b5a49",
            "9e107d9d372bb6826bd81d3542a419d6",
            "q2J3mK9vX1tLr8sYb5wZ0nHc4fGd7aEu6iPo1lQx2Ak=",
            "Zk4vN8rTq2LmW6yXc9BpH3sJd5FgA7eU",
        ] {
            let bits = estimated_entropy_bits(strong);
            assert!(bits >= MIN_TOKEN_BITS, "{strong:?} scored {bits} bits");
        }
    }

    #[test]
    fn sha256_hex_round_trips_and_rejects_bad_digits() {
        // printf %s test | sha256sum
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(token_sha256_hex("test"), hex);
        assert!(parse_sha256_hex(hex).is_some());
        assert!(parse_sha256_hex(&hex.to_uppercase()).is_some());
        assert!(parse_sha256_hex(&hex[1..]).is_none());
        assert!(parse_sha256_hex(&hex.replace('9', "g")).is_none());
    }
}
