//! What is wrong with a configuration: problems by field path (`Issue`)
//! and as reported, with their place in the file.

use std::fmt;

/// One problem in a configuration file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// Path of the field, e.g. `upstreams[0].coordination.routes[2].scopes[0]`;
    /// empty for TOML syntax errors.
    pub field: String,
    /// 1-based line and column of the field (or of its nearest parent
    /// present in the file), when known.
    pub line: Option<usize>,
    /// See `line`.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileErrors(pub Vec<ConfigFileError>);

impl ConfigFileErrors {
    /// Displays each problem as `file:line:column: field: message`.
    pub fn display_with<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayWith { errors: self, file }
    }

    /// `(field, message)` pairs found after parsing (secrets that cannot
    /// be read), without positions.
    pub(crate) fn unlocated(pairs: Vec<(String, String)>) -> Self {
        ConfigFileErrors(
            pairs
                .into_iter()
                .map(|(field, message)| ConfigFileError {
                    field,
                    line: None,
                    column: None,
                    message,
                })
                .collect(),
        )
    }

    pub(super) fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigFileErrors(vec![ConfigFileError {
            field: field.into(),
            line: None,
            column: None,
            message: message.into(),
        }])
    }
}

struct DisplayWith<'a> {
    errors: &'a ConfigFileErrors,
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
                if let Some(col) = e.column {
                    write!(f, ":{col}")?;
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

impl fmt::Display for ConfigFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_with("config").fmt(f)
    }
}

impl std::error::Error for ConfigFileErrors {}

/// A field path and what is wrong with it, before it is located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) field: String,
    pub(super) message: String,
}

impl Issue {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The issue as reported, at `line` and `column` when known.
    pub(super) fn located(self, line: Option<usize>, column: Option<usize>) -> ConfigFileError {
        ConfigFileError {
            field: self.field,
            line,
            column,
            message: self.message,
        }
    }
}

pub(super) fn errors_without_positions(issues: Vec<Issue>) -> Result<(), ConfigFileErrors> {
    if issues.is_empty() {
        return Ok(());
    }
    Err(ConfigFileErrors(
        issues
            .into_iter()
            .map(|issue| issue.located(None, None))
            .collect(),
    ))
}
