//! Signing mode at the door: which client a token names, which credential
//! its request is signed with.

use super::validate::sanitize_client;
use super::{Proxy, UpstreamId};
use crate::rejection::{Rejection, RejectionKind};
use crate::signing;

impl Proxy {
    /// The `[[clients]]` entry whose token the request presents
    /// (`X-Syncoord-Token`, or the password of `Proxy-Authorization:
    /// Basic`), `None` without a token. A token that is not a client's is
    /// refused here, before anything reaches upstream. Without any
    /// `[[clients]]` known by a token configured, always `None`.
    pub fn authenticate(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<&signing::Client>, Rejection> {
        // Without `[[clients]]` nothing is authenticated here: a
        // `Proxy-Authorization` is then for no one and stops at this hop,
        // as it always has.
        if !self.signing.clients.has_tokens() {
            return Ok(None);
        }
        let token = signing::presented_token(headers)
            .map_err(|e| Rejection::new(RejectionKind::BadToken, e.to_string()))?;
        if let (Some(_), Some(other)) = (&token, other_identity(headers)) {
            return Err(Rejection::new(
                RejectionKind::MixedCredentials,
                format!(
                    "the request carries a client token and its own `{other}`: in signing mode syncoord signs, so send the token alone"
                ),
            ));
        }
        match token {
            None => Ok(None),
            Some(token) => self.signing.clients.authenticate(&token).map(Some).ok_or_else(|| {
                Rejection::new(
                    RejectionKind::UnknownToken,
                    format!(
                        "the token ({} or the password of Proxy-Authorization) is not a configured client's",
                        signing::TOKEN_HEADER
                    ),
                )
            }),
        }
    }

    /// Whether `[[clients]]` are configured (tokens are checked at all).
    pub fn has_clients(&self) -> bool {
        !self.signing.clients.0.is_empty()
    }

    /// The credential a request to `upstream` is signed with: `None` when
    /// the upstream has no `[[credentials]]` or lets unsigned bots pass.
    pub(super) fn signer_for(
        &self,
        upstream: UpstreamId,
        client: Option<&signing::Client>,
        headers: &[(String, String)],
    ) -> Result<Option<&signing::Signer>, Rejection> {
        if !self.signed[upstream.index()] {
            return Ok(None);
        }
        let up = self.upstream(upstream);
        let Some(client) = client else {
            if up.signing.pass_through {
                return Ok(None);
            }
            return Err(Rejection::new(
                RejectionKind::TokenRequired,
                format!(
                    "upstream `{}` is signed by syncoord: present a client token as {} (or as the password of HTTPS_PROXY, http://NAME:TOKEN@host)",
                    up.name,
                    signing::TOKEN_HEADER
                ),
            ));
        };
        let usable: Vec<&signing::Signer> = client
            .credentials
            .iter()
            .filter_map(|n| self.signing.keyring.get(n))
            .filter(|s| s.upstream() == up.name)
            .collect();
        let names = || {
            usable
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match syncoord_core::header(headers, signing::CREDENTIAL_HEADER)
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            Some(asked) => usable
                .iter()
                .find(|s| s.name() == asked)
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    Rejection::new(
                        RejectionKind::CredentialNotAllowed,
                        format!(
                            "client `{}` may not use credential `{}` on upstream `{}` (it may use: {})",
                            client.name,
                            sanitize_client(asked),
                            up.name,
                            names()
                        ),
                    )
                }),
            None => match usable.as_slice() {
                [one] => Ok(Some(*one)),
                [] => Err(Rejection::new(
                    RejectionKind::NoCredential,
                    format!(
                        "client `{}` has no credential for upstream `{}`",
                        client.name, up.name
                    ),
                )),
                _ => Err(Rejection::new(
                    RejectionKind::ChooseCredential,
                    format!(
                        "client `{}` has several credentials for upstream `{}`: choose one with {}: {}",
                        client.name,
                        up.name,
                        signing::CREDENTIAL_HEADER,
                        names()
                    ),
                )),
            },
        }
    }
}

/// The first header that names an identity of the bot's own, as the bot
/// spelled it: `Authorization` with a scheme and a credential (a bearer
/// token, a JWT), or `CB-ACCESS-KEY`, unless the key it names is a
/// placeholder ([`is_placeholder_key`]). Client libraries that insist on
/// signing (coinbase-advanced-py, ccxt) are given a placeholder key and
/// their signature is dropped; a real key id beside a token is refused.
fn other_identity(headers: &[(String, String)]) -> Option<&str> {
    headers.iter().find_map(|(name, value)| {
        let identity = if name.eq_ignore_ascii_case("authorization") {
            let value = value.trim();
            // A single word (`signed-by-syncoord`) names nobody.
            value.contains([' ', '\t'])
                && !syncoord_wire::key_name("authorization", value)
                    .strip_prefix("jwt:")
                    .is_some_and(is_placeholder_key)
        } else if name.eq_ignore_ascii_case("cb-access-key") {
            !is_placeholder_key(value.trim())
        } else {
            false
        };
        identity.then_some(name.as_str())
    })
}

/// Whether a key id is one of the documented placeholders a bot gives a
/// library that insists on signing: `placeholder`, `syncoord`, or a CDP
/// key name ending in `/syncoord` (`organizations/-/apiKeys/syncoord`).
pub(crate) fn is_placeholder_key(id: &str) -> bool {
    let id = id.trim();
    id.eq_ignore_ascii_case("placeholder")
        || id.eq_ignore_ascii_case("syncoord")
        || id.ends_with("/syncoord")
}
