//! One upstream call with the runtime's `fetch`, reported as a core
//! [`Outcome`]. In signing mode each attempt is signed here, just before
//! it is sent.

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use syncoord_core::{Duration, Outcome, Response, TransportError};
use syncoord_wire::Outgoing;
use worker::{js_sys, AbortController, Delay, Fetch};

use super::convert::build_request;
use crate::sign::Signing;

/// `base` (e.g. `https://api.coinbase.com`) followed by the call's path
/// and query.
fn url(base: &str, call: &Outgoing) -> String {
    format!("{}{}", base.trim_end_matches('/'), call.path_and_query)
}

/// 16 bytes from `crypto.getRandomValues`: a JWT's `nonce`.
fn nonce() -> std::result::Result<[u8; 16], String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Sends `call` and reads the whole answer, giving up after `timeout`; an
/// answer with a body over `max_body` bytes is a transport error. A call
/// to be signed is signed now, for this attempt; one that cannot be
/// signed is not sent.
pub async fn send(
    base: &str,
    signing: &Signing,
    call: &Outgoing,
    timeout: Duration,
    max_body: usize,
) -> Outcome {
    let unix_now = (js_sys::Date::now() / 1000.0) as u64;
    let headers = match signing.headers(call, unix_now, nonce) {
        Ok(h) => h,
        Err(e) => return Outcome::Transport(e),
    };
    let request = match build_request(&url(base, call), &call.method, &headers, &call.body) {
        Ok(r) => r,
        // Refused before anything left (an invalid header value, a bad
        // URL): upstream cannot have seen it.
        Err(e) => return Outcome::Transport(TransportError::Connect(e.to_string())),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let fetch = Fetch::Request(request);
        let mut response = fetch.send_with_signal(&signal).await?;
        let status = response.status_code();
        let headers: Vec<(String, String)> = response.headers().entries().collect();
        // Read chunk by chunk and stop past the limit, rather than buffer
        // an answer of any size first and measure it after: an isolate
        // has 128 MB, shared with every shard it hosts.
        let mut chunks = response.stream()?;
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > max_body {
                return Err(worker::Error::RustError(format!(
                    "upstream response body is over max_response_bytes ({max_body})"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, worker::Error>(Response {
            status,
            headers,
            body,
        })
    };
    let timer = Delay::from(timeout);
    futures_util::pin_mut!(exchange);
    futures_util::pin_mut!(timer);
    match select(exchange, timer).await {
        Either::Left((Ok(response), _)) => Outcome::Response {
            response,
            received_unix: Some((js_sys::Date::now() / 1000.0) as u64),
        },
        // The runtime does not say whether the connection was made; treat
        // every failure as one upstream may have seen (no unsafe retries).
        Either::Left((Err(e), _)) => {
            // Stops the download of an answer refused for its size.
            controller.abort();
            Outcome::Transport(TransportError::Broken(e.to_string()))
        }
        Either::Right(((), _)) => {
            controller.abort();
            Outcome::Transport(TransportError::Timeout(format!(
                "no answer within {timeout:?}"
            )))
        }
    }
}
