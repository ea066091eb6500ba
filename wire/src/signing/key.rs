//! Key material as Coinbase hands it out, parsed once at start.
//!
//! Accepted, as coinbase-advanced-py 1.8.x accepts them:
//! - **ES256** (P-256): PEM, SEC1 (`BEGIN EC PRIVATE KEY`, what the CDP
//!   portal downloads) or PKCS#8 (`BEGIN PRIVATE KEY`);
//! - **Ed25519**: base64 of the 32-byte seed or of 64 bytes (seed then
//!   public key, what the portal shows for Ed25519 keys), or PKCS#8 PEM;
//! - the portal's JSON file, `{"name": "organizations/.../apiKeys/...",
//!   "privateKey": "-----BEGIN EC PRIVATE KEY-----\n..."}`;
//! - an Exchange secret: base64 (the HMAC key is its decoded bytes).
//!
//! No error here quotes the material it could not read: errors end up in
//! logs and `check-config` output.

use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use zeroize::Zeroizing;

/// Why key material could not be used. Never carries the material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The CDP portal's JSON file is not what it should be (the parse
    /// error, which quotes no material).
    #[error("the key file is not JSON with string fields `name` and `privateKey` (as the CDP portal downloads it): {0}")]
    NotCdpJson(String),
    /// A PEM block of a kind no Coinbase key comes in.
    #[error("a PEM `{label}` block that is not a P-256 or Ed25519 private key")]
    UnsupportedPem {
        /// The PEM block's label (`BEGIN <label>`).
        label: String,
    },
    /// A PEM block that does not parse.
    #[error("a PEM block whose contents do not parse as its `{label}` label says")]
    BadPem {
        /// The PEM block's label (`BEGIN <label>`).
        label: String,
    },
    /// Neither PEM nor base64.
    #[error("neither a PEM private key nor base64 (an Ed25519 key is base64 of 32 or 64 bytes)")]
    NotBase64,
    /// Base64 of a length no Ed25519 key has (the length).
    #[error("an Ed25519 key is base64 of 32 bytes (seed) or 64 bytes (seed and public key); this one decodes to {0} bytes")]
    Ed25519Length(usize),
    /// Seed and public key that do not belong together.
    #[error("the 64-byte Ed25519 key's second half is not the public key of its first half")]
    Ed25519Mismatch,
    /// An Exchange secret that is not base64.
    #[error("the Exchange secret is not base64 (it is used decoded, as the HMAC key)")]
    SecretNotBase64,
    /// Nothing at all.
    #[error("the value is empty")]
    Empty,
}

/// A CDP (Advanced Trade) private key.
pub(crate) enum CdpKey {
    Es256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl CdpKey {
    /// The JWS `alg` this key signs with.
    pub(crate) fn alg(&self) -> &'static str {
        match self {
            CdpKey::Es256(_) => "ES256",
            CdpKey::Ed25519(_) => "EdDSA",
        }
    }

    /// The JWS signature of `input`: ES256's fixed 64-byte `r || s`
    /// (RFC 7518 3.4, not DER), Ed25519's 64 bytes. Both deterministic
    /// (RFC 6979, RFC 8032): signing needs no random source.
    pub(crate) fn sign(&self, input: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match self {
            CdpKey::Es256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            CdpKey::Ed25519(key) => key.sign(input).to_bytes().to_vec(),
        }
    }

    /// The public half, SEC1/raw bytes: what a verifier is given, and a
    /// fingerprint `check-config` may show.
    pub(crate) fn public_bytes(&self) -> Vec<u8> {
        match self {
            CdpKey::Es256(key) => key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            CdpKey::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
        }
    }
}

/// The portal's JSON key file: key name and private key.
pub(crate) fn parse_cdp_json(text: &str) -> Result<(String, CdpKey), KeyError> {
    #[derive(serde::Deserialize)]
    struct File {
        name: String,
        #[serde(rename = "privateKey")]
        private_key: String,
    }
    // serde_json's message names the position, never the value.
    let file: File =
        serde_json::from_str(text).map_err(|e| KeyError::NotCdpJson(position_only(&e)))?;
    if file.name.trim().is_empty() {
        return Err(KeyError::NotCdpJson("`name` is empty".into()));
    }
    let private_key = Zeroizing::new(file.private_key);
    Ok((
        file.name.trim().to_owned(),
        parse_cdp_private_key(&private_key)?,
    ))
}

/// serde_json's error without any echo of the input.
fn position_only(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!(
            "missing or mistyped field at line {} column {}",
            e.line(),
            e.column()
        ),
        _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
    }
}

/// A CDP private key in any accepted form (see the module docs).
pub(crate) fn parse_cdp_private_key(text: &str) -> Result<CdpKey, KeyError> {
    // A PEM pasted into an env var or a TOML string often keeps its
    // newlines as the two characters `\n`.
    let text: Zeroizing<String> = Zeroizing::new(if text.contains("-----BEGIN") {
        text.replace("\\n", "\n")
    } else {
        text.to_owned()
    });
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    if let Some(label) = pem_label(text) {
        return match label {
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(text)
                .map(|k| CdpKey::Es256(k.into()))
                .map_err(|_| KeyError::BadPem {
                    label: label.into(),
                }),
            "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_pem(text)
                .map(CdpKey::Es256)
                .or_else(|_| ed25519_dalek::SigningKey::from_pkcs8_pem(text).map(CdpKey::Ed25519))
                .map_err(|_| KeyError::UnsupportedPem {
                    label: label.into(),
                }),
            other => Err(KeyError::UnsupportedPem {
                label: other.into(),
            }),
        };
    }
    let bytes = Zeroizing::new(decode_base64(text).ok_or(KeyError::NotBase64)?);
    let seed: [u8; 32] = match bytes.len() {
        32 | 64 => bytes[..32].try_into().map_err(|_| KeyError::NotBase64)?,
        n => return Err(KeyError::Ed25519Length(n)),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    if bytes.len() == 64 && key.verifying_key().as_bytes()[..] != bytes[32..] {
        return Err(KeyError::Ed25519Mismatch);
    }
    Ok(CdpKey::Ed25519(key))
}

/// An Exchange API secret: base64, used decoded.
pub(crate) fn parse_exchange_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    decode_base64(text)
        .map(Zeroizing::new)
        .ok_or(KeyError::SecretNotBase64)
}

/// Standard base64, padded or not, whitespace ignored.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(compact.as_bytes()).ok()
}

/// The label of the first `-----BEGIN <label>-----` line.
fn pem_label(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("-----BEGIN ")?;
    rest.split_once("-----").map(|(label, _)| label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey as _;

    const SEED: [u8; 32] = [7; 32];

    fn p256_key() -> p256::SecretKey {
        p256::SecretKey::from_slice(&[9; 32]).unwrap()
    }

    #[test]
    fn es256_sec1_and_pkcs8_pem_both_parse_to_the_same_key() {
        let sec1 = p256_key().to_sec1_pem(Default::default()).unwrap();
        let pkcs8 = p256_key().to_pkcs8_pem(Default::default()).unwrap();
        let a = parse_cdp_private_key(&sec1).unwrap();
        let b = parse_cdp_private_key(&pkcs8).unwrap();
        assert_eq!(a.alg(), "ES256");
        assert_eq!(a.public_bytes(), b.public_bytes());
        // As pasted into an env var, with literal `\n`.
        let escaped = sec1.replace('\n', "\\n");
        assert_eq!(
            parse_cdp_private_key(&escaped).unwrap().public_bytes(),
            a.public_bytes()
        );
    }

    /// What the CDP portal and `openssl ecparam -genkey` write: SEC1 with
    /// the curve's OID among its parameters (p256's own writer leaves it
    /// out). A throwaway test key.
    #[test]
    fn a_sec1_pem_with_the_curve_oid_parses() {
        let pem = "-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIJ46w/v0jvsQ/3F7akgJ9mOtAZmgzVGilOn0hcPoOSK2oAoGCCqGSM49\n\
AwEHoUQDQgAEP1nEx70OBRdKjZOQH61QSkcTsmNrpOM2ZfLlqtLZ/ikN/tjg8nv9\n\
5au0Wiy26maTWfETKEYRrpefjjfkZQVbXA==\n\
-----END EC PRIVATE KEY-----\n";
        let key = parse_cdp_private_key(pem).unwrap();
        assert_eq!(key.alg(), "ES256");
        assert_eq!(key.public_bytes().len(), 65, "an uncompressed P-256 point");
    }

    #[test]
    fn ed25519_base64_of_32_or_64_bytes_and_pkcs8_parse() {
        let key = ed25519_dalek::SigningKey::from_bytes(&SEED);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut both = SEED.to_vec();
        both.extend_from_slice(key.verifying_key().as_bytes());
        let pkcs8 = key.to_pkcs8_pem(Default::default()).unwrap();
        for text in [b64.encode(SEED), b64.encode(&both), pkcs8.to_string()] {
            let parsed = parse_cdp_private_key(&text).unwrap();
            assert_eq!(parsed.alg(), "EdDSA");
            assert_eq!(parsed.public_bytes(), key.verifying_key().to_bytes());
        }
        both[40] ^= 1;
        assert_eq!(
            parse_cdp_private_key(&b64.encode(&both)).err(),
            Some(KeyError::Ed25519Mismatch)
        );
        assert_eq!(
            parse_cdp_private_key(&b64.encode([1u8; 48])).err(),
            Some(KeyError::Ed25519Length(48))
        );
    }

    #[test]
    fn the_portal_json_gives_name_and_key() {
        let pem = p256_key().to_sec1_pem(Default::default()).unwrap();
        let json =
            serde_json::json!({"name": "organizations/o/apiKeys/k", "privateKey": pem.as_str()});
        let (name, key) = parse_cdp_json(&json.to_string()).unwrap();
        assert_eq!(name, "organizations/o/apiKeys/k");
        assert_eq!(key.alg(), "ES256");
    }

    #[test]
    fn errors_never_quote_the_material() {
        let pem = p256_key().to_sec1_pem(Default::default()).unwrap();
        let body: String = pem.lines().nth(1).unwrap().to_owned();
        let broken = pem.replace(&body[..20], "AAAAAAAAAAAAAAAAAAAA");
        let cases = [
            parse_cdp_json(&format!(
                "{{\"name\": 5, \"privateKey\": {:?}}}",
                pem.as_str()
            ))
            .err(),
            parse_cdp_json(&format!("{{\"privateKey\": {:?}", pem.as_str())).err(),
            parse_cdp_private_key(&broken).err(),
            parse_cdp_private_key(&format!("{body}!")).err(),
        ];
        for e in cases {
            let shown = e.expect("each case is an error").to_string();
            assert!(!shown.contains(&body[20..40]), "{shown}");
        }
    }

    #[test]
    fn exchange_secrets_are_base64() {
        assert_eq!(&parse_exchange_secret("c2VjcmV0").unwrap()[..], b"secret");
        assert_eq!(
            parse_exchange_secret("not base64!").err(),
            Some(KeyError::SecretNotBase64)
        );
        assert_eq!(parse_exchange_secret("  ").err(), Some(KeyError::Empty));
    }
}
