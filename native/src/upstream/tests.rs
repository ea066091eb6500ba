//! HttpUpstream against tiny loopback servers written here (127.0.0.1,
//! ephemeral ports): what goes out byte for byte, what comes back, and
//! how each kind of failure is classified.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use syncoord_core::{Outcome, Response, TransportError};
use syncoord_wire::Outgoing;

use super::{HttpUpstream, Unsendable, Upstream, UpstreamError, UpstreamOptions};

/// Serves every connection with `respond`, given the raw request bytes
/// (head and Content-Length body); reports each raw request on the channel.
fn serve(
    respond: impl Fn(&[u8], &mut TcpStream) + Send + 'static,
) -> (String, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_request(&mut stream);
            if tx.send(request.clone()).is_err() {
                return;
            }
            respond(&request, &mut stream);
        }
    });
    (url, rx)
}

fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

fn options() -> UpstreamOptions {
    UpstreamOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1024,
        user_agent: Some("syncoord-test".into()),
        extra_roots_pem: None,
    }
}

fn call(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Outgoing {
    Outgoing {
        method: method.into(),
        path_and_query: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
        sign_as: None,
    }
}

fn response(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Response {
            response,
            received_unix,
        } => {
            assert!(received_unix.is_some(), "the wall clock is recorded");
            response
        }
        Outcome::Transport(e) => panic!("expected a response, got {e}"),
    }
}

fn transport(outcome: Outcome) -> TransportError {
    match outcome {
        Outcome::Transport(e) => e,
        Outcome::Response { response, .. } => panic!("expected a failure, got {}", response.status),
    }
}

#[test]
fn status_headers_and_body_round_trip() {
    let (url, requests) = serve(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Multi: a\r\nX-Multi: b\r\n\
              Content-Type: application/json\r\n\r\nhello",
        );
    });
    let upstream = HttpUpstream::new(&format!("{url}/base/"), options()).unwrap();
    let sent = call(
        "POST",
        "/api/orders?x=1&y=%2F",
        &[
            ("CB-ACCESS-KEY", "key-1"),
            ("X-Dup", "one"),
            ("X-Dup", "two"),
            ("Host", "evil.example"),
        ],
        br#"{"size":"0.1"}"#,
    );
    let got = response(upstream.send(&sent));
    assert_eq!(got.status, 201);
    assert_eq!(got.body, b"hello");
    let multi: Vec<&str> = got
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-multi"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(got.header("content-type"), Some("application/json"));

    let raw = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let lower = text.to_ascii_lowercase();
    assert!(
        text.starts_with("POST /base/api/orders?x=1&y=%2F HTTP/1.1\r\n"),
        "{text}"
    );
    let authority = url.trim_start_matches("http://");
    assert!(
        lower.contains(&format!("\r\nhost: {authority}\r\n")),
        "{text}"
    );
    assert!(!lower.contains("evil.example"), "{text}");
    assert!(lower.contains("\r\ncb-access-key: key-1\r\n"), "{text}");
    assert!(lower.contains("\r\nx-dup: one\r\n") && lower.contains("\r\nx-dup: two\r\n"));
    assert!(
        lower.contains("\r\nuser-agent: syncoord-test\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n{\"size\":\"0.1\"}"), "{text}");
}

#[test]
fn a_server_error_is_a_response_not_a_failure() {
    let (url, _requests) = serve(|_, stream| {
        let _ =
            stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    });
    let upstream = HttpUpstream::new(&url, options()).unwrap();
    let got = response(upstream.send(&call("GET", "/time", &[], b"")));
    assert_eq!((got.status, got.body.as_slice()), (503, &b"busy"[..]));
}

#[test]
fn a_refused_connection_is_connect() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let upstream = HttpUpstream::new(&format!("http://127.0.0.1:{port}"), options()).unwrap();
    let error = transport(upstream.send(&call("GET", "/time", &[], b"")));
    assert!(
        matches!(error, TransportError::Connect(_)),
        "expected Connect, got {error:?}"
    );
    assert!(error.never_sent());
}

#[test]
fn a_server_that_never_answers_is_timeout() {
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold = std::sync::Mutex::new(hold_rx);
    let (url, _requests) = serve(move |_, _stream| {
        // Keep the connection open, silent, until the test ends.
        let _ = hold.lock().unwrap().recv();
    });
    let upstream = HttpUpstream::new(
        &url,
        UpstreamOptions {
            timeout: Duration::from_millis(300),
            ..options()
        },
    )
    .unwrap();
    let error = transport(upstream.send(&call("GET", "/time", &[], b"")));
    assert!(
        matches!(error, TransportError::Timeout(_)),
        "expected Timeout, got {error:?}"
    );
    drop(hold_tx);
}

#[test]
fn garbage_from_the_server_is_broken() {
    let (url, _requests) = serve(|_, stream| {
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n");
    });
    let upstream = HttpUpstream::new(&url, options()).unwrap();
    let error = transport(upstream.send(&call("GET", "/time", &[], b"")));
    assert!(
        matches!(error, TransportError::Broken(_)),
        "expected Broken, got {error:?}"
    );
}

#[test]
fn an_oversized_body_is_broken() {
    let (url, _requests) = serve(|_, stream| {
        let body = vec![b'x'; 5000];
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    });
    let upstream = HttpUpstream::new(&url, options()).unwrap();
    let error = transport(upstream.send(&call("GET", "/big", &[], b"")));
    match error {
        TransportError::Broken(msg) => assert!(msg.contains("1024"), "{msg}"),
        other => panic!("expected Broken, got {other:?}"),
    }
}

#[test]
fn connections_are_reused() {
    let (url, requests) = serve(|_, stream| {
        // Answer two requests on the same connection.
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let second = read_request(stream);
        if !second.is_empty() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok2");
        }
    });
    let upstream = HttpUpstream::new(&url, options()).unwrap();
    assert_eq!(
        response(upstream.send(&call("GET", "/a", &[], b""))).body,
        b"ok"
    );
    assert_eq!(
        response(upstream.send(&call("GET", "/b", &[], b""))).body,
        b"ok2"
    );
    // Only one connection was accepted (the channel saw one request head).
    assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
    assert!(requests.try_recv().is_err());
}

#[test]
fn base_urls_must_be_http() {
    for (url, needle) in [
        ("ftp://example.com", "scheme"),
        ("example.com/api", "URL"),
        ("/api/v3", "scheme"),
        ("http://", "URL"),
        ("https://host/?q=1", "query"),
    ] {
        match HttpUpstream::new(url, options()) {
            Err(UpstreamError::BadUrl { url: u, reason }) => {
                assert_eq!(u, url);
                assert!(reason.contains(needle), "{url}: {reason}");
            }
            Ok(_) => panic!("{url} accepted"),
            Err(other) => panic!("{url}: {other}"),
        }
    }
    assert!(HttpUpstream::new("https://api.coinbase.com", options()).is_ok());
}

#[test]
fn extra_roots_must_be_pem_certificates() {
    for (pem, needle) in [
        (&b"not pem at all"[..], "BEGIN CERTIFICATE"),
        (
            &b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"[..],
            "BEGIN CERTIFICATE",
        ),
    ] {
        let options = UpstreamOptions {
            extra_roots_pem: Some(pem.to_vec()),
            ..options()
        };
        match HttpUpstream::new("https://api.coinbase.com", options) {
            Err(UpstreamError::BadRoots(why)) => assert!(why.contains(needle), "{why}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted roots without a certificate"),
        }
    }
}

#[test]
fn a_bots_accept_encoding_is_not_forwarded() {
    // An upstream that honours `br` when asked, as Cloudflare-fronted APIs
    // do. ureq decodes only gzip, so a `br` body would reach the cache
    // still encoded and be served, `Content-Encoding: br` and all, to bots
    // that never asked for it (the cache key has no Accept-Encoding).
    let (url, requests) = serve(|request, stream| {
        let head = String::from_utf8_lossy(request).to_ascii_lowercase();
        let asked_br = head
            .lines()
            .any(|l| l.starts_with("accept-encoding:") && l.contains("br"));
        let reply: &[u8] = if asked_br {
            b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x02\x80x"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"
        };
        let _ = stream.write_all(reply);
    });
    let upstream = HttpUpstream::new(&url, options()).unwrap();
    let got = response(upstream.send(&call(
        "GET",
        "/shared",
        &[("Accept-Encoding", "gzip, deflate, br")],
        b"",
    )));
    let seen = String::from_utf8_lossy(&requests.recv().unwrap()).to_ascii_lowercase();
    assert!(
        !seen
            .lines()
            .any(|l| l.starts_with("accept-encoding:") && l.contains("br")),
        "{seen}"
    );
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.body, b"plain");
}

#[test]
fn an_unwritable_call_is_unsendable_before_anything_is_sent() {
    let upstream = HttpUpstream::new("http://127.0.0.1:9", options()).unwrap();
    assert_eq!(
        upstream.check(&call("GET", "/time", &[], b"")),
        Ok(()),
        "a plain call can be sent"
    );
    let bad_method = upstream.check(&call("GE T", "/time", &[], b""));
    assert_eq!(bad_method, Err(Unsendable::Method("GE T".into())));
    let extension = upstream.check(&call("M-SEARCH", "/time", &[], b""));
    assert_eq!(
        extension,
        Err(Unsendable::ExtensionMethod("M-SEARCH".into()))
    );
    let bad_value = upstream
        .check(&call("GET", "/time", &[("X-Key", "a\nb")], b""))
        .map_err(|e| e.to_string());
    assert_eq!(
        bad_value,
        Err("request header `x-key` has an invalid value".into())
    );
}
