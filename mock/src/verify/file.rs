//! The keys file of `syncoord mock-upstream --verify-keys`: which keys a
//! strict mock verifies, as TOML, every problem located by line and
//! column.
//!
//! ```toml
//! accept_hosts = ["api.coinbase.com"]
//!
//! [[cdp]]
//! key_file = "cdp_key.json"          # the JSON Coinbase's portal downloads
//!
//! [[cdp]]
//! name = "organizations/o/apiKeys/k2"
//! private_key_file = "k2.pem"        # or public_key_file = "k2.pub.pem"
//!
//! [[exchange]]
//! key = "abc"
//! secret_file = "abc.secret"         # base64, as Coinbase shows it
//! passphrase = "p"
//! ```
//!
//! Relative paths are read from the directory given (the file's own).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{keys, KeyError, Verifier};

/// One problem in a keys file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFileError {
    /// The field, e.g. `cdp[1].private_key_file`; empty for TOML syntax
    /// errors.
    pub field: String,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysFileErrors(pub Vec<KeysFileError>);

impl KeysFileErrors {
    /// Displays each problem as `file:line:column: field: message`.
    pub fn display_with<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayWith { errors: self, file }
    }
}

struct DisplayWith<'a> {
    errors: &'a KeysFileErrors,
    file: &'a str,
}

impl fmt::Display for DisplayWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
                if let Some(column) = e.column {
                    write!(f, ":{column}")?;
                }
            }
            f.write_str(": ")?;
            if !e.field.is_empty() {
                write!(f, "{}: ", e.field)?;
            }
            f.write_str(&e.message)?;
        }
        Ok(())
    }
}

impl fmt::Display for KeysFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_with("verify keys").fmt(f)
    }
}

impl std::error::Error for KeysFileErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    accept_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    cdp: Vec<Spanned<CdpEntry>>,
    #[serde(default)]
    exchange: Vec<Spanned<ExchangeEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CdpEntry {
    key_file: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    private_key_file: Option<Spanned<String>>,
    public_key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeEntry {
    key: Spanned<String>,
    secret_file: Spanned<String>,
    passphrase: Spanned<String>,
}

/// Collects problems, each at a span of the text.
struct Problems<'a> {
    text: &'a str,
    /// Where relative paths are read from.
    base: &'a Path,
    found: Vec<KeysFileError>,
}

impl Problems<'_> {
    fn at(&mut self, field: String, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.found.push(KeysFileError {
            field,
            line: Some(line),
            column: Some(column),
            message: message.into(),
        });
    }
}

/// Reads a file a keys file names, relative to `base`. The error names
/// the path, never the content.
fn read(base: &Path, path: &str) -> Result<(PathBuf, String), String> {
    let full = base.join(path);
    std::fs::read_to_string(&full)
        .map(|text| (full.clone(), text))
        .map_err(|e| format!("cannot read {}: {e}", full.display()))
}

fn key_problem(path: &Path, e: KeyError) -> String {
    format!("{}: {e}", path.display())
}

impl Verifier {
    /// A verifier from a keys file's text (format in the module doc of
    /// `verify::file`); relative paths are read from `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Verifier, KeysFileErrors> {
        let parsed: KeysFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_col(text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            KeysFileErrors(vec![KeysFileError {
                field: String::new(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }])
        })?;
        let mut problems = Problems {
            text,
            base: base_dir,
            found: Vec::new(),
        };
        let mut verifier = Verifier::new();
        for (i, host) in parsed.accept_hosts.iter().enumerate() {
            let h = host.get_ref().trim();
            if h.is_empty() || h.contains(['/', ' ']) {
                problems.at(
                    format!("accept_hosts[{i}]"),
                    host.span(),
                    "a host is a name with an optional port, e.g. `api.coinbase.com`",
                );
            } else {
                verifier = verifier.accept_host(h);
            }
        }
        for (i, entry) in parsed.cdp.iter().enumerate() {
            let field = |name: &str| format!("cdp[{i}].{name}");
            let e = entry.get_ref();
            match (
                &e.key_file,
                &e.name,
                &e.private_key_file,
                &e.public_key_file,
            ) {
                (Some(file), None, None, None) => {
                    match read(base_dir, file.get_ref()).and_then(|(path, json)| {
                        keys::cdp_from_key_json(&json).map_err(|e| key_problem(&path, e))
                    }) {
                        Ok((name, key)) => {
                            verifier.cdp.insert(name, key);
                        }
                        Err(message) => problems.at(field("key_file"), file.span(), message),
                    }
                }
                (None, Some(name), Some(file), None) => {
                    named(&mut verifier, &mut problems, i, name, file, Private);
                }
                (None, Some(name), None, Some(file)) => {
                    named(&mut verifier, &mut problems, i, name, file, Public);
                }
                _ => problems.at(
                    format!("cdp[{i}]"),
                    entry.span(),
                    "give either `key_file` (Coinbase's JSON), or `name` with one of \
                     `private_key_file` and `public_key_file`",
                ),
            }
        }
        for (i, entry) in parsed.exchange.iter().enumerate() {
            let e = entry.get_ref();
            if e.key.get_ref().trim().is_empty() {
                problems.at(
                    format!("exchange[{i}].key"),
                    e.key.span(),
                    "the key is empty",
                );
                continue;
            }
            match read(base_dir, e.secret_file.get_ref()).and_then(|(path, text)| {
                keys::exchange_secret(&text).map_err(|err| key_problem(&path, err))
            }) {
                Ok(secret) => {
                    verifier = verifier.exchange(
                        e.key.get_ref().trim(),
                        secret,
                        e.passphrase.get_ref().clone(),
                    );
                }
                Err(message) => problems.at(
                    format!("exchange[{i}].secret_file"),
                    e.secret_file.span(),
                    message,
                ),
            }
        }
        if problems.found.is_empty() {
            Ok(verifier)
        } else {
            Err(KeysFileErrors(problems.found))
        }
    }

    /// [`Verifier::from_toml_str`] on a file, relative paths read from its
    /// directory.
    pub fn from_toml_file(path: &Path) -> Result<Verifier, KeysFileErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            KeysFileErrors(vec![KeysFileError {
                field: String::new(),
                line: None,
                column: None,
                message: format!("cannot read: {e}"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Verifier::from_toml_str(&text, base)
    }
}

/// Which half of a key a `[[cdp]]` entry's file holds.
#[derive(Clone, Copy)]
enum Half {
    Private,
    Public,
}
use Half::{Private, Public};

/// A `[[cdp]]` entry with `name` and a key file.
fn named(
    verifier: &mut Verifier,
    problems: &mut Problems<'_>,
    i: usize,
    name: &Spanned<String>,
    file: &Spanned<String>,
    half: Half,
) {
    let name_text = name.get_ref().trim();
    if name_text.is_empty() {
        problems.at(
            format!("cdp[{i}].name"),
            name.span(),
            "the key name is empty",
        );
        return;
    }
    let (field, parse): (_, fn(&str) -> Result<_, KeyError>) = match half {
        Private => ("private_key_file", keys::cdp_from_private),
        Public => ("public_key_file", keys::cdp_from_public_pem),
    };
    match read(problems.base, file.get_ref())
        .and_then(|(path, text)| parse(&text).map_err(|e| key_problem(&path, e)))
    {
        Ok(key) => {
            verifier.cdp.insert(name_text.to_owned(), key);
        }
        Err(message) => problems.at(format!("cdp[{i}].{field}"), file.span(), message),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}
