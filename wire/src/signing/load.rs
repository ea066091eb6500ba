//! Loading what `[[credentials]]` and `[[clients]]` point at. The host
//! reads env vars and files (a [`SecretSource`]); everything else about
//! loading is here, once, for both hosts.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::clients::parse_sha256_hex;
use super::key::{parse_cdp_json, parse_cdp_private_key, parse_exchange_secret};
use super::spec::{ClientSpec, CredentialKind, CredentialSpec, SpecIssue};
use super::{Client, Clients, Keyring, Material, Signer};

/// A file's contents, and its Unix permission bits when the host knows
/// them (to warn about a key readable by others).
pub struct SecretFile {
    /// The whole file, as text; wiped from memory when dropped.
    pub text: Zeroizing<String>,
    /// Unix permission bits, if the host has them.
    pub mode: Option<u32>,
}

/// Why a host could not read a secret file. Shown after the file's path
/// in the config's issue list; never carries the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Opening or reading it failed (missing, no permission, ...).
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    /// The path names a directory or another non-file.
    #[error("is not a file")]
    NotAFile,
    /// Larger than any key file (so not read into memory).
    #[error("is {size} bytes; a key file is at most {max}")]
    TooLarge {
        /// The file's size in bytes.
        size: u64,
        /// The largest secret file a host reads.
        max: u64,
    },
    /// Key material is text (PEM, base64, JSON).
    #[error("is not UTF-8 text")]
    NotUtf8,
    /// The host reads no files at all (the Worker, [`NoSecrets`]) or
    /// does not have this one: its explanation.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a host finds secrets: the process environment and files
/// natively, the Worker's secrets and vars on the edge.
pub trait SecretSource {
    /// The value of env var (or Worker secret) `name`, if set.
    fn env(&self, name: &str) -> Option<Zeroizing<String>>;
    /// The contents of file `path`, or why it cannot be read (without its
    /// contents).
    fn file(&self, path: &str) -> Result<SecretFile, SecretFileError>;
}

/// No secrets at all: a config with `[[credentials]]` fails to load with
/// it, naming what it lacks.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn env(&self, _name: &str) -> Option<Zeroizing<String>> {
        None
    }

    fn file(&self, _path: &str) -> Result<SecretFile, SecretFileError> {
        Err(SecretFileError::Unavailable(
            "this host reads no files".into(),
        ))
    }
}

/// What signing mode runs on: the keys and the clients, loaded by
/// [`load_signing`].
#[derive(Debug, Clone, Default)]
pub struct SigningSetup {
    /// The credentials syncoord signs with.
    pub keyring: Keyring,
    /// The bots that authenticate with a token.
    pub clients: Clients,
    /// Problems that do not stop the host (a key file others may read,
    /// allowed by `allow_readable_files`).
    pub warnings: Vec<SpecIssue>,
}

/// Reads every credential's and client's secret through `source`.
/// Every problem at once; none quotes a secret.
pub fn load_signing(
    credentials: &[CredentialSpec],
    clients: &[ClientSpec],
    source: &dyn SecretSource,
) -> Result<SigningSetup, Vec<SpecIssue>> {
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let mut signers = Vec::new();
    for (i, c) in credentials.iter().enumerate() {
        let mut reader = Reader {
            source,
            allow_readable: c.allow_readable_files,
            at: format!("credentials[{i}]"),
            issues: &mut issues,
            warnings: &mut warnings,
        };
        if let Some(material) = reader.material(c) {
            signers.push(Signer {
                name: Arc::from(c.name.as_str()),
                upstream: c.upstream.clone(),
                material,
            });
        }
    }
    let mut table = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let hash = match (&c.token_sha256, &c.token_env) {
            (Some(hex), _) => parse_sha256_hex(hex),
            (None, Some(env)) => match source.env(env) {
                Some(token) if !token.trim().is_empty() => {
                    let bits = super::clients::estimated_entropy_bits(token.trim());
                    if bits < super::clients::MIN_TOKEN_BITS {
                        issues.push((
                            format!("clients[{i}].token_env"),
                            format!(
                                "the token in `{env}` is too weak to guard signing keys: about {bits} bits of entropy, at least {} needed (make one with `syncoord token --name {}`)",
                                super::clients::MIN_TOKEN_BITS,
                                c.name
                            ),
                        ));
                        None
                    } else {
                        parse_sha256_hex(&super::token_sha256_hex(token.trim()))
                    }
                }
                _ => {
                    issues.push((
                        format!("clients[{i}].token_env"),
                        format!("`{env}` is not set (or empty) on this host"),
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        if hash.is_some() || !c.api_keys.is_empty() {
            let mut client = Client::new(&c.name, hash, c.credentials.clone());
            client.max_priority = c
                .max_priority
                .clone()
                .map(|class| (class, c.above_max_priority));
            client.share = c.share.map(|s| (s, c.above_share));
            client.api_keys = c.api_keys.clone();
            table.push(client);
        }
    }
    if issues.is_empty() {
        Ok(SigningSetup {
            keyring: Keyring::from_signers(signers),
            clients: Clients(table),
            warnings,
        })
    } else {
        Err(issues)
    }
}

struct Reader<'a> {
    source: &'a dyn SecretSource,
    /// `allow_readable_files`: a file others may read is a warning, not
    /// an error.
    allow_readable: bool,
    at: String,
    issues: &'a mut Vec<SpecIssue>,
    warnings: &'a mut Vec<SpecIssue>,
}

impl Reader<'_> {
    fn field(&self, f: &str) -> String {
        format!("{}.{f}", self.at)
    }

    /// The secret from `env` or `file` (config checks made sure there is
    /// exactly one).
    fn read(
        &mut self,
        env: (&str, &Option<String>),
        file: (&str, &Option<String>),
    ) -> Option<Zeroizing<String>> {
        if let Some(name) = env.1 {
            return match self.source.env(name) {
                Some(v) if !v.trim().is_empty() => Some(v),
                _ => {
                    self.issues.push((
                        self.field(env.0),
                        format!("`{name}` is not set (or empty) on this host"),
                    ));
                    None
                }
            };
        }
        let path = file.1.as_deref()?;
        match self.source.file(path) {
            Ok(f) => {
                if let Some(mode) = f.mode.filter(|m| m & 0o077 != 0) {
                    let message = format!(
                        "`{path}` may be read by other users (mode {:o}): `chmod 600` it",
                        mode & 0o777
                    );
                    if self.allow_readable {
                        self.warnings.push((self.field(file.0), message));
                    } else {
                        // Refused, as ssh refuses such a private key: a
                        // key others can read is a key others may hold.
                        self.issues.push((
                            self.field(file.0),
                            format!("{message}, or set `allow_readable_files = true` on this credential if its access is guarded otherwise"),
                        ));
                        return None;
                    }
                }
                Some(f.text)
            }
            Err(why) => {
                self.issues
                    .push((self.field(file.0), format!("`{path}`: {why}")));
                None
            }
        }
    }

    fn material(&mut self, c: &CredentialSpec) -> Option<Material> {
        match c.kind {
            CredentialKind::CoinbaseCdp => {
                if c.key_file.is_some() {
                    let text = self.read(("", &None), ("key_file", &c.key_file))?;
                    return match parse_cdp_json(&text) {
                        Ok((key_name, key)) => Some(Material::Cdp { key_name, key }),
                        Err(e) => {
                            self.issues.push((self.field("key_file"), e.to_string()));
                            None
                        }
                    };
                }
                let text = self.read(
                    ("private_key_env", &c.private_key_env),
                    ("private_key_file", &c.private_key_file),
                )?;
                let field = if c.private_key_env.is_some() {
                    "private_key_env"
                } else {
                    "private_key_file"
                };
                match parse_cdp_private_key(&text) {
                    Ok(key) => Some(Material::Cdp {
                        key_name: c.key_name.clone().unwrap_or_default().trim().to_owned(),
                        key,
                    }),
                    Err(e) => {
                        self.issues.push((self.field(field), e.to_string()));
                        None
                    }
                }
            }
            CredentialKind::CoinbaseExchange => {
                let secret = self.read(
                    ("secret_env", &c.secret_env),
                    ("secret_file", &c.secret_file),
                );
                let passphrase = self.read(
                    ("passphrase_env", &c.passphrase_env),
                    ("passphrase_file", &c.passphrase_file),
                );
                let field = if c.secret_env.is_some() {
                    "secret_env"
                } else {
                    "secret_file"
                };
                let secret = match parse_exchange_secret(&secret?) {
                    Ok(s) => s,
                    Err(e) => {
                        self.issues.push((self.field(field), e.to_string()));
                        return None;
                    }
                };
                Some(Material::Exchange {
                    key: c.key.clone().unwrap_or_default().trim().to_owned(),
                    secret,
                    // A passphrase file usually ends with a newline.
                    passphrase: Zeroizing::new(
                        passphrase?.trim_end_matches(['\n', '\r']).to_owned(),
                    ),
                })
            }
        }
    }
}
