//! Signing mode on the edge: the headers of one attempt, signed just
//! before the Durable Object sends it with `fetch`. Every attempt passes
//! through here, retries included, so each carries a signature made when
//! it leaves.
//!
//! Pure (the time and the nonce are passed in), so it is tested natively;
//! the Worker calls it with `Date.now()` and 16 bytes from
//! `crypto.getRandomValues`.

use syncoord_core::TransportError;
use syncoord_wire::{BaseUrl, Headers, Keyring, Outgoing};

/// What an upstream's calls are signed with: the keys this isolate
/// loaded, and the base URL whose host and path the signatures name.
#[derive(Debug, Clone)]
pub struct Signing {
    pub keyring: Keyring,
    pub base: BaseUrl,
}

impl Signing {
    /// The headers to send for one attempt of `call`: its own, plus a
    /// signature made at `unix_now` when the call is to be signed (only
    /// then is a `nonce` drawn). A
    /// call that cannot be signed (a credential this isolate did not
    /// load, or no random nonce to be had) ends as a failure to connect:
    /// nothing has left, which the core knows is safe to tell the bot.
    pub fn headers(
        &self,
        call: &Outgoing,
        unix_now: u64,
        nonce: impl FnOnce() -> Result<[u8; 16], String>,
    ) -> Result<Headers, TransportError> {
        self.keyring.attempt_headers(call, &self.base, || {
            let nonce = nonce().map_err(|e| format!("no random nonce: {e}"))?;
            Ok((unix_now, nonce))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{load, tests as settings};
    use syncoord_proxy::Proxy;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn proxy() -> Proxy {
        load(Some(settings::SIGNED), None, &settings::worker_secrets()).expect("loads")
    }

    /// The call the Durable Object gets for a bot's request, and how its
    /// upstream's calls are signed.
    fn routed(proxy: &Proxy, target: &str, headers: &[(&str, &str)]) -> (Outgoing, Signing) {
        let forward = proxy
            .route(None, "GET", target, &h(headers), Vec::new())
            .expect("routed");
        let signing = Signing {
            keyring: proxy.keyring().clone(),
            base: proxy.base_url(forward.upstream).clone(),
        };
        (forward.outgoing, signing)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        syncoord_core::header(headers, name)
    }

    #[test]
    fn a_tokened_call_is_signed_for_the_upstreams_real_host_and_path() {
        let proxy = proxy();
        let (call, signing) = routed(
            &proxy,
            "/api/v3/brokerage/accounts?limit=1",
            &[("x-syncoord-token", "7c1e9a40d2b35f68e0a4c7d91b3f5e26")],
        );
        assert_eq!(call.sign_as.as_deref(), Some("desk-es"));
        let headers = signing
            .headers(&call, 1_764_000_000, || Ok([7; 16]))
            .expect("signed");
        let auth = header(&headers, "authorization").expect("signed");
        let claims = auth
            .strip_prefix("Bearer ")
            .and_then(|jwt| jwt.split('.').nth(1))
            .expect("a JWT");
        use base64::Engine;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .expect("base64url"),
        )
        .expect("JSON");
        assert_eq!(
            claims["uri"],
            "GET 127.0.0.1:9/base/api/v3/brokerage/accounts"
        );
        assert_eq!(claims["sub"], "organizations/o/apiKeys/es");
        assert_eq!(claims["nbf"], 1_764_000_000);
        assert_eq!(header(&headers, "x-syncoord-token"), None);
        // A retry passes through here again: a fresh signature each time.
        let again = signing
            .headers(&call, 1_764_000_001, || Ok([8; 16]))
            .expect("signed");
        assert_ne!(header(&again, "authorization"), Some(auth));
    }

    #[test]
    fn an_exchange_call_gets_the_cb_access_headers() {
        let proxy = proxy();
        let (call, signing) = routed(
            &proxy,
            "/exchange/accounts",
            &[("x-syncoord-token", "7c1e9a40d2b35f68e0a4c7d91b3f5e26")],
        );
        assert_eq!(call.sign_as.as_deref(), Some("exch"));
        let headers = signing
            .headers(&call, 1_764_000_000, || Ok([1; 16]))
            .expect("signed");
        assert_eq!(header(&headers, "cb-access-key"), Some("exchange-key"));
        assert_eq!(header(&headers, "cb-access-timestamp"), Some("1764000000"));
        assert_eq!(
            header(&headers, "cb-access-passphrase"),
            Some("pass phrase")
        );
        assert!(header(&headers, "cb-access-sign").is_some());
    }

    #[test]
    fn an_unsigned_call_goes_as_it_came_and_needs_no_nonce() {
        let proxy = load(Some(settings::SIGNED), None, &settings::worker_secrets()).expect("loads");
        let config = proxy.config().clone();
        let plain = Proxy::new(syncoord_proxy::ProxyConfig {
            credentials: Vec::new(),
            clients: Vec::new(),
            ..config
        })
        .expect("loads");
        let (call, signing) = routed(
            &plain,
            "/api/v3/brokerage/accounts",
            &[("authorization", "Bearer b")],
        );
        assert_eq!(call.sign_as, None);
        let headers = signing
            .headers(&call, 0, || panic!("an unsigned call draws no nonce"))
            .expect("not signed, so sent as is");
        assert_eq!(headers, call.headers);
    }

    #[test]
    fn a_call_that_cannot_be_signed_fails_before_it_is_sent() {
        let proxy = proxy();
        let (mut call, signing) = routed(
            &proxy,
            "/api/v3/brokerage/accounts",
            &[("x-syncoord-token", "e4b29d07a1c6f35d8b0e2a9c71f4d6b3")],
        );
        let no_nonce = signing.headers(&call, 0, || Err("getRandomValues threw".into()));
        assert!(
            matches!(&no_nonce, Err(TransportError::Connect(m)) if m.contains("getRandomValues threw")),
            "{no_nonce:?}"
        );
        call.sign_as = Some("gone".into());
        let unknown = signing.headers(&call, 0, || Ok([0; 16]));
        assert!(
            matches!(&unknown, Err(TransportError::Connect(m)) if m.contains("`gone`")),
            "{unknown:?}"
        );
    }
}
