//! How the Worker and its Durable Objects talk to each other. The Worker
//! forwards a bot's request to the `ScopeCoordinator` object of its shard
//! with the shard name in [`SHARD_HEADER`]; internal calls (reports,
//! registration) go to [`INTERNAL_ORIGIN`] paths, which no bot request can
//! reach because bots only reach objects through the Worker.

use syncoord_core::Response;
use syncoord_proxy::{edge_failure_response, Rejection};

/// Durable Object binding of the per-shard coordinators (wrangler.toml).
pub const SCOPE_BINDING: &str = "SCOPE_COORDINATOR";
/// Durable Object binding of the shard registry (wrangler.toml).
pub const REGISTRY_BINDING: &str = "SHARD_REGISTRY";
/// The single registry object's name.
pub const REGISTRY_NAME: &str = "registry";

/// Names the shard a forwarded request belongs to. Set by the Worker only:
/// a bot's own value is dropped by [`syncoord_proxy::forwardable_headers`].
pub const SHARD_HEADER: &str = "x-syncoord-shard";
/// Origin of internal Worker -> object calls (never fetched over a network).
pub const INTERNAL_ORIGIN: &str = "https://syncoord.internal";
/// `GET` on a scope object: its [`crate::report::ShardReport`].
pub const REPORT_PATH: &str = "/__syncoord/report";
/// `POST` on the registry, body = shard name: remember a shard.
pub const REGISTER_PATH: &str = "/__syncoord/register";
/// `GET` on the registry: JSON array of the [`RegisteredShard`]s it knows.
pub const SHARDS_PATH: &str = "/__syncoord/shards";
/// `POST` on the registry, body = JSON array of [`RegisteredShard`]s:
/// forget each one that has not registered again since (its `since` is
/// unchanged). The Worker sends the shards whose objects had no state to
/// report, so the registry holds the shards in use, not every credential
/// ever seen.
pub const FORGET_PATH: &str = "/__syncoord/forget";

/// A shard as the registry knows it: its name and when (Unix ms, from the
/// registry's clock) its object last registered it. An object registers
/// once per activation, so a newer `since` means a newer activation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegisteredShard {
    pub name: String,
    pub since: f64,
}

/// Longest shard name the registry accepts (an upstream name plus a
/// credential identity, which is a key id or a hash prefix).
pub const MAX_SHARD_NAME: usize = 512;

/// Headers Cloudflare's edge adds to every request a Worker receives. They
/// describe the bot's connection to Cloudflare, not the bot's request, and
/// the native daemon would not send them, so they are not forwarded. (The
/// shared proxy rules, `syncoord_proxy::forwardable_headers`, then
/// drop hop-by-hop and `X-Syncoord-*` headers as for the native host.)
fn added_by_cloudflare(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("cf-")
        || matches!(
            n.as_str(),
            "x-forwarded-proto" | "x-real-ip" | "x-forwarded-for"
        )
}

/// The bot's headers as the proxy should see them: without what the
/// Cloudflare edge added and without a forged [`SHARD_HEADER`].
pub fn bot_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(n, _)| !added_by_cloudflare(n) && !n.eq_ignore_ascii_case(SHARD_HEADER))
        .collect()
}

/// Splits a forwarded request's headers into the shard name and the bot's
/// own headers.
pub fn take_shard(headers: Vec<(String, String)>) -> (Option<String>, Vec<(String, String)>) {
    let mut shard = None;
    let rest = headers
        .into_iter()
        .filter_map(|(n, v)| {
            if n.eq_ignore_ascii_case(SHARD_HEADER) {
                shard = Some(v);
                None
            } else {
                Some((n, v))
            }
        })
        .collect();
    (shard, rest)
}

/// The bot's answer when the Worker itself fails: its call to the shard's
/// object failed (the object threw, was reset by a deployment, or could
/// not be reached) or the request could not be read. Without it the
/// runtime would answer with its own HTML error page; with it the bot gets
/// the same JSON and `X-Syncoord-Error` as every other syncoord error.
/// 502, not 503 with `Retry-After`: a request that failed inside its object
/// may already have reached upstream, so it must not look safe to retry.
pub fn worker_failure(what: &str, error: &str) -> Response {
    edge_failure_response(what, error)
}

/// A request body over `max_body_bytes`: 413 with the body the native
/// daemon sends (`"error": "payload_too_large"`), plus `X-Syncoord-Error`.
pub fn too_large(max_body: usize) -> Response {
    Rejection::payload_too_large(max_body).into_response()
}

/// `X-Syncoord-Error` of [`worker_failure`].
pub const WORKER_FAILURE: &str = syncoord_proxy::response::EDGE_FAILURE;

/// Whether the registry may store `name`.
pub fn valid_shard_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_SHARD_NAME && !name.chars().any(char::is_control)
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

    #[test]
    fn cloudflare_headers_and_forged_shards_are_not_forwarded() {
        let got = bot_headers(h(&[
            ("CF-Connecting-IP", "203.0.113.9"),
            ("cf-ray", "abc"),
            ("x-forwarded-proto", "https"),
            ("X-Syncoord-Shard", "other/cred/key:victim"),
            ("authorization", "Bearer x"),
            ("x-syncoord-client", "bot-1"),
        ]));
        assert_eq!(
            got,
            h(&[
                ("authorization", "Bearer x"),
                ("x-syncoord-client", "bot-1")
            ])
        );
    }

    #[test]
    fn the_shard_header_is_taken_out() {
        let (shard, rest) = take_shard(h(&[("accept", "*/*"), ("x-syncoord-shard", "a/global")]));
        assert_eq!(shard.as_deref(), Some("a/global"));
        assert_eq!(rest, h(&[("accept", "*/*")]));
        assert_eq!(take_shard(h(&[("accept", "*/*")])).0, None);
    }

    #[test]
    fn a_worker_failure_is_a_syncoord_error_not_safe_to_retry() {
        let r = worker_failure("shard `a/global` did not answer", "Network connection lost");
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-syncoord-error"), Some(WORKER_FAILURE));
        assert_eq!(r.header("retry-after"), None);
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(body["error"], WORKER_FAILURE);
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("a/global") && message.contains("Network connection lost"),
            "{message}"
        );
    }

    #[test]
    fn registered_shards_survive_the_trip_between_registry_and_worker() {
        let sent = vec![RegisteredShard {
            name: "a/cred/key:x".into(),
            since: 1_764_000_000_123.0,
        }];
        let json = serde_json::to_string(&sent).expect("serialises");
        let got: Vec<RegisteredShard> = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(got, sent);
    }

    #[test]
    fn an_oversized_body_is_refused_as_the_native_daemon_refuses_it() {
        let r = too_large(10);
        assert_eq!(r.status, 413);
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(body["error"], "payload_too_large");
        assert!(body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("10 bytes"));
    }

    #[test]
    fn shard_names_are_bounded_and_printable() {
        assert!(valid_shard_name("coinbase-exchange/cred/key:abc"));
        assert!(!valid_shard_name(""));
        assert!(!valid_shard_name("a\nb"));
        assert!(!valid_shard_name(&"x".repeat(MAX_SHARD_NAME + 1)));
    }
}
