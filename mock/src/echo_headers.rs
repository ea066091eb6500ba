//! Response headers a test asks `/__echo` to answer with, through its
//! query: `?vary=Accept,Accept-Language` answers with that `Vary` (how the
//! conformance suite sees a host keep RFC 9111 §4.1). Only names a test
//! spells plainly are needed, so the value is taken as written.

use syncoord_server::Response;

/// `response` with the headers `target`'s query asks for.
pub(crate) fn answer_headers(target: &str, response: Response) -> Response {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("vary="))
        .fold(response, |r, names| r.with_header("Vary", names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_comes_from_the_query() {
        let r = answer_headers("/__echo/x?a=1&vary=Accept,X-Y", Response::new(200, "{}"));
        assert_eq!(r.header("vary"), Some("Accept,X-Y"));
        let r = answer_headers("/__echo/x?a=1", Response::new(200, "{}"));
        assert_eq!(r.header("vary"), None);
    }
}
