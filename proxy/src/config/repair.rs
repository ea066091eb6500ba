//! Reading a section so that one mistake hides no other: when serde stops
//! at a field, the problem is recorded, the field is taken out (so its
//! default applies) and the section is read again. `check-config` then
//! reports every misspelt field and wrong type of a section in one pass,
//! and the cross-reference checks still run on what could be read.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::wording::{path_string, reword};

/// Most fields taken out of one section before giving up on it (each
/// retry reads the section again: a bound on the work a hostile file
/// causes).
const MAX_REPAIRS: usize = 64;

/// `value` read as a `T`, and every problem met on the way as `(path
/// within value, message)`. `None` when a problem could not be taken out
/// (a missing required field, a bad array element: removing the element
/// would renumber the ones after it).
pub(super) fn read_all<T: DeserializeOwned>(
    mut value: toml::Value,
) -> (Option<T>, Vec<(String, String)>) {
    let mut problems: Vec<(String, String)> = Vec::new();
    for _ in 0..MAX_REPAIRS {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (Some(t), problems),
            Err(e) => {
                let segments: Vec<Segment> = e.path().iter().cloned().collect();
                let path = path_string(e.path());
                let message = e.inner().message().to_owned();
                // A required field taken out for being wrong is now
                // missing: said once already.
                let removed_before = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.strip_suffix('`'))
                    .is_some_and(|name| {
                        let full = if path.is_empty() {
                            name.to_owned()
                        } else {
                            super::wording::join(&path, name)
                        };
                        problems.iter().any(|(f, _)| *f == full)
                    });
                if removed_before {
                    return (None, problems);
                }
                problems.push((path, reword(&message)));
                if !remove_at(&mut value, &segments) {
                    return (None, problems);
                }
            }
        }
    }
    (None, problems)
}

/// Takes out the table entry `path` names; false when it names the root,
/// an array element, or nothing present.
fn remove_at(value: &mut toml::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut slot = value;
    for seg in parents {
        slot = match (slot, seg) {
            (toml::Value::Table(t), Segment::Map { key }) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (toml::Value::Array(a), Segment::Seq { index }) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (slot, last) {
        (toml::Value::Table(t), Segment::Map { key }) => t.remove(key).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;

    #[test]
    fn every_bad_field_of_a_section_is_reported_and_the_rest_read() {
        let value: toml::Value = toml::from_str(
            "listen = \"127.0.0.1:1\"\nmax_connections = \"many\"\nlisen = 3\ndrain_secs = 2.0\n",
        )
        .unwrap();
        let (read, problems) = read_all::<ServerSettings>(value);
        let mut fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["lisen", "max_connections"], "{problems:?}");
        let read = read.expect("what is left reads");
        assert_eq!(read.listen, "127.0.0.1:1");
        assert_eq!(read.drain_secs, 2.0);
        assert_eq!(
            read.max_connections,
            ServerSettings::default().max_connections
        );
    }

    #[test]
    fn a_bad_array_element_stops_the_section() {
        let value: toml::Value = toml::from_str("v = [1, \"x\"]").unwrap();
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct V {
            v: Vec<u8>,
        }
        let (read, problems) = read_all::<V>(value);
        assert!(read.is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "v[1]");
    }
}
