//! What leaves syncoord for upstream: the request as it is sent
//! ([`Outgoing`], its [`Headers`]), whose credential it carries
//! ([`presented`], [`credential_identity`]), and signing mode, where
//! syncoord holds the keys and signs each attempt ([`Keyring`]).
//!
//! Why a crate of its own: the library a Rust bot embeds (`syncoord`)
//! needs exactly these pieces, and not the configuration file, the
//! endpoints or the metrics the proxy crate (`syncoord-proxy`) adds on
//! top. Nothing here does I/O, reads a clock or draws randomness: a host
//! passes the time and a nonce, and reads secrets through a
//! [`SecretSource`]. It builds for `wasm32-unknown-unknown`, so the
//! Worker signs with the same code as the daemon.
//!
//! - [`Outgoing`], [`Headers`]: the request as sent;
//! - [`BaseUrl`], [`Origin`]: where an upstream is, and the little URL
//!   parsing the proxy needs;
//! - identity ([`presented`], [`key_name`], [`identity_of`],
//!   [`credential_identity`]) and which headers stop at a hop
//!   ([`HopHeaders`], [`strip_hop_headers`]);
//! - signing ([`Keyring`], [`Signer`], [`SecretSource`], the
//!   `[[credentials]]`/`[[clients]]` specs and their checks);
//! - [`redact`]: secrets out of log text (every host's log lines pass it);
//! - [`ClusterSettings`]: the `[cluster]` section, what a host needs to
//!   reach the shared store.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cluster;
mod headers;
mod identity;
mod outgoing;
mod redact;
mod signing;
mod url;

pub use cluster::{ClusterSettings, Fingerprint};
pub use headers::Headers;
pub use identity::{
    credential_identity, identity_of, key_name, presented, strip_hop_headers, HopHeaders, Presented,
};
pub use outgoing::Outgoing;
pub use redact::{is_secret_header, redact, REDACTED, SECRET_HEADERS};
pub use signing::{
    check_signing_specs, edge_signing_issues, load_signing, presented_token, token_sha256_hex,
    AbovePriority, AboveShare, Client, ClientSpec, Clients, CredentialKind, CredentialSpec,
    KeyError, Keyring, NoSecrets, SecretFile, SecretFileError, SecretSource, SignError, SignTarget,
    Signer, SigningSettings, SigningSetup, SpecIssue, TokenError, CREDENTIAL_HEADER,
    JWT_LIFETIME_SECS, SIGNATURE_HEADERS, TOKEN_HEADER,
};
pub use url::{split_absolute, BaseUrl, BaseUrlError, Origin, UrlError};
