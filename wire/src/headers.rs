//! [`Headers`]: the header list a request carries on its way upstream.
//!
//! Why a type and not `Vec<(String, String)>`: the list is kept in the
//! bot's order and spelling (signatures and some upstreams care), so it
//! cannot be a map, and every reader must match names without regard to
//! case. One type says both, and names the few operations the proxy, the
//! signer and the hosts perform on it. It is a plain `Vec` underneath:
//! no copies, and a borrowed `&[(String, String)]` is one deref away for
//! code (the core's) that reads slices. The list is shared (copied on
//! write): the core's [`RequestHeaders`] holds the same one, so a request
//! carries its headers to the cache (`Vary`) without copying any.

use std::ops::Deref;
use std::sync::Arc;

use syncoord_core::RequestHeaders;

/// Header fields in order, names as sent. Lookups ignore the name's case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Arc<Vec<(String, String)>>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Arc::default())
    }

    /// The same list, as the core's request carries it (no copy).
    pub fn shared(&self) -> RequestHeaders {
        RequestHeaders::new(self.0.clone())
    }

    /// The value of the first field named `name` (any case), trimmed; as
    /// [`syncoord_core::header`] reads it.
    pub fn get(&self, name: &str) -> Option<&str> {
        syncoord_core::header(&self.0, name)
    }

    /// Appends one field after the others.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(&mut self.0).push((name.into(), value.into()));
    }

    /// The fields, as the core's slice-reading functions take them.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// The fields, for code that builds or hands on a plain list.
    pub fn into_vec(self) -> Vec<(String, String)> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl Deref for Headers {
    type Target = [(String, String)];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(fields: Vec<(String, String)>) -> Self {
        Headers(Arc::new(fields))
    }
}

impl From<Headers> for Vec<(String, String)> {
    fn from(headers: Headers) -> Self {
        headers.into_vec()
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Headers(Arc::new(iter.into_iter().collect()))
    }
}

impl Extend<(String, String)> for Headers {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        Arc::make_mut(&mut self.0).extend(iter);
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a (String, String);
    type IntoIter = std::slice::Iter<'a, (String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<Vec<(String, String)>> for Headers {
    fn eq(&self, other: &Vec<(String, String)>) -> bool {
        self.0.as_ref() == other
    }
}

impl PartialEq<Headers> for Vec<(String, String)> {
    fn eq(&self, other: &Headers) -> bool {
        self == other.0.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_order_and_spelling_survive() {
        let mut h = Headers::new();
        h.push("Accept", "*/*");
        h.push("CB-ACCESS-KEY", " k ");
        h.push("cb-access-key", "second");
        assert_eq!(h.get("cb-access-key"), Some("k"));
        assert_eq!(h.get("ACCEPT"), Some("*/*"));
        assert_eq!(h.get("x"), None);
        assert_eq!(h.len(), 3);
        assert_eq!(h[1].0, "CB-ACCESS-KEY");
        let v: Vec<(String, String)> = h.clone().into();
        assert_eq!(h, v);
        assert_eq!(Headers::from(v), h);
    }
}
