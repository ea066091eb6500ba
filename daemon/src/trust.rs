//! What each client family needs to go through syncoord's `CONNECT`
//! interception: the proxy address and the trust of the local CA. One
//! list, printed by `syncoord ca` and logged when the daemon creates or
//! finds its CA at start, so the two never disagree.
//!
//! Why each family needs its own line: Python's `requests` (sync ccxt,
//! coinbase-advanced-py) reads `REQUESTS_CA_BUNDLE`; ccxt's async client
//! (aiohttp) ignores both that and `SSL_CERT_FILE`, and fails with an
//! empty `ExchangeNotAvailable` (really `CERTIFICATE_VERIFY_FAILED`)
//! unless the `cafile` option names the CA and the proxy comes from
//! `aiohttp_trust_env` or `httpsProxy`; Node adds to its roots from
//! `NODE_EXTRA_CA_CERTS` but takes no proxy from the environment, so
//! ccxt there needs `httpsProxy`.

use std::path::Path;

/// One client family and the settings it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSetting {
    /// Who this is for, e.g. `Python ccxt (async)`.
    pub family: &'static str,
    /// What to set, ready to paste.
    pub settings: String,
}

/// The settings for every client family, for a CA at `pem` and a proxy
/// at `proxy` (`http://host:port`).
pub fn trust_settings(pem: &Path, proxy: &str) -> Vec<TrustSetting> {
    let pem = pem.display();
    let s = |family, settings: String| TrustSetting { family, settings };
    vec![
        s(
            "Python requests, coinbase-advanced-py",
            format!("HTTPS_PROXY={proxy} REQUESTS_CA_BUNDLE={pem} SSL_CERT_FILE={pem}"),
        ),
        s(
            "Python ccxt (sync)",
            format!(
                "HTTPS_PROXY={proxy} REQUESTS_CA_BUNDLE={pem} and the option {{'requests_trust_env': True}}"
            ),
        ),
        s(
            "Python ccxt (async, aiohttp): env",
            format!(
                "HTTPS_PROXY={proxy} and the options {{'aiohttp_trust_env': True, 'cafile': '{pem}'}}"
            ),
        ),
        s(
            "Python ccxt (async, aiohttp): options only",
            format!("{{'httpsProxy': '{proxy}', 'cafile': '{pem}'}}"),
        ),
        s(
            "ccxt from JSON (ccxt_config and ccxt_async_config)",
            format!(
                "both dicts: {{\"httpsProxy\": \"{proxy}\", \"cafile\": \"{pem}\"}}; the sync one also \"requests_trust_env\": true, with REQUESTS_CA_BUNDLE={pem}"
            ),
        ),
        s(
            "Node ccxt",
            format!("NODE_EXTRA_CA_CERTS={pem} and the option {{ httpsProxy: '{proxy}' }}"),
        ),
        s(
            "curl",
            format!("--proxy {proxy} --cacert {pem} (or HTTPS_PROXY and CURL_CA_BUNDLE)"),
        ),
        s("Go", format!("HTTPS_PROXY={proxy} SSL_CERT_FILE={pem}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_names_the_ca_and_the_proxy_or_its_env() {
        let all = trust_settings(
            Path::new("/var/lib/syncoord/ca/ca.pem"),
            "http://127.0.0.1:8080",
        );
        assert!(all.len() >= 6);
        for t in &all {
            assert!(t.settings.contains("/var/lib/syncoord/ca/ca.pem"), "{t:?}");
            assert!(
                t.settings.contains("http://127.0.0.1:8080") || t.family.contains("JSON"),
                "{t:?}"
            );
        }
        let async_env = all
            .iter()
            .find(|t| t.family.contains("async, aiohttp): env"))
            .unwrap();
        assert!(async_env.settings.contains("aiohttp_trust_env"));
        let node = all.iter().find(|t| t.family == "Node ccxt").unwrap();
        assert!(
            node.settings.contains("NODE_EXTRA_CA_CERTS") && node.settings.contains("httpsProxy")
        );
    }
}
