//! The request-target: path and query split, query values
//! percent-decoded and read as the endpoints want them.

/// Splits a request-target into path and query; an absolute-form target
/// (`http://host/path`) loses its scheme and authority.
pub(super) fn split_target(target: &str) -> (&str, &str) {
    let origin = match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        _ => target,
    };
    origin.split_once('?').unwrap_or((origin, ""))
}

/// Query pairs, percent-decoded (`+` as space).
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `names` (repeated keys, and comma-separated values).
    pub(super) fn all(&self, names: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub(super) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("invalid {name}: {v:?}")),
        }
    }
}

/// Unix seconds from Unix seconds or an RFC 3339 time
/// (`2026-01-01T00:00:00.000Z`); `None` if it is neither.
pub(super) fn unix_seconds(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then_some(n as u64);
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", "x=1"));
        assert_eq!(split_target("http://h:1/a?q"), ("/a", "q"));
        assert_eq!(split_target("http://h:1"), ("/", ""));
        assert_eq!(percent_decode("a%2Cb+c%zz%"), "a,b c%zz%");
        let q = Query(query_pairs(
            "product_ids=BTC-USD&product_ids=ETH-USD,SOL-USD&limit=5",
        ));
        assert_eq!(q.all(&["product_ids"]), ["BTC-USD", "ETH-USD", "SOL-USD"]);
        assert_eq!(q.number::<usize>("limit"), Ok(Some(5)));
        assert!(q.number::<usize>("product_ids").is_err());
        assert_eq!(unix_seconds("1700000000"), Some(1_700_000_000));
        assert_eq!(
            unix_seconds("2023-11-14T22:13:20.000Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            unix_seconds("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }
}
