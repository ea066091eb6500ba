//! Signing mode: syncoord holds the API keys and signs each call just
//! before the host sends it; bots present only a token.
//!
//! Why: a signature a bot makes starts ageing when the bot signs, not
//! when the call leaves (Advanced Trade JWTs die after 120 s, Exchange
//! signatures after 30 s); an identity read from a bot's headers is not
//! verified; a JWT names the host it was signed for; and secrets copied
//! into every bot leak. Here the secret is in one place, each attempt
//! (retries too) is signed fresh at send time, and the identity a cached
//! private answer is filed under is the credential the token proved.
//!
//! Pieces, all pure (no clock, no randomness, no I/O: the host passes the
//! time and a nonce, and reads env vars and files through a
//! [`SecretSource`]):
//! - `spec`: the `[[credentials]]`, `[[clients]]` and
//!   `[upstreams.signing]` config sections (the proxy's config file
//!   embeds them; their checks are here so the sections travel whole);
//! - `key`: key material in the forms Coinbase hands out;
//! - `jwt`, `exchange`: what is signed, the claims, the HMAC message;
//! - `clients`: tokens and who they belong to;
//! - [`Keyring`]: the loaded keys; [`Keyring::sign`] is what both hosts
//!   call per attempt.

mod clients;
mod exchange;
mod jwt;
mod key;
mod load;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use syncoord_core::TransportError;
use zeroize::Zeroizing;

pub use clients::{
    presented_token, token_sha256_hex, Client, Clients, TokenError, CREDENTIAL_HEADER, TOKEN_HEADER,
};
pub use jwt::JWT_LIFETIME_SECS;
pub use key::KeyError;
pub use load::{load_signing, NoSecrets, SecretFile, SecretFileError, SecretSource, SigningSetup};
pub use spec::{
    check_signing_specs, edge_signing_issues, AbovePriority, AboveShare, ClientSpec,
    CredentialKind, CredentialSpec, SigningSettings, SpecIssue,
};

use crate::url::BaseUrl;
use crate::{Headers, Outgoing};
use key::CdpKey;

/// Request headers that carry a signature, dropped from a bot's request
/// in signing mode (syncoord writes its own).
pub const SIGNATURE_HEADERS: &[&str] = &[
    "authorization",
    "cb-access-key",
    "cb-access-sign",
    "cb-access-timestamp",
    "cb-access-passphrase",
];

/// What a signature covers: one attempt as it goes upstream.
#[derive(Debug, Clone, Copy)]
pub struct SignTarget<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// `host` or `host:port` (the port only when it is not the scheme's
    /// default): the upstream's real host, as the `Host` header names it.
    pub authority: &'a str,
    /// The path upstream receives (base path included), without query.
    pub path: &'a str,
    /// The query without `?`, if the target has one.
    pub query: Option<&'a str>,
    /// The body, byte for byte.
    pub body: &'a [u8],
}

enum Material {
    Cdp {
        key_name: String,
        key: CdpKey,
    },
    Exchange {
        key: String,
        secret: Zeroizing<Vec<u8>>,
        passphrase: Zeroizing<String>,
    },
}

/// One credential syncoord signs with. Its `Debug` shows the name, kind
/// and key id, never the key.
pub struct Signer {
    name: Arc<str>,
    upstream: String,
    material: Material,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("kind", &self.kind())
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The credential's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream it signs for.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// What the credential signs for.
    pub fn kind(&self) -> CredentialKind {
        match self.material {
            Material::Cdp { .. } => CredentialKind::CoinbaseCdp,
            Material::Exchange { .. } => CredentialKind::CoinbaseExchange,
        }
    }

    /// The key's public id: the CDP key name, or the Exchange API key.
    pub fn key_id(&self) -> &str {
        match &self.material {
            Material::Cdp { key_name, .. } => key_name,
            Material::Exchange { key, .. } => key,
        }
    }

    /// `ES256`, `EdDSA` or `HMAC-SHA256`.
    pub fn algorithm(&self) -> &'static str {
        match &self.material {
            Material::Cdp { key, .. } => key.alg(),
            Material::Exchange { .. } => "HMAC-SHA256",
        }
    }

    /// A CDP key's public half (SEC1 for P-256, 32 raw bytes for
    /// Ed25519), for a verifier; `None` for an Exchange secret, which has
    /// no public half.
    pub fn public_key(&self) -> Option<Vec<u8>> {
        match &self.material {
            Material::Cdp { key, .. } => Some(key.public_bytes()),
            Material::Exchange { .. } => None,
        }
    }

    /// The headers that authenticate `target`, signed at `unix_now` with a
    /// fresh `nonce` (random bytes the host draws per attempt).
    pub fn headers(&self, target: &SignTarget<'_>, unix_now: u64, nonce: [u8; 16]) -> Headers {
        match &self.material {
            Material::Cdp { key_name, key } => {
                let token = jwt::token(key_name, key, target, unix_now, nonce);
                vec![("Authorization".to_owned(), format!("Bearer {token}"))].into()
            }
            Material::Exchange {
                key,
                secret,
                passphrase,
            } => {
                let timestamp = unix_now.to_string();
                vec![
                    ("CB-ACCESS-KEY".to_owned(), key.clone()),
                    (
                        "CB-ACCESS-SIGN".to_owned(),
                        exchange::signature(secret, &timestamp, target),
                    ),
                    ("CB-ACCESS-TIMESTAMP".to_owned(), timestamp),
                    ("CB-ACCESS-PASSPHRASE".to_owned(), passphrase.to_string()),
                ]
                .into()
            }
        }
    }
}

/// Why a call could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The call names a credential this host did not load (a config that
    /// changed between the Worker and its Durable Object, say).
    #[error("no credential named `{0}` is loaded on this host")]
    Unknown(String),
}

/// Every credential loaded, by name. Cheap to clone and share between
/// threads.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    signers: Arc<BTreeMap<String, Arc<Signer>>>,
}

impl Keyring {
    /// The credential named `name`, if loaded.
    pub fn get(&self, name: &str) -> Option<&Signer> {
        self.signers.get(name).map(|s| &**s)
    }

    /// Whether no credential is loaded (signing mode is off).
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Every credential, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Signer> {
        self.signers.values().map(|s| &**s)
    }

    /// The headers to send for one attempt of `call` to `base`: the
    /// call's own, plus a signature made now when it is to be signed
    /// ([`Outgoing::sign_as`]). Hosts call this just before each send,
    /// retries included.
    pub fn sign(
        &self,
        call: &Outgoing,
        base: &BaseUrl,
        unix_now: u64,
        nonce: [u8; 16],
    ) -> Result<Headers, SignError> {
        let Some(name) = call.sign_as.as_deref() else {
            return Ok(call.headers.clone());
        };
        let signer = self
            .get(name)
            .ok_or_else(|| SignError::Unknown(name.to_owned()))?;
        let (path, query) = match call.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (call.path_and_query.as_str(), None),
        };
        let full_path = format!("{}{}", base.path, path);
        let authority = base.origin.authority();
        let target = SignTarget {
            method: &call.method,
            authority: &authority,
            path: &full_path,
            query,
            body: &call.body,
        };
        let mut headers = call.headers.clone();
        headers.extend(signer.headers(&target, unix_now, nonce));
        Ok(headers)
    }

    /// What a host sends for one attempt of `call` to `base`: [`Self::sign`]
    /// with the time and a nonce from `clock_and_nonce` (the host's wall
    /// clock in Unix seconds and 16 random bytes), asked for only when the
    /// call is to be signed. A call that cannot be signed (no clock or
    /// nonce, a credential not loaded) never leaves: it ends as
    /// [`TransportError::Connect`], which the core knows is safe to report.
    pub fn attempt_headers(
        &self,
        call: &Outgoing,
        base: &BaseUrl,
        clock_and_nonce: impl FnOnce() -> Result<(u64, [u8; 16]), String>,
    ) -> Result<Headers, TransportError> {
        if call.sign_as.is_none() {
            return Ok(call.headers.clone());
        }
        let not_signed =
            |why: String| TransportError::Connect(format!("not signed, so not sent: {why}"));
        let (unix_now, nonce) = clock_and_nonce().map_err(not_signed)?;
        self.sign(call, base, unix_now, nonce)
            .map_err(|e| not_signed(e.to_string()))
    }

    pub(crate) fn from_signers(signers: Vec<Signer>) -> Self {
        Keyring {
            signers: Arc::new(
                signers
                    .into_iter()
                    .map(|s| (s.name.to_string(), Arc::new(s)))
                    .collect(),
            ),
        }
    }
}
