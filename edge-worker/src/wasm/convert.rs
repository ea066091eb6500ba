//! Between the Workers runtime's Request/Response objects and the plain
//! method/target/headers/body values the proxy works on.

use worker::{js_sys, web_sys, Headers, Request, Response, ResponseBuilder, Result};

/// A request as plain values.
pub struct Incoming {
    /// As the runtime reports it (upper case for the standard methods,
    /// any other token as sent).
    pub method: String,
    /// Path and query of the request URL. The runtime has parsed the URL,
    /// so this is its normalised form, not the bytes the bot sent (see
    /// the README's limits).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub async fn read_request(req: &mut Request) -> Result<Incoming> {
    // `Request::method()` maps methods it does not know to GET; the raw
    // web_sys method keeps them.
    let method = req.inner().method();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let headers = req.headers().entries().collect();
    let body = if matches!(method.as_str(), "GET" | "HEAD") {
        Vec::new()
    } else {
        req.bytes().await?
    };
    Ok(Incoming {
        method,
        target,
        headers,
        body,
    })
}

/// A request with any method (the runtime accepts any token), the given
/// headers and body, that does not follow redirects: a proxy hands a 3xx
/// back to the bot as upstream sent it.
pub fn build_request(
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let h = web_sys::Headers::new()?;
    for (n, v) in headers {
        h.append(n, v)?;
    }
    init.set_headers(&h);
    if !body.is_empty() {
        init.set_body(&js_sys::Uint8Array::from(body).into());
    }
    init.set_redirect(web_sys::RequestRedirect::Manual);
    Ok(Request::from(web_sys::Request::new_with_str_and_init(
        url, &init,
    )?))
}

/// Headers the runtime computes itself from the body it is given.
fn runtime_managed(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// The runtime's response for one of ours (the core's [`Response`] that
/// every syncoord host writes).
///
/// [`Response`]: syncoord_core::Response
pub fn to_response(r: syncoord_core::Response) -> Result<Response> {
    let headers = Headers::new();
    for (n, v) in r.headers.iter().filter(|(n, _)| !runtime_managed(n)) {
        headers.append(n, v)?;
    }
    let builder = ResponseBuilder::new()
        .with_status(r.status)
        .with_headers(headers);
    // A null body, not an empty one: 204 and 304 may not carry a body at all.
    Ok(if r.body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(r.body)
    })
}

/// A JSON error from the Worker itself (not from upstream or the core).
pub fn error_response(status: u16, message: &str) -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({ "error": message }))?.with_status(status))
}
