//! Field paths and serde's messages in the file's terms: what every
//! reported problem is worded with.

/// A serde field path as the file spells it (`a.b[2]`), empty for the
/// root.
pub fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." {
        String::new()
    } else {
        s
    }
}

/// serde's wording of a type or range mistake, in the file's terms:
/// `invalid value: integer `-1`, expected usize` says what a Rust type
/// wants, not what the field takes.
pub fn reword(message: &str) -> String {
    let range = |ty: &str| -> Option<String> {
        let (min, max): (i128, i128) = match ty {
            "u8" => (0, u8::MAX.into()),
            "u16" => (0, u16::MAX.into()),
            "u32" => (0, u32::MAX.into()),
            "u64" | "usize" => (0, i64::MAX.into()),
            "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        };
        Some(format!("a whole number from {min} to {max}"))
    };
    let kind = |expected: &str| -> String {
        match expected {
            "a sequence" => "an array".to_owned(),
            "f64" | "f32" => "a number".to_owned(),
            "a boolean" => "true or false".to_owned(),
            other => range(other).unwrap_or_else(|| other.to_owned()),
        }
    };
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            if let Some(r) = range(expected) {
                return format!("`{value}` is out of range: expected {r}");
            }
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            return format!("expected {}, found {found}", kind(expected));
        }
    }
    message.to_owned()
}

/// `rest` (a field path within `base`) as a path from the root.
pub fn join(base: &str, rest: &str) -> String {
    if rest.is_empty() {
        base.to_owned()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}
