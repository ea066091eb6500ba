//! `Vary` (RFC 9111 §4.1): a stored response that names request header
//! fields in `Vary` answers only requests whose values of those fields
//! match the ones of the request that got it.
//!
//! What the cache keeps of those values is a digest ([`VariantId`]), never
//! the values: a response may vary on `Cookie` or `Authorization`, and
//! the cache must not become a store of secrets. The digest is SHA-256
//! (truncated to 128 bits): a bot choosing header values cannot make its
//! request select another's variant (a `Cookie`-varied answer is someone's).
//!
//! Only headers that reach upstream can have selected a response: a host
//! whose HTTP client replaces a bot's header with its own (the native
//! host's `Accept-Encoding`: ureq asks for gzip and decodes) sent the same
//! value for every request, so those names count as absent in every
//! request (see `Coordinator::set_replaced_request_headers`).

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The request headers the core may need (the ones forwarded upstream),
/// shared with the host's own copy: cloning one never copies a header.
///
/// Its `Debug` prints header names only: values may be secrets
/// (`Authorization`, `Cookie`, API keys).
#[derive(Clone, Default)]
pub struct RequestHeaders(Option<Arc<Vec<(String, String)>>>);

impl RequestHeaders {
    /// The headers a list holds, as forwarded upstream.
    pub fn new(fields: Arc<Vec<(String, String)>>) -> Self {
        RequestHeaders(Some(fields))
    }

    /// The header fields, in order, names as sent.
    pub fn fields(&self) -> &[(String, String)] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl From<Vec<(String, String)>> for RequestHeaders {
    fn from(fields: Vec<(String, String)>) -> Self {
        if fields.is_empty() {
            RequestHeaders(None)
        } else {
            RequestHeaders(Some(Arc::new(fields)))
        }
    }
}

impl fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.fields().iter().map(|(n, _)| n))
            .finish()
    }
}

/// Which variant of a response a request selects: a digest of the
/// normalized values of the fields its `Vary` names.
pub(crate) type VariantId = [u8; 16];

/// What a response's `Vary` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// No `Vary` (or one naming nothing): one answer for every request.
    None,
    /// `Vary: *`: the answer depends on more than the request's headers;
    /// it never answers another request (so is never stored).
    Star,
    /// The field names, lower-cased, each once, in the order first named.
    Names(Arc<[Box<str>]>),
}

impl Vary {
    /// Reads every `Vary` field line of a response.
    pub(crate) fn of(headers: &[(String, String)]) -> Vary {
        let mut names: Vec<Box<str>> = Vec::new();
        for (_, value) in headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        {
            for name in value.split(',').map(|n| n.trim_matches([' ', '\t'])) {
                if name == "*" {
                    return Vary::Star;
                }
                if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    names.push(name.to_ascii_lowercase().into_boxed_str());
                }
            }
        }
        if names.is_empty() {
            Vary::None
        } else {
            Vary::Names(names.into())
        }
    }
}

/// The variant `headers` select among answers that vary on `names`.
/// `replaced`: names the host's client sets itself (absent here).
///
/// Normalized as RFC 9111 §4.1 allows: a field's lines are combined with
/// `", "`, whitespace around the commas and at the ends is dropped, names
/// match whatever their case. A field that is absent differs from one that
/// is present and empty. Values are not case-folded nor reordered: that
/// depends on each field's own syntax, and a miss is safe where a false
/// match is not.
pub(crate) fn variant(
    names: &[Box<str>],
    headers: &[(String, String)],
    replaced: &[&str],
) -> VariantId {
    let mut hash = Sha256::new();
    for name in names {
        hash.update(name.as_bytes());
        hash.update([0]);
        if replaced.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            hash.update([2]);
            continue;
        }
        let mut present = false;
        for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            // One more field line: combined as one list.
            hash.update(if present { [b','] } else { [1] });
            present = true;
            let mut first = true;
            for piece in value.split(',') {
                if !first {
                    hash.update([b',']);
                }
                first = false;
                hash.update(piece.trim_matches([' ', '\t']).as_bytes());
            }
        }
        hash.update(if present { [0] } else { [2] });
    }
    let full = hash.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&full[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<Box<str>> {
        list.iter().map(|n| Box::from(*n)).collect()
    }

    #[test]
    fn vary_is_read_from_every_line_lower_cased_once() {
        let v = Vary::of(&h(&[
            ("Vary", "Accept, accept-Language"),
            ("vary", " ACCEPT ,X-A"),
        ]));
        assert_eq!(
            v,
            Vary::Names(names(&["accept", "accept-language", "x-a"]).into())
        );
        assert_eq!(Vary::of(&h(&[("Vary", "Accept, *")])), Vary::Star);
        assert_eq!(Vary::of(&h(&[("Vary", " , ")])), Vary::None);
        assert_eq!(Vary::of(&h(&[("Content-Type", "x")])), Vary::None);
    }

    /// RFC 9111 §4.1: combining field lines and whitespace around commas
    /// do not make values differ; anything else does.
    #[test]
    fn values_match_after_normalization_only() {
        let n = names(&["accept"]);
        let one = variant(&n, &h(&[("Accept", "a/b,  c/d")]), &[]);
        let split = variant(&n, &h(&[("accept", "a/b"), ("ACCEPT", "c/d")]), &[]);
        let spaced = variant(&n, &h(&[("Accept", " a/b ,c/d\t")]), &[]);
        assert_eq!(one, split);
        assert_eq!(one, spaced);
        assert_ne!(one, variant(&n, &h(&[("Accept", "c/d, a/b")]), &[]));
        assert_ne!(one, variant(&n, &h(&[("Accept", "A/B, c/d")]), &[]));
    }

    #[test]
    fn absent_and_empty_differ_and_replaced_is_absent() {
        let n = names(&["accept-encoding"]);
        let absent = variant(&n, &[], &[]);
        assert_ne!(absent, variant(&n, &h(&[("Accept-Encoding", "")]), &[]));
        assert_ne!(absent, variant(&n, &h(&[("Accept-Encoding", "gzip")]), &[]));
        let replaced = ["accept-encoding"];
        assert_eq!(
            variant(&n, &h(&[("Accept-Encoding", "br")]), &replaced),
            variant(&n, &h(&[("Accept-Encoding", "gzip")]), &replaced)
        );
    }

    #[test]
    fn debug_prints_names_never_values() {
        let headers = RequestHeaders::from(h(&[("Cookie", "session=hunter2"), ("Accept", "x")]));
        let shown = format!("{headers:?}");
        assert!(
            shown.contains("Cookie") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
