//! Private and public keys in the formats Coinbase hands out and
//! coinbase-advanced-py 1.8.x accepts, turned into the public half the
//! verifier needs. Errors say which format was tried, never what the key
//! held.

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};

use super::CdpKey;

/// Why a key could not be read. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, and not base64 of an Ed25519 seed.
    #[error("the private key is neither PEM nor base64 of 32 or 64 bytes (an Ed25519 key)")]
    NotPemNorBase64,
    /// Base64 that decodes to the wrong length for Ed25519.
    #[error("an Ed25519 key in base64 must decode to 32 or 64 bytes, got {0}")]
    Ed25519Length(usize),
    /// PEM, but no P-256 or Ed25519 key in a form we read.
    #[error("the PEM is not a P-256 key (`EC PRIVATE KEY` or PKCS#8) or an Ed25519 key (PKCS#8)")]
    UnsupportedPem,
    /// A public key PEM that is neither P-256 nor Ed25519.
    #[error("the public key is not a P-256 or Ed25519 `PUBLIC KEY` PEM")]
    UnsupportedPublicPem,
    /// A key file from the Coinbase portal that is not what it downloads.
    #[error("the key file is not Coinbase's JSON ({{\"name\": ..., \"privateKey\": ...}}): {0}")]
    KeyJson(String),
    /// Exchange secrets are base64.
    #[error("the Exchange secret is not base64")]
    SecretNotBase64,
}

/// The public half of a CDP private key given as coinbase-advanced-py
/// takes it: PEM (`EC PRIVATE KEY`, or PKCS#8 `PRIVATE KEY` holding P-256
/// or Ed25519), else base64 of an Ed25519 seed (32 bytes) or seed and
/// public key (64 bytes; only the seed is used, as there).
pub(crate) fn cdp_from_private(text: &str) -> Result<CdpKey, KeyError> {
    // coinbase-advanced-py decodes `\n` escapes (`unicode_escape`), so a
    // PEM pasted into one line of an env file works there; here too.
    let text = text.replace("\\n", "\n");
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        if let Ok(secret) = p256::SecretKey::from_sec1_pem(trimmed) {
            return Ok(CdpKey::Es256(p256::ecdsa::VerifyingKey::from(
                secret.public_key(),
            )));
        }
        if let Ok(secret) =
            <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(trimmed)
        {
            return Ok(CdpKey::Es256(p256::ecdsa::VerifyingKey::from(
                secret.public_key(),
            )));
        }
        if let Ok(signing) = ed25519_dalek::SigningKey::from_pkcs8_pem(trimmed) {
            return Ok(CdpKey::Ed25519(signing.verifying_key()));
        }
        return Err(KeyError::UnsupportedPem);
    }
    let joined: String = trimmed.split_whitespace().collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(joined.as_bytes())
        .map_err(|_| KeyError::NotPemNorBase64)?;
    let seed: [u8; 32] = match raw.len() {
        32 | 64 => raw[..32]
            .try_into()
            .map_err(|_| KeyError::Ed25519Length(raw.len()))?,
        n => return Err(KeyError::Ed25519Length(n)),
    };
    Ok(CdpKey::Ed25519(
        ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key(),
    ))
}

/// A `PUBLIC KEY` PEM (SubjectPublicKeyInfo) holding P-256 or Ed25519.
pub(crate) fn cdp_from_public_pem(text: &str) -> Result<CdpKey, KeyError> {
    let trimmed = text.trim();
    if let Ok(key) =
        <p256::ecdsa::VerifyingKey as p256::pkcs8::DecodePublicKey>::from_public_key_pem(trimmed)
    {
        return Ok(CdpKey::Es256(key));
    }
    if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(trimmed) {
        return Ok(CdpKey::Ed25519(key));
    }
    Err(KeyError::UnsupportedPublicPem)
}

/// The key name and public half from the JSON Coinbase's portal
/// downloads: `name` (or, for newer keys, `id`) and `privateKey`, read as
/// coinbase-advanced-py's `key_file` reads it.
pub(crate) fn cdp_from_key_json(text: &str) -> Result<(String, CdpKey), KeyError> {
    #[derive(serde::Deserialize)]
    struct KeyJson {
        name: Option<String>,
        id: Option<String>,
        #[serde(rename = "privateKey")]
        private_key: Option<String>,
    }
    // serde_json's message names a line and column, never the content.
    let parsed: KeyJson =
        serde_json::from_str(text).map_err(|e| KeyError::KeyJson(format!("invalid JSON ({e})")))?;
    let name = parsed
        .name
        .filter(|n| !n.is_empty())
        .or(parsed.id.filter(|n| !n.is_empty()))
        .ok_or_else(|| KeyError::KeyJson("no `name` (or `id`)".to_owned()))?;
    let private = parsed
        .private_key
        .ok_or_else(|| KeyError::KeyJson("no `privateKey`".to_owned()))?;
    Ok((name, cdp_from_private(&private)?))
}

/// An Exchange secret as Coinbase shows it: base64 (whitespace ignored).
pub(crate) fn exchange_secret(text: &str) -> Result<Vec<u8>, KeyError> {
    let joined: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined.as_bytes())
        .map_err(|_| KeyError::SecretNotBase64)
}

/// A P-256 private key as an `EC PRIVATE KEY` PEM the way OpenSSL and
/// Coinbase's portal write it, with the curve's OID: what a test hands a
/// real client (RustCrypto's `to_sec1_pem` leaves the OID out, and
/// Python's `cryptography`, under coinbase-advanced-py and ccxt, refuses
/// a key without it).
pub fn sec1_pem(secret: &p256::SecretKey) -> String {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    // RFC 5915 ECPrivateKey: SEQUENCE { version 1, privateKey OCTET
    // STRING (32), [0] namedCurve prime256v1 (1.2.840.10045.3.1.7),
    // [1] publicKey BIT STRING (the uncompressed point, 65) }: 119 bytes.
    let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(&secret.to_bytes());
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
    der.extend_from_slice(secret.public_key().to_encoded_point(false).as_bytes());
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn p256_secret() -> p256::SecretKey {
        p256::SecretKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn es256(key: &CdpKey) -> p256::ecdsa::VerifyingKey {
        match key {
            CdpKey::Es256(k) => *k,
            CdpKey::Ed25519(_) => panic!("expected a P-256 key"),
        }
    }

    fn ed25519(key: &CdpKey) -> ed25519_dalek::VerifyingKey {
        match key {
            CdpKey::Ed25519(k) => *k,
            CdpKey::Es256(_) => panic!("expected an Ed25519 key"),
        }
    }

    #[test]
    fn p256_sec1_and_pkcs8_pem_give_the_public_half() {
        let secret = p256_secret();
        let want = p256::ecdsa::VerifyingKey::from(secret.public_key());
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        assert_eq!(es256(&cdp_from_private(&sec1).unwrap()), want);
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(es256(&cdp_from_private(&pkcs8).unwrap()), want);
        // One line with `\n` escapes, as in an env file.
        let escaped = sec1.replace('\n', "\\n");
        assert_eq!(es256(&cdp_from_private(&escaped).unwrap()), want);
        let public = want.to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(es256(&cdp_from_public_pem(&public).unwrap()), want);
    }

    #[test]
    fn sec1_with_the_curve_oid_as_coinbase_writes_it() {
        let secret = p256_secret();
        let want = p256::ecdsa::VerifyingKey::from(secret.public_key());
        let pem = sec1_pem(&secret);
        assert_ne!(pem, secret.to_sec1_pem(LineEnding::LF).unwrap().as_str());
        assert_eq!(es256(&cdp_from_private(&pem).unwrap()), want);
    }

    #[test]
    fn ed25519_base64_32_or_64_bytes_and_pkcs8_pem() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let want = signing.verifying_key();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(ed25519(&cdp_from_private(&b64(&[9u8; 32])).unwrap()), want);
        let mut both = [9u8; 32].to_vec();
        both.extend_from_slice(want.as_bytes());
        assert_eq!(ed25519(&cdp_from_private(&b64(&both)).unwrap()), want);
        let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_eq!(ed25519(&cdp_from_private(&pem).unwrap()), want);
        let public = want.to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(ed25519(&cdp_from_public_pem(&public).unwrap()), want);
        assert_eq!(
            cdp_from_private(&b64(&[1u8; 16])).unwrap_err(),
            KeyError::Ed25519Length(16)
        );
        assert_eq!(
            cdp_from_private("not a key!").unwrap_err(),
            KeyError::NotPemNorBase64
        );
        assert_eq!(
            cdp_from_private(
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
            )
            .unwrap_err(),
            KeyError::UnsupportedPem
        );
    }

    #[test]
    fn the_portal_json_names_the_key_and_errors_never_show_the_key() {
        let pem = p256_secret().to_sec1_pem(LineEnding::LF).unwrap();
        let json = serde_json::json!({
            "name": "organizations/o/apiKeys/k",
            "privateKey": pem.as_str(),
        })
        .to_string();
        let (name, key) = cdp_from_key_json(&json).unwrap();
        assert_eq!(name, "organizations/o/apiKeys/k");
        assert_eq!(
            es256(&key),
            p256::ecdsa::VerifyingKey::from(p256_secret().public_key())
        );
        let by_id = serde_json::json!({ "id": "uuid-1", "privateKey": pem.as_str() }).to_string();
        assert_eq!(cdp_from_key_json(&by_id).unwrap().0, "uuid-1");
        let body: String = pem.lines().nth(1).unwrap().to_owned();
        for bad in [
            format!("{{\"privateKey\": {:?}}}", pem.as_str()),
            format!("{{\"name\": \"n\", \"privateKey\": {:?}", pem.as_str()),
            "{\"name\": \"n\"}".to_owned(),
        ] {
            let err = cdp_from_key_json(&bad).unwrap_err().to_string();
            assert!(!err.contains(&body), "an error showed key material");
        }
    }
}
